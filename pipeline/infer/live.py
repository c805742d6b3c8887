"""Live features: a run's upstreams, checked against its stores' fingerprints, run on audio and
encoded exactly as stage one stored them, then batched exactly as stage two's loader feeds them.

Legend: B batch, S samples, L_i stored hidden states of upstream i (the store's `layers`),
T_i frames, D_i width.

    ups = open_upstreams(rm)                         # load (or take) and check every upstream
    live = LiveFeatures(ups, rm.stores, device)
    values, failed = live.compute(utts)              # {id: [(T_i, L_i, D_i) stored values]}, {id: why}
    feats, lengths = collate([values[u.id] for u in batch], rm.stores, device)
                                                     # N x (B, L_i, T_i, D_i) float32, N x (B,)

The same numbers as the store: each upstream runs through stage one's own forward
(`pipeline.extract.encode._run_batch`: the same autocast on CUDA, the same one-by-one retry of a
failing batch), over stage one's batches of the request (`make_batches`, the same
`batch_seconds` default), and each output goes through stage one's `Encoder` (the store's
layer subset, float16, then the store's int8 / fp8 scales). `collate` then does what the loader
and the trainer do: zero-pad to (B, T_i, L_i, D_i) in the stored dtype, decode 8-bit values
with the scales on the device, permute to (B, L_i, T_i, D_i) and cast to float32. Utterances
batched as at extraction give bit-identical values (a request equal to the extracted
manifest does); other batch mates can move a value by one float16 step where an upstream's
float32 output depends on the padding of its batch (tests/test_predict.py measures it).

A request that cannot reproduce a store's fingerprint (another upstream, other weights, another
Whisper mode or code version) is refused with `UpstreamMismatch`, one line naming the fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pipeline.data.manifest import Utterance
from pipeline.encoding import decode_torch
from pipeline.errors import UserError
from pipeline.extract.encode import Encoder, _load, _run_batch, make_batches
from pipeline.infer.run_model import RunModel, StoreRecord
from pipeline.store import make_fingerprint, normalize_fingerprint
from pipeline.upstreams.base import Upstream
from pipeline.upstreams.registry import load_upstream

IGNORED = ("manifest_hash",)  # the one field a prediction may differ in: its own utterances
MAX_BATCH = 64  # stage one's default utterances per batch


class UpstreamMismatch(UserError, ValueError):
    """An upstream that would not reproduce the store a run was trained on."""


class UpstreamNotLoadable(UserError, LookupError):
    """A run's upstream that cannot be loaded by the name its store records."""


def live_fingerprint(up: Upstream, store: StoreRecord) -> dict:
    """The fingerprint a store extracted now with `up` would get (the store's manifest hash)."""
    mode = getattr(up, "mode", None) if up.spec.family == "whisper" else None
    fp = make_fingerprint(
        up.spec,
        up.weights_hash(),
        mode,
        str(store.fingerprint.get("manifest_hash", "")),
        encoding=store.encoding,
        layers=store.layers,
    )
    return normalize_fingerprint(fp)


def check_upstream(up: Upstream, store: StoreRecord) -> None:
    """Refuse `up` (UpstreamMismatch, one line naming every differing field) unless it
    reproduces `store`'s fingerprint in every field but manifest_hash."""
    if store.layers and max(store.layers) >= int(up.spec.num_layers):
        raise UpstreamMismatch(
            f"upstream {store.model!r}: the run's store {store.path} holds states "
            f"{store.layers} but {up.spec.name} has {up.spec.num_layers}; load the upstream that "
            "store was extracted with"
        )
    have, want = live_fingerprint(up, store), store.fingerprint
    diffs = [
        f"{k} is {have.get(k)!r} here but {want.get(k)!r} in the store"
        for k in sorted((set(have) | set(want)) - set(IGNORED))
        if have.get(k) != want.get(k)
    ]
    if diffs:
        raise UpstreamMismatch(
            f"upstream {store.model!r} cannot reproduce the store {store.path} the run was trained "
            f"on: {'; '.join(diffs)}. Load the upstream (weights, whisper mode) that store was "
            f"extracted with, e.g. --upstream {store.model}=NAME_OR_PATH"
        )


def open_upstreams(
    rm: RunModel,
    upstreams: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
) -> list[Upstream]:
    """One checked upstream per store of the run, in the run's order.

    `upstreams` maps a run's model name to an Upstream object (tests, custom models) or to a
    name or path for `load_upstream` (weights moved elsewhere); a model not in it is loaded by
    the name its store's fingerprint records (a registry name, a hub id or a local path).
    """
    given = dict(upstreams or {})
    unknown = sorted(set(given) - {s.model for s in rm.stores})
    if unknown:
        raise UpstreamNotLoadable(
            f"--upstream {unknown[0]}=...: the run {rm.run_dir} has no upstream {unknown[0]!r} "
            f"(its upstreams: {', '.join(s.model for s in rm.stores)})"
        )
    dev = str(device if device is not None else rm.device)
    out = []
    for s in rm.stores:
        choice = given.get(s.model)
        if choice is not None and hasattr(choice, "forward"):
            up = choice
        else:
            name = str(choice) if choice is not None else str(s.fingerprint.get("upstream"))
            mode = s.fingerprint.get("whisper_mode") or "pad30"
            try:
                up = load_upstream(name, device=dev, whisper_mode=mode)
            except UserError as e:
                raise UpstreamNotLoadable(
                    f"upstream {s.model!r} of the run {rm.run_dir} (store {s.path}) cannot be "
                    f"loaded as {name!r} ({str(e).splitlines()[0][:160]}); give its weights with "
                    f"--upstream {s.model}=NAME_OR_PATH"
                ) from None
        check_upstream(up, s)
        out.append(up)
    return out


class LiveFeatures:
    """Stored values of every upstream for a list of utterances, as stage one would store them."""

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        stores: Sequence[StoreRecord],
        device: str | torch.device,
        batch_seconds: float | None = None,
        max_batch: int = MAX_BATCH,
    ):
        self.upstreams, self.stores = list(upstreams), list(stores)
        self.device = str(device)
        self.batch_seconds = batch_seconds or (400.0 if self.device.startswith("cuda") else 40.0)
        self.max_batch = max_batch
        self.encoders = []
        for up, s in zip(self.upstreams, self.stores, strict=True):
            full = s.layers == list(range(int(up.spec.num_layers)))
            self.encoders.append(Encoder(None if full else s.layers, s.encoding, s.scales))

    def compute(
        self, utts: Sequence[Utterance], on_batch: Callable[[float], None] | None = None
    ) -> tuple[dict[str, list], dict[str, str]]:
        """({id: [(T_i, L_i, D_i) stored values per upstream]}, {id: reason}) for `utts`.

        An utterance whose audio cannot be read, or that any upstream fails on (an error, a
        non-finite output), is in the second dict only. `on_batch(seconds)` is called after
        each upstream batch with the audio seconds it held (a progress bar)."""
        failed: dict[str, str] = {}
        audio: dict[int, dict[str, np.ndarray]] = {}
        for up in self.upstreams:
            sr = int(up.spec.sample_rate)
            if sr not in audio:
                audio[sr] = {}
                for u, wav, err in _load(list(utts), sr):
                    if wav is None:
                        failed.setdefault(u.id, str(err))
                    else:
                        audio[sr][u.id] = wav
        values: dict[str, list] = {u.id: [None] * len(self.upstreams) for u in utts}
        for k, (up, enc) in enumerate(zip(self.upstreams, self.encoders, strict=True)):
            wavs = audio[int(up.spec.sample_rate)]
            mode = getattr(up, "mode", "pad30")
            todo = [u for u in utts if u.id not in failed]
            for batch in make_batches(todo, up, mode, self.batch_seconds, self.max_batch):
                loaded = [(u, wavs[u.id], None) for u in batch]
                results, bad = _run_batch(up, loaded, self.device, enc)
                for uid, x in results:
                    values[uid][k] = x
                for uid, reason in bad:
                    failed.setdefault(uid, f"{up.spec.name}: {reason}")
                if on_batch is not None:
                    on_batch(sum(float(u.duration) for u in batch))
        return {i: v for i, v in values.items() if i not in failed}, failed


def collate(
    items: Sequence[Sequence[np.ndarray]],
    stores: Sequence[StoreRecord],
    device: torch.device,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """B items of N stored-value arrays (T_i, L_i, D_i) -> N x (B, L_i, T_i, D_i) float32 and
    N x (B,) int64 frame counts on `device`, built as the loader and the trainer build them."""
    feats, lengths = [], []
    for k, s in enumerate(stores):
        arrs = [np.asarray(it[k]) for it in items]
        n = [int(a.shape[0]) for a in arrs]
        _, L, D = arrs[0].shape
        buf = torch.zeros((len(arrs), max(n), L, D), dtype=torch.from_numpy(arrs[0][:0]).dtype)
        for b, a in enumerate(arrs):
            buf[b, : n[b]] = torch.from_numpy(np.ascontiguousarray(a))
        if s.scales is not None:  # the loader: bytes to the device, decoded there
            scales = torch.from_numpy(np.asarray(s.scales, np.float32)).to(device)
            buf = decode_torch(buf.to(device), scales, s.encoding)
        x = buf.permute(0, 2, 1, 3)  # (B, L, T, D) view, as the loader yields it
        feats.append(x.to(device, non_blocking=True).float())
        lengths.append(torch.tensor(n, dtype=torch.int64).to(device))
    return feats, lengths
