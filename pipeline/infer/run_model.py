"""A trained run, loaded for inference: its config, task, interface and head from best.pt, and
the stores it was trained on (fingerprints from RUN_DIR/inputs.json, 8-bit scales from the store).

Legend: B batch, L_i stored hidden states of upstream i, T_i frames, D_i width, T output frames.

    rm = load_run("runs/x", device="cpu")
    out, out_len = rm.forward(feats, lengths)   # feats N x (B, L_i, T_i, D_i) float32 on rm.device
    outputs = rm.task.predict(rm.head, out, out_len)

Nothing here runs an upstream or reads a feature; `pipeline.infer.live` makes the features a
run's interface expects from audio, `pipeline.infer.export` writes interface + head as TorchScript.
The task is rebuilt as `pipeline evaluate` rebuilds it: from the run's train split when it is
still there, then the task state saved in best.pt (labels, vocabulary, speakers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.checkpoint import load_checkpoint
from pipeline.data.manifest import Utterance
from pipeline.data.splits import read_splits
from pipeline.device import resolve_device
from pipeline.encoding import is_8bit
from pipeline.errors import UserError
from pipeline.feed.run_inputs import read_inputs
from pipeline.interfaces import build
from pipeline.store import StoreError, normalize_fingerprint, open_store
from pipeline.tasks import Task, build_task
from pipeline.train.config import RunConfig, load_run_config


class RunNotReady(UserError, FileNotFoundError):
    """A run directory that lacks what inference needs (best.pt, inputs.json, an 8-bit store)."""


@dataclass
class StoreRecord:
    """One upstream of a run: the store it trained on and that store's fingerprint."""

    model: str  # the run's name for the upstream (config `models`)
    path: str  # the store the run was trained on
    fingerprint: dict  # normalised (encoding, layers filled in)
    scales: np.ndarray | None = None  # (L_i, D_i) float32 for int8 / fp8 stores, else None

    @property
    def encoding(self) -> str:
        return str(self.fingerprint.get("encoding", "fp16"))

    @property
    def layers(self) -> list[int]:
        return [int(i) for i in self.fingerprint["layers"]]


@dataclass
class RunModel:
    """Interface + head of a run with everything needed to feed and read them."""

    run_dir: Path
    cfg: RunConfig
    task: Task
    interface: nn.Module
    head: nn.Module
    device: torch.device
    shapes: list[tuple[int, int]]  # (L_i, D_i) per upstream
    frame_rates: list[float]  # Hz per upstream
    stores: list[StoreRecord]
    step: int | None = None  # best.pt's step
    train_utts: list[Utterance] = field(
        default_factory=list
    )  # the run's train split, if still there

    @torch.no_grad()
    def forward(
        self, feats: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The interface: N x (B, L_i, T_i, D_i), N x (B,) -> ((B, T, D_out), (B,))."""
        return self.interface(feats, lengths)

    def metrics(self) -> list[dict]:
        """RUN_DIR/metrics.json's records ([] before the run finished)."""
        path = self.run_dir / "metrics.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def load_run(run_dir: str | Path, device: str = "auto", read_scales: bool = True) -> RunModel:
    """The run's interface and head with best.pt's weights, in eval mode on `device`.

    `read_scales`: open each 8-bit store the run trained on for its scales (RunNotReady when it
    is gone); False leaves `scales` None (export, which reads no store, does not need them).
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir / "config.yaml")
    best = run_dir / "checkpoints" / "best.pt"
    if not best.is_file():
        raise RunNotReady(
            f"{best} does not exist: train the run first (`pipeline train ... --out {run_dir}`)"
        )
    recorded = read_inputs(run_dir)
    if recorded is None:
        raise RunNotReady(
            f"{run_dir / 'inputs.json'} does not exist: the run was written by an older pipeline "
            "that did not record its stores' fingerprints; retrain it with `pipeline train --force`"
        )
    dev = torch.device(resolve_device(device))
    ck = load_checkpoint(best, "cpu")
    own = Path(cfg.data)
    train_utts = read_splits(own, ["train"])["train"] if (own / "train.jsonl").is_file() else []
    task = build_task(cfg.task, dict(cfg.task_args), train_utts)
    task.load_state(ck["task_state"])
    shapes = [(int(L), int(D)) for L, D in ck["shapes"]]
    rates = [float(r) for r in ck.get("frame_rates") or [50.0] * len(shapes)]
    interface = build(cfg.interface, shapes, frame_rates=rates, **cfg.interface_args)
    interface.load_state_dict(ck["interface"])
    head = task.build_head(int(interface.out_dim))
    head.load_state_dict(ck["head"])
    stores = [_store_record(run_dir, recorded, m, read_scales) for m in cfg.models]
    for s, (L, D) in zip(stores, shapes, strict=True):
        fp = s.fingerprint
        if (int(fp["num_layers"]), int(fp["dim"])) != (L, D):
            raise RunNotReady(
                f"{run_dir / 'inputs.json'}: store {s.path} ({s.model}) holds {fp['num_layers']} x "
                f"{fp['dim']} states but best.pt was trained on {L} x {D}; the record is not this "
                "run's: retrain it with `pipeline train --force`"
            )
    return RunModel(
        run_dir=run_dir,
        cfg=cfg,
        task=task,
        interface=interface.to(dev).eval(),
        head=head.to(dev).eval(),
        device=dev,
        shapes=shapes,
        frame_rates=rates,
        stores=stores,
        step=ck.get("step"),
        train_utts=train_utts,
    )


def _store_record(run_dir: Path, recorded: dict, model: str, read_scales: bool) -> StoreRecord:
    entry = recorded.get("stores", {}).get(model)
    if entry is None:
        raise RunNotReady(
            f"{run_dir / 'inputs.json'} records no store for upstream {model!r}; the run was "
            "trained before its inputs were recorded: retrain it with `pipeline train --force`"
        )
    rec = StoreRecord(model, str(entry["path"]), normalize_fingerprint(entry["fingerprint"]))
    if read_scales and is_8bit(rec.encoding):
        try:
            rec.scales = np.asarray(open_store(rec.path).scales, np.float32)
        except (StoreError, OSError, KeyError, ValueError) as e:
            raise RunNotReady(
                f"store {rec.path} ({model}) is {rec.encoding}-encoded and live features must be "
                f"encoded with its scales, but it cannot be opened ({str(e).splitlines()[0][:120]}); "
                "restore the store the run was trained on"
            ) from None
    return rec
