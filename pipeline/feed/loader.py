"""Stage two's feed: batches of several upstreams' cached hidden states, aligned by utterance id.

Legend: B batch, L_i hidden states, T_i frames, D_i width of store i. A batch is

    {"ids": list[str] (B),
     "feats": list, one (B, L_i, T_i, D_i) tensor per store, zero past each length: for fp16
              stores the stored float16 (the trainer casts on the device), a permuted view of a
              frames-major (B, T_i, L_i, D_i) buffer (pinned when CUDA is used): no copy is made
              to reorder it, and `.to(device, non_blocking=True)` moves it as one block; for
              8-bit stores (int8 / fp8) float32 already on the loader's device: the stored bytes
              travel (half of fp16's) and are decoded there with the store's scales,
     "lengths": list, one (B,) int64 tensor of frame counts per store,
     "utts": list[Utterance] (B)}

Tiers (`tier=`): "gpu" loads every utterance of the dataset onto the device once and slices
batches there; "pinned" loads them into (pinned, when CUDA is there) host RAM once and gathers
batches from it; "mmap" reads each batch from the stores (zero-copy memory-mapped views of local
uncompressed stores) in DataLoader workers started with "spawn" (zarr + fork can deadlock).
"auto" picks gpu when the device is CUDA and the features fit in `gpu_fraction` of its free
memory, else pinned when CUDA is there and they fit in `ram_fraction` of the available RAM,
else mmap. On a CPU-only machine auto means mmap: a RAM copy would only duplicate the page
cache. The choice is logged and kept as `loader.tier` (with `loader.tier_reason`). Where no
worker process prepares batches (pinned tier, or mmap with num_workers=0), a background thread
prepares `prefetch` batches ahead, so host copies overlap the training step.

Encodings (pipeline/encoding.py): every tier holds and moves the stored values (1 byte each for
int8 / fp8, so the gpu and pinned tiers fit twice the audio); the decode (one multiply by the
(L, D) scales, after a 256-entry table for fp8) runs on the training device as the last step.

Batches are bucketed by length (the manifest's audio durations, the same for every store set):
with shuffling, the utterances are permuted with the seed (and epoch), cut into buckets of
`bucket_batches` batches, sorted by length inside each bucket and cut into batches, and the
batches are shuffled; without it, batches follow length order.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.data.manifest import Utterance
from pipeline.encoding import decode_torch, is_8bit, stored_dtype
from pipeline.errors import UserError
from pipeline.feed.tiers import TIERS, Preloaded, batch_buffer, choose_tier, prefetch
from pipeline.layers import format_layers

log = logging.getLogger(__name__)

__all__ = [
    "TIERS",
    "BucketBatchSampler",
    "DistributedBucketSampler",
    "FeatureDataset",
    "FeatureLoader",
    "MisalignedStoresError",
    "MissingUtterancesError",
    "make_loader",
    "stores_info",
]


class MissingUtterancesError(UserError, LookupError):
    """Utterances of the manifest that a store does not hold."""


class MisalignedStoresError(UserError, ValueError):
    """Stores whose frame counts for the same utterance disagree beyond rounding."""


def _store_name(store: Any) -> str:
    return str(getattr(store, "path", None) or repr(store))


def manifest_durations(utts: Sequence[Utterance]) -> np.ndarray:
    """(U,) the utterances' audio durations in seconds, as length bucketing uses them."""
    return np.array([float(u.duration) for u in utts], dtype=np.float64)


class FeatureDataset(Dataset):
    """Utterances of a manifest, read from one store per upstream.

    Args:
        stores: readers with the StoreReader API (`ids`, `length(id)`, `reader[id] -> (T, L, D)`,
            `num_layers`, `dim`, `frame_rate`, `id in reader`).
        utts: the utterances, in manifest order.
        length_tolerance: frames (at the highest frame rate) by which stores may disagree on an
            utterance's length (front-end rounding), plus one frame of the slower store; None
            skips the check.
    Item i: a list with one (T_i, L_i, D_i) array per store (memory-mapped views when local),
    in the stored dtype: 8-bit stores give their raw int8 / uint8 values (`encodings[k]`,
    `scales[k]` decode them; the loader does it on the device).
    """

    def __init__(
        self, stores: Sequence[Any], utts: Sequence[Utterance], length_tolerance: int | None = 3
    ):
        if not stores:
            raise ValueError("FeatureDataset needs at least one feature store")
        self.stores = list(stores)
        self.utts = list(utts)
        self.ids = [u.id for u in self.utts]
        problems = []
        for s in self.stores:
            missing = [i for i in self.ids if i not in s]
            if missing:
                shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
                problems.append(f"feature store {_store_name(s)} lacks {len(missing)} of the {len(self.ids)} utterances asked for: {shown}")  # fmt: skip
        if problems:
            raise MissingUtterancesError(
                ";\n".join(problems)
                + ".\nThe ids are missing from the store (a store holds exactly the manifest it "
                "was extracted from): re-extract it for this manifest with `pipeline extract ... "
                "--force`, or check that the manifest is the one the store was built from."
            )
        self.shapes = [(int(s.num_layers), int(s.dim)) for s in self.stores]
        self.encodings = [str(getattr(s, "encoding", "fp16")) for s in self.stores]
        self.scales = [getattr(s, "scales", None) if is_8bit(e) else None for s, e in zip(self.stores, self.encodings, strict=True)]  # fmt: skip
        self.layers = [list(getattr(s, "layers", None) or range(L)) for s, (L, _) in zip(self.stores, self.shapes, strict=True)]  # fmt: skip
        self.frame_rates = [float(s.frame_rate) for s in self.stores]
        self.lengths = np.array(
            [[s.length(i) for i in self.ids] for s in self.stores], dtype=np.int64
        ).reshape(len(self.stores), len(self.ids))  # (N, U)
        if length_tolerance is not None and len(self.stores) > 1:
            self._check_lengths(length_tolerance)

    def _check_lengths(self, tol: int) -> None:
        r = np.array(self.frame_rates)
        ref = int(np.argmax(r))
        scaled = self.lengths * (r[ref] / r)[:, None]  # (N, U) in reference frames
        limit = tol + (r[ref] / r)[:, None]
        bad_rows, bad_cols = np.nonzero(np.abs(scaled - self.lengths[ref]) > limit)
        if len(bad_cols):
            i, u = int(bad_rows[0]), int(bad_cols[0])
            n_bad = len(set(bad_cols.tolist()))
            raise MisalignedStoresError(
                f"{n_bad} utterance(s) have frame counts that disagree between stores, e.g. "
                f"{self.ids[u]!r}: {self.lengths[i, u]} frames at {r[i]:g} Hz in {_store_name(self.stores[i])} "
                f"vs {self.lengths[ref, u]} at {r[ref]:g} Hz in {_store_name(self.stores[ref])}. "
                "Were the stores extracted from the same audio (and whisper mode)? Re-extract the odd "
                "one, or pass length_tolerance=None to align them anyway."
            )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[int, list[np.ndarray]]:
        uid = self.ids[i]
        return i, [self.read(k, uid) for k in range(len(self.stores))]

    def read(self, k: int, uid: str) -> np.ndarray:
        """(T, L, D) stored values of `uid` in store k (raw bytes for 8-bit stores)."""
        s = self.stores[k]
        return s.raw(uid) if self.scales[k] is not None else s[uid]

    def durations(self) -> np.ndarray:
        """(U,) seconds per utterance, the key of length bucketing: the manifest's audio durations,
        so that every set of stores over one manifest gets the same batches (a Moonshine run,
        41.67 Hz, can share a pass with Whisper runs, 50 Hz; pipeline/train/pack.py)."""
        return manifest_durations(self.utts)

    def nbytes(self) -> int:
        """Bytes of all the dataset's stored features over all stores (1 a value for 8-bit)."""
        total = 0
        for k, (L, D) in enumerate(self.shapes):
            item = np.dtype(self._dtype(k)).itemsize
            total += int(self.lengths[k].sum()) * L * D * item
        return total

    def _dtype(self, k: int) -> np.dtype:
        if self.scales[k] is not None:
            return stored_dtype(self.encodings[k])
        if not self.ids:
            return np.dtype(np.float16)
        return self.stores[k][self.ids[0]].dtype


class BucketBatchSampler(Sampler):
    """Length-bucketed batches of dataset indices; reshuffled each epoch from `seed + epoch`."""

    def __init__(self, durations: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0,
                 bucket_batches: int = 50, drop_last: bool = False):  # fmt: skip
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket_batches, self.drop_last = bucket_batches, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        epoch = self.epoch if epoch is None else epoch
        n, bs = len(self.durations), self.batch_size
        if not self.shuffle:
            order = np.argsort(-self.durations, kind="stable")
            out = [order[i : i + bs].tolist() for i in range(0, n, bs)]
        else:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(n)
            size = bs * max(1, self.bucket_batches)
            out = []
            for start in range(0, n, size):
                bucket = perm[start : start + size]
                bucket = bucket[np.argsort(-self.durations[bucket], kind="stable")]
                out += [bucket[i : i + bs].tolist() for i in range(0, len(bucket), bs)]
            out = [out[j] for j in rng.permutation(len(out))]
        if self.drop_last:
            out = [b for b in out if len(b) == bs]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.durations)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DistributedBucketSampler(BucketBatchSampler):
    """Rank `rank` of `world`'s disjoint part of each global bucketed batch.

    The global batches are `BucketBatchSampler`'s (the same order on every rank, seeded by
    seed and epoch); rank r takes the r-th of `world` contiguous, near-equal slices of each.
    A global batch with fewer than `world` utterances is skipped, so every rank steps together.
    """

    def __init__(self, durations: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0,
                 bucket_batches: int = 50, drop_last: bool = False, rank: int = 0, world: int = 1):  # fmt: skip
        super().__init__(durations, batch_size, shuffle, seed, bucket_batches, drop_last)
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside a world of {world} processes")
        self.rank, self.world = rank, world

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        parts = []
        for b in super().batches(epoch):
            if len(b) >= self.world:
                parts.append(np.array_split(np.asarray(b), self.world)[self.rank].tolist())
        return parts

    def __len__(self) -> int:
        return len(self.batches())


class Collate:
    """Items from `FeatureDataset` -> {"index", "btld": [(B, T_i, L_i, D_i)], "lengths": [(B,)]}."""

    def __init__(self, num_stores: int, pin: bool = False):
        self.num_stores, self.pin = num_stores, pin

    def __call__(self, items: list[tuple[int, list[np.ndarray]]]) -> dict:
        index = [i for i, _ in items]
        btld, lengths = [], []
        for k in range(self.num_stores):
            arrs = [a[k] for _, a in items]
            n = [int(a.shape[0]) for a in arrs]
            T = max(n) if n else 0
            _, L, D = arrs[0].shape
            buf, view = batch_buffer((len(arrs), T, L, D), arrs[0].dtype, pin=self.pin)
            for b, a in enumerate(arrs):
                view[b, : n[b]] = a  # the one copy: memory map -> batch buffer
                view[b, n[b] :] = 0
            btld.append(buf)
            lengths.append(torch.tensor(n, dtype=torch.int64))
        return {"index": index, "btld": btld, "lengths": lengths}


class Touch:
    """Worker-side collate for memory-mapped stores: read one byte per page, return the indices."""

    def __call__(self, items: list[tuple[int, list[np.ndarray]]]) -> list[int]:
        for _, arrs in items:
            for a in arrs:
                flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
                int(flat[:: mmap.PAGESIZE].sum())  # page faults fill the shared page cache
        return [i for i, _ in items]


class FeatureLoader:
    """Iterates batches (see the module docstring for the schema). Built by `make_loader`."""

    def __init__(self, dataset: FeatureDataset, sampler: BucketBatchSampler, tier: str, reason: str,
                 device: torch.device, num_workers: int = 0, prefetch: int = 2):  # fmt: skip
        self.dataset, self.sampler, self.device = dataset, sampler, device
        self.num_workers, self.prefetch = num_workers, prefetch
        self.tier, self.tier_reason = tier, reason
        self.pin = torch.cuda.is_available() and device.type == "cuda"
        # (L, D) scales on the training device for each 8-bit store (None: fp16, no decode)
        self.scales = [None if s is None else torch.from_numpy(np.asarray(s, np.float32)).to(device) for s in dataset.scales]  # fmt: skip
        self.preloaded: Preloaded | None = None
        self.dataloader: DataLoader | None = None
        self.collate = Collate(len(dataset.stores), pin=self.pin)
        # Workers of memory-mapped stores only read ahead (page the next batches into the page
        # cache); the main process then copies from its own mapping: passing the bytes through
        # shared memory costs more than the copy (measured here: a fresh 80 MB shared block
        # filled at 0.34 GB/s against 4.6 GB/s for a numpy buffer).
        self.readahead = num_workers > 0 and all(getattr(s, "mode", "") == "mmap" for s in dataset.stores)  # fmt: skip
        if tier in ("gpu", "pinned"):
            self.preloaded = Preloaded(dataset, device if tier == "gpu" else torch.device("cpu"), pin=self.pin)  # fmt: skip
        elif num_workers == 0:
            self.dataloader = DataLoader(dataset, batch_sampler=sampler, collate_fn=self.collate)
        else:
            extra = {"multiprocessing_context": "spawn", "persistent_workers": True, "prefetch_factor": max(2, prefetch)}  # fmt: skip
            collate = Touch() if self.readahead else Collate(len(dataset.stores))
            self.dataloader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                                         pin_memory=self.pin and not self.readahead, **extra)  # fmt: skip
        log.info("loader: tier=%s (%s); %d utterances, %d stores (%s), %d batches", tier, reason, len(dataset), len(dataset.stores), self.stores_summary(), len(sampler))  # fmt: skip

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle as epoch `epoch` (the trainer calls this when it resumes mid-run)."""
        self.sampler.set_epoch(epoch)

    def describe(self) -> str:
        """The tier and why, and each store's encoding and states (logged by the trainer)."""
        return f"loader tier {self.tier} ({self.tier_reason}); {self.stores_summary()}"

    def stores_summary(self) -> str:

        out = []
        for s, enc, layers in zip(self.dataset.stores, self.dataset.encodings, self.dataset.layers, strict=True):  # fmt: skip
            name = str(getattr(s, "path", "store")).rstrip("/").rsplit("/", 1)[-1]
            how = f"decoded on {self.device.type}" if enc != "fp16" else "cast by the trainer"
            out.append(f"{name}: {enc}, layers {format_layers(layers)} ({how})")
        return "; ".join(out)

    def __iter__(self) -> Iterator[dict]:
        if self.preloaded is not None:
            raw = ((index, *self.preloaded.batch(index)) for index in self.sampler)
        elif self.readahead:
            raw = (self._read(index) for index in self.dataloader)
        else:
            raw = ((r["index"], r["btld"], r["lengths"]) for r in self.dataloader)
        if any(s is not None for s in self.scales):  # 8-bit bytes -> device -> floats
            raw = ((index, self._decode(btld), lengths) for index, btld, lengths in raw)
        if self.prefetch > 0 and self.tier != "gpu" and (self.num_workers == 0 or self.readahead):
            raw = prefetch(raw, self.prefetch)  # host copies (and decodes) overlap the step
        for index, btld, lengths in raw:
            yield self._finish(index, btld, lengths)

    def _decode(self, btld: list[torch.Tensor]) -> list[torch.Tensor]:
        """Move 8-bit batches (B, T, L, D) to the device and decode them there to float32."""
        out = []
        for k, x in enumerate(btld):
            s = self.scales[k]
            if s is None:
                out.append(x)
                continue
            x = x.to(self.device, non_blocking=True)
            out.append(decode_torch(x, s, self.dataset.encodings[k]))
        return out

    def _read(self, index: list[int]) -> tuple[list[int], list[torch.Tensor], list[torch.Tensor]]:
        r = self.collate([self.dataset[i] for i in index])
        return r["index"], r["btld"], r["lengths"]

    def _finish(
        self, index: list[int], btld: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> dict:
        return {
            "ids": [self.dataset.ids[i] for i in index],
            "feats": [x.permute(0, 2, 1, 3) for x in btld],  # (B, L_i, T_i, D_i) views
            "lengths": lengths,
            "utts": [self.dataset.utts[i] for i in index],
        }


def stores_info(stores: Sequence[Any]) -> list[dict]:
    """What a run saw of each store: [{store, upstream, encoding, layers, num_layers, dim}].

    Readers without the 8-bit/subset attributes (older or fake stores) count as fp16, all layers;
    an Upstream (on-the-fly features) as encoding "onthefly", every state. For metrics.json:
    `rec["stores"] = stores_info(setup.sources)`.
    """
    out = []
    for s in stores:
        spec = getattr(s, "spec", None)  # an Upstream (on-the-fly features): every state
        L = int(spec.num_layers if spec is not None else s.num_layers)
        fp = getattr(s, "fingerprint", {}) or {}
        out.append({
            "store": None if spec is not None else _store_name(s),
            "upstream": spec.name if spec is not None else fp.get("upstream"),
            "encoding": str(getattr(s, "encoding", "fp16" if spec is None else "onthefly")),
            "layers": [int(i) for i in (getattr(s, "layers", None) or range(L))],
            "num_layers": L,
            "dim": int(spec.dim if spec is not None else s.dim),
        })  # fmt: skip
    return out


def make_loader(
    dataset: FeatureDataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    tier: str = "auto",
    device: str | torch.device | None = None,
    bucket_batches: int = 50,
    drop_last: bool = False,
    gpu_fraction: float = 0.5,
    ram_fraction: float = 0.5,
    prefetch: int = 2,
    rank: int = 0,
    world: int = 1,
) -> FeatureLoader:
    """A length-bucketed loader over `dataset`, served from the tier chosen (or forced).

    device: where training runs (default: CUDA when available). num_workers: reader processes
    for the mmap tier (spawned; ignored by the preloaded tiers, which need none). prefetch:
    batches a background thread prepares ahead when no worker does (0: none). rank, world:
    this process's disjoint part of each global batch under DDP (`DistributedBucketSampler`).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    chosen, reason = choose_tier(dataset.nbytes(), device, tier, gpu_fraction, ram_fraction)
    args = (dataset.durations(), batch_size, shuffle, seed, bucket_batches, drop_last)
    if world > 1:
        sampler = DistributedBucketSampler(*args, rank=rank, world=world)
    else:
        sampler = BucketBatchSampler(*args)
    return FeatureLoader(dataset, sampler, chosen, reason, device, num_workers, prefetch)
