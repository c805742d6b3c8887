"""What stage two feeds the interface: the run's setup and its batches, from stores or on the fly.

A batch is `{"ids": list[str], "utts": list[Utterance], "feats": list[(B, L_i, T_i, D_i)],
"lengths": list[(B,)]}`, one feats/lengths entry per upstream, float32 on the run's device.

- cache (default): `CACHE_DIR/<upstream>.zarr` stores (or explicit paths) read through
  pipeline.feed.loader; the stores' fingerprints (L, D, frame rate) give the interface its shapes.
- onthefly: the upstreams run inside the step on the audio under torch.no_grad (the s3prl
  way), with length-bucketed batches of the same size; kept for the side-by-side benchmark.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.audio import load_audio
from pipeline.console import console
from pipeline.data.manifest import Utterance
from pipeline.data.splits import read_splits
from pipeline.device import resolve_device
from pipeline.feed.loader import FeatureDataset, make_loader
from pipeline.feed.run_inputs import check_agreement, describe_inputs, find_stores
from pipeline.interfaces import build
from pipeline.store import open_store
from pipeline.tasks import Task, build_task
from pipeline.train.config import RunConfig
from pipeline.upstreams import registry


@dataclass
class Setup:
    """Everything built from a config: task, interface, head, data and where it runs."""

    cfg: RunConfig
    task: Task
    interface: nn.Module
    head: nn.Module
    device: torch.device
    shapes: list[tuple[int, int]]  # (L_i, D_i) per upstream
    frame_rates: list[float]  # Hz per upstream
    splits: dict[str, list[Utterance]]  # split -> the task's utterances
    data_dir: Path
    sources: list[Any]  # StoreReaders (cache) or Upstreams (onthefly)
    inputs: dict = field(default_factory=dict)  # stores' fingerprints, splits' hashes (run_inputs)
    _loaders: dict[tuple, Any] = field(default_factory=dict)

    def log(self, msg: str) -> None:
        console.print(msg)


def build_setup(
    cfg: RunConfig,
    *,
    data: str | Path | None = None,
    cache: str | Path | None = None,
    stores: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    train_utts: list[Utterance] | None = None,
    task_state: dict | None = None,
) -> Setup:
    """Open the data, build task, interface and head for `cfg` (overrides for evaluation).

    `splits` None: every split manifest of the data dir. In cache mode each split must agree
    with every store (ids present, durations matching frame counts), else ManifestStoreMismatch.
    """
    t = cfg.train
    device = torch.device(resolve_device(t.device))
    data_dir = Path(data if data is not None else cfg.data)
    onthefly = t.features == "onthefly"
    found = read_splits(
        data_dir, splits, check_files=onthefly, required=("train",) if splits is None else splits
    )
    if train_utts is None:
        train_utts = found.get("train", [])
    task = build_task(cfg.task, dict(cfg.task_args), train_utts)
    if task_state is not None:
        task.load_state(task_state)
    selected = {k: task.select(v) for k, v in found.items()}
    for k, v in selected.items():
        if not v:
            raise ValueError(
                f"{data_dir / (k + '.jsonl')}: no utterance is usable by task {cfg.task!r}"
            )
    if onthefly:
        sources = [
            registry.load_upstream(m, device=str(device), whisper_mode=t.whisper_mode)
            for m in cfg.models
        ]
        shapes = [(u.spec.num_layers, u.spec.dim) for u in sources]
        rates = [float(u.spec.frame_rate) for u in sources]
    else:
        paths = find_stores(
            cfg.models,
            cache if cache is not None else cfg.cache,
            stores if stores is not None else cfg.stores,
        )
        sources = [open_store(p) for p in paths]
        shapes = [(int(r.num_layers), int(r.dim)) for r in sources]
        rates = [float(r.frame_rate) for r in sources]
        for k, v in selected.items():
            check_agreement(sources, v, str(data_dir / f"{k}.jsonl"))
    stores = [] if onthefly else sources
    inputs = describe_inputs(cfg.models if stores else [], stores, found, data_dir)
    interface = build(cfg.interface, shapes, frame_rates=rates, **cfg.interface_args).to(device)
    head = task.build_head(int(interface.out_dim)).to(device)
    return Setup(
        cfg, task, interface, head, device, shapes, rates, selected, data_dir, sources, inputs
    )


def iter_batches(
    setup: Setup, utts: list[Utterance], shuffle: bool, epoch: int = 0
) -> Iterator[dict]:
    """Batches of `utts` (in epoch `epoch`'s order when shuffled), features float32 on the device.

    One loader per utterance list, built once (the gpu and pinned tiers preload there) and
    reshuffled per epoch from (train.seed, epoch).
    """
    t = setup.cfg.train
    if t.features == "onthefly":
        yield from _onthefly_batches(setup, utts, shuffle, t.seed * 1000 + epoch)
        return
    key = (id(utts), shuffle)
    if key not in setup._loaders:
        ds = FeatureDataset(setup.sources, utts)
        loader = make_loader(
            ds,
            t.batch_size,
            shuffle=shuffle,
            seed=t.seed,
            num_workers=t.num_workers,
            tier=t.tier,
            device=setup.device,
        )
        setup._loaders[key] = (utts, loader)
        if hasattr(loader, "describe"):
            setup.log(loader.describe())
    loader = setup._loaders[key][1]
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    for batch in loader:
        yield _on_device(batch, setup.device)


def _on_device(batch: dict, device: torch.device) -> dict:
    out = dict(batch)
    out["feats"] = [f.to(device, non_blocking=True).float() for f in batch["feats"]]
    out["lengths"] = [torch.as_tensor(n).to(device, non_blocking=True) for n in batch["lengths"]]
    return out


def audio_batches(
    utts: list[Utterance], batch_size: int, shuffle: bool, seed: int
) -> list[list[int]]:
    """Length-bucketed batches of indices: sort by duration, cut, shuffle the batch order."""
    order = sorted(range(len(utts)), key=lambda i: (utts[i].duration, utts[i].id))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        perm = np.random.default_rng(seed).permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches


def _onthefly_batches(
    setup: Setup, utts: list[Utterance], shuffle: bool, seed: int
) -> Iterator[dict]:

    for idx in audio_batches(utts, setup.cfg.train.batch_size, shuffle, seed):
        bu = [utts[i] for i in idx]
        wavs = [torch.from_numpy(load_audio(u.path)) for u in bu]
        n = torch.tensor([len(w) for w in wavs])
        padded = torch.zeros(len(wavs), int(n.max()))  # (B, S)
        for i, w in enumerate(wavs):
            padded[i, : len(w)] = w
        feats, lengths = [], []
        with torch.no_grad():
            for up in setup.sources:
                states = up.forward(padded.to(setup.device), n.to(setup.device))  # B x (L, T_i, D)
                tl = torch.tensor([s.shape[1] for s in states])
                x = torch.zeros(
                    len(states),
                    states[0].shape[0],
                    int(tl.max()),
                    states[0].shape[2],
                    device=setup.device,
                )
                for i, s in enumerate(states):
                    x[i, :, : s.shape[1]] = s.float()  # (B, L, T, D)
                feats.append(x)
                lengths.append(tl.to(setup.device))
        yield {"ids": [u.id for u in bu], "utts": bu, "feats": feats, "lengths": lengths}
