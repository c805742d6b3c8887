"""Packed runs: K runs that share one pass over the cache, each exactly what it would be alone.

    for group in pack_groups(cfgs):
        run_dirs = train_packed(group, progress=False)

Runs pack when they train on the same batches in the same order: same task (and task args),
data, seed, batch size, accumulation, feature source, device, loader tier/workers and CPU
threads, and the same train durations (the bucketed sampler sorts by the manifest's, whatever
the stores' frame rates). The interfaces, models,
learning rates, step counts and evaluation schedules may differ. One loader reads the union of
the group's stores; every batch is read once and each run takes its stores' part of it.

Each run keeps its own optimizer, scheduler, evaluation schedule, checkpoints and run directory,
and reseeds from (seed, step, micro) before each of its micro-batches as it does alone, so its
directory is bit-identical on CPU to `pipeline.train.loop.train(cfg)` (timing fields aside). A run's
last micro-batch, optimizer step and evaluation run back to back, so even the RNG state saved
in last.pt matches. After a kill each run resumes from its own last.pt; the shared pass starts
at the run furthest behind and the runs ahead wait until it reaches them.

`train_packed` holds every run's lock (RUN_DIR.train.lock, pipeline/train/run_dir.py) before it
writes anything: a run dir another process trains refuses the whole group (RunLocked, naming
the run dir and the holder), as `pipeline train` would refuse that run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.console import console
from pipeline.data.manifest import read_manifest
from pipeline.device import resolve_device
from pipeline.errors import UserError
from pipeline.feed.loader import manifest_durations
from pipeline.interfaces.base import count_parameters
from pipeline.store import open_store
from pipeline.train.config import RunConfig
from pipeline.train.feed import Setup, find_stores, iter_batches
from pipeline.train.loop import Trainer, epoch_stream, open_run
from pipeline.train.run_dir import hold_run


class PackError(UserError, ValueError):
    """Runs given to `train_packed` that cannot share one pass; the message says why."""


def _batch_key(cfg: RunConfig) -> str:
    """What fixes the batches a run sees, except the stores' lengths (see `_durations_key`)."""
    t = cfg.train
    key = {
        "task": cfg.task,
        "task_args": cfg.task_args,
        "data": str(Path(cfg.data).resolve()),
        "seed": t.seed,
        "batch_size": t.batch_size,
        "accum": t.accum,
        "features": t.features,
        "device": str(resolve_device(t.device)),
        "tier": t.tier,
        "num_workers": t.num_workers,
        "threads": t.threads,  # intra-op threads change float reductions
    }
    return json.dumps(key, sort_keys=True, default=str)


def store_paths(cfg: RunConfig) -> list[Path]:
    """The resolved store path of each of the run's models (raises if one is missing)."""
    return [p.resolve() for p in find_stores(cfg.models, cfg.cache, cfg.stores)]


def _durations_key(cfg: RunConfig) -> str:
    """A hash of the (U,) train durations the run's sampler sorts by (the manifest's)."""
    utts = read_manifest(Path(cfg.data) / "train.jsonl", check_files=False)
    return hashlib.sha1(manifest_durations(utts).tobytes()).hexdigest()


def pack_groups(cfgs: list[RunConfig]) -> list[list[RunConfig]]:
    """Partition runs into groups that can share one pass (input order kept inside groups).

    On-the-fly runs never pack (each group is one run).
    """
    groups: dict[str, list[RunConfig]] = {}
    for i, cfg in enumerate(cfgs):
        if cfg.train.features != "cache":
            key = f"alone-{i}"
        else:
            key = _batch_key(cfg) + _durations_key(cfg)
        groups.setdefault(key, []).append(cfg)
    return list(groups.values())


@dataclass
class _Run:
    """One packed run: its trainer, where its stores sit in the union, its pending losses."""

    trainer: Trainer
    index: list[int]  # union position of each of the run's stores
    losses: list[float] = field(default_factory=list)


def _part(batch: dict, index: list[int]) -> dict:
    """The run's view of a union batch: its stores' feats and lengths, in its order."""
    out = dict(batch)
    out["feats"] = [batch["feats"][i] for i in index]
    out["lengths"] = [batch["lengths"][i] for i in index]
    return out


class _UnionView:
    """A run's loader for a split: the shared union loader's batches, cut to the run's stores."""

    def __init__(self, union: Setup, utts: list, index: list[int]):
        self.union, self.utts, self.index = union, utts, index

    def __iter__(self) -> Iterator[dict]:
        for batch in iter_batches(self.union, self.utts, shuffle=False):
            yield _part(batch, self.index)


def _union_setup(lead: Setup, paths: list[Path]) -> Setup:
    """A Setup that only feeds: the union of stores, the lead run's splits and settings."""
    sources = [open_store(p) for p in paths]
    shapes = [(int(r.num_layers), int(r.dim)) for r in sources]
    rates = [float(r.frame_rate) for r in sources]
    return Setup(lead.cfg, lead.task, None, None, lead.device, shapes, rates, lead.splits,
                 lead.data_dir, sources)  # fmt: skip


def _open_runs(cfgs: list[RunConfig], force: bool) -> tuple[list[_Run], Setup]:
    """Prepare each run dir, build each setup as `train` does, resume, share the splits."""
    union_paths: list[Path] = []
    runs: list[_Run] = []
    lead: Setup | None = None
    for cfg in cfgs:
        paths = store_paths(cfg)
        for p in paths:
            if p not in union_paths:
                union_paths.append(p)
        setup, resume = open_run(cfg, force)
        if lead is None:
            lead = setup
        elif [[u.id for u in v] for v in setup.splits.values()] != [
            [u.id for u in v] for v in lead.splits.values()
        ]:
            raise PackError(
                f"run {cfg.out} selects other utterances of {cfg.data} than run {lead.cfg.out}; "
                "train them apart (pack_groups keeps them apart when task and task args differ)"
            )
        setup.splits = lead.splits  # the same lists: the union's loaders are keyed by them
        console.print(
            f"packed: {cfg.interface} over {','.join(cfg.models)} -> {cfg.out} | trainable "
            f"parameters: interface {count_parameters(setup.interface):,}, head {count_parameters(setup.head):,}"
        )
        trainer = Trainer(cfg, setup)
        if resume:
            trainer.resume()
        if trainer.state["finished"] or cfg.train.steps == 0:
            trainer.fit(progress=False)  # marks a 0-step run finished, as alone
        runs.append(_Run(trainer, [union_paths.index(p) for p in paths]))
    assert lead is not None
    union = _union_setup(lead, union_paths)
    for r in runs:  # dev/test scoring reads the union's loaders too
        for split, utts in lead.splits.items():
            if split != "train":
                r.trainer.setup._loaders[(id(utts), False)] = (utts, _UnionView(union, utts, r.index))  # fmt: skip
    return runs, union


def _union_stream(union: Setup, pos: dict) -> Iterator[dict]:
    """Training batches of the union across epochs from `pos` ({"epoch", "pos"}), as
    `Trainer._stream` yields them; `pos` is kept current."""

    def epoch_batches(epoch: int) -> Iterator[dict]:
        return iter_batches(union, union.splits["train"], shuffle=True, epoch=epoch)

    return epoch_stream(union.cfg.train.seed, pos, epoch_batches, union.cfg.data)


def _step_group(runs: list[_Run], stream: Iterator[dict], pos: dict, accum: int) -> None:
    """One optimizer step of every run in `runs` (all at the same step) on shared batches.

    A run's last micro-batch, its optimizer step and its evaluation run back to back.
    """
    for r in runs:
        r.trainer.begin_step()
        r.losses.append(0.0)
    for micro in range(accum):
        batch = next(stream)
        for r in runs:
            tr, t0 = r.trainer, time.perf_counter()
            r.losses[-1] += tr.micro_step(_part(batch, r.index), micro)
            if micro == accum - 1:
                tr.end_step()
                tr.state["epoch"], tr.state["pos"] = pos["epoch"], pos["pos"]
            tr.state["elapsed"] += time.perf_counter() - t0
            if micro == accum - 1:
                s, t = tr.state, tr.cfg.train
                if s["step"] % t.eval_every == 0 or s["step"] >= t.steps:
                    tr._evaluate(r.losses)
                    r.losses = []


def fit_packed(runs: list[_Run], union: Setup, progress: bool = True) -> None:
    """Step every unfinished run to its end (or early stop), reading each batch once."""
    active = [r for r in runs if not r.trainer.state["finished"]]
    if not active:
        return
    behind = min(active, key=lambda r: r.trainer.state["step"])
    step = behind.trainer.state["step"]
    pos = {"epoch": behind.trainer.state["epoch"], "pos": behind.trainer.state["pos"]}
    stream = _union_stream(union, pos)
    accum = union.cfg.train.accum
    total = max(r.trainer.cfg.train.steps for r in active)
    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]  # fmt: skip
    with Progress(*cols, console=console, disable=not progress, transient=False) as bar:
        job = bar.add_task(f"packed x{len(active)}", total=total, completed=step)
        while active:
            now = [r for r in active if r.trainer.state["step"] == step]
            if now:
                _step_group(now, stream, pos, accum)
            else:  # every run is ahead of the pass (resumed later): skip the batches
                for _ in range(accum):
                    next(stream)
            step += 1
            active = [r for r in active if not r.trainer.state["finished"]]
            bar.update(job, completed=step, description=f"packed x{len(active)}")


def train_packed(cfgs: list[RunConfig], progress: bool = True, force: bool = False) -> list[Path]:
    """Train (or resume) runs that share one pass over the cache; returns their run dirs.

    `cfgs` must form one group of `pack_groups` (checked). Each run dir ends as `train(cfg)`
    would leave it: config.yaml, task_state.json, checkpoints, log.jsonl, metrics.json.
    Every run dir's lock is held throughout (RunLocked when another process trains one).
    """
    if not cfgs:
        return []
    for cfg in cfgs:
        if not cfg.out:
            raise PackError(f"run {cfg.interface} over {cfg.models} has no run directory (out)")
    outs = [str(Path(c.out).resolve()) for c in cfgs]
    if len(set(outs)) != len(outs):
        raise PackError(f"two packed runs share a run directory: {sorted(outs)}")
    if len(cfgs) > 1 and len(pack_groups(cfgs)) != 1:
        raise PackError(
            f"runs {[c.out for c in cfgs]} cannot share one pass (different batches: task, data, "
            "seed, batch size, accum, device, tier, threads or store lengths); "
            "split them with pipeline.train.pack.pack_groups"
        )
    with ExitStack() as held:
        for cfg in cfgs:
            held.enter_context(hold_run(cfg.out))
        runs, union = _open_runs(cfgs, force)
        fit_packed(runs, union, progress)
        for r in runs:
            for rec in r.trainer.finish():
                console.print(f"{r.trainer.cfg.out}: {rec['split']} {rec['metric']} = {rec['value']:.4f}")  # fmt: skip
    return [Path(c.out) for c in cfgs]
