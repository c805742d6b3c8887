"""Stage two: train an interface and a task head from cached stores (or upstreams on the fly).

    run_dir = train(resolve_config(interface="hconv", models=["whisper_tiny_en"], task="er",
                                   data="data/demo/er", cache="cache/demo/er", out="runs/x"))

Step-based AdamW with gradient accumulation, dev evaluation every `eval_every` steps, a
best-dev checkpoint, early stopping, fixed seeds and resume after a kill. Run directory:
config.yaml (resolved), inputs.json (each store's fingerprint and each split manifest's hash,
pipeline/feed/run_inputs.py), checkpoints/{last,best}.pt (plain data, read with weights_only=True),
log.jsonl (one line per evaluation), task_state.json, metrics.json (a record per non-train
split, e.g. dev, test, test_unseen, of the best checkpoint) and interface_summary.json
(`interface.learned_summary()`, for the report's figures).

A resumed run refuses stores or manifests that changed since it started (InputsChanged, naming
the field and the file); `--force` then trains it again from scratch.

One trainer per run dir: `train` holds RUN_DIR.train.lock (pipeline/train/run_dir.py `hold_run`)
from its first write to its last; a second `pipeline train` of the same directory is refused
with one line naming the holder (RunLocked). Kills: every file is written through a temp file
and a rename (pipeline/checkpoint.py), an evaluation writes best.pt, then its log line, then
last.pt, and a rerun cuts the log back to last.pt's step (or, before the first last.pt, starts
from an empty run dir), so after a kill at any of those points the resumed run's log.jsonl,
checkpoints and metrics equal an uninterrupted run's (tests/test_crash_train.py). A full disk
is one line naming the file (OSError ENOSPC, pipeline/errors.py); the rerun resumes.

Determinism: every micro-batch reseeds torch, numpy and random from (seed, step, micro) and
every epoch's loader is built from (seed, epoch), so a resumed run reproduces an uninterrupted
one exactly, whatever the loader or the task draw from the global generators.
"""

from __future__ import annotations

import errno
import json
import os
import random
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.checkpoint import (
    atomic_save,
    atomic_write_text,
    crash_point,
    json_default,
    load_checkpoint,
    plain,
    rng_state,
    set_rng_state,
)
from pipeline.console import console
from pipeline.feed.loader import stores_info
from pipeline.feed.run_inputs import inputs_summary, write_inputs
from pipeline.interfaces.base import count_parameters
from pipeline.train.config import RunConfig, from_dict, identity, to_dict
from pipeline.train.feed import Setup, build_setup, iter_batches
from pipeline.train.run_dir import (
    RunDirError,
    RunLocked,
    hold_run,
    inputs_unchanged,
    prepare_run_dir,
    truncate_log,
)

__all__ = ["RunDirError", "RunLocked", "Trainer", "open_run", "reseed", "score_split", "train"]


def reseed(*keys: Any) -> None:
    """Seed torch, numpy and random from a tuple of keys (stable across processes)."""
    s = zlib.crc32(repr(keys).encode()) & 0x7FFFFFFF
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def score_split(setup: Setup, split: str, utts: list | None = None) -> tuple[dict, list, list]:
    """Predict and score one split with the current weights -> (record, outputs, utts)."""
    utts = setup.splits[split] if utts is None else utts
    setup.interface.eval()
    setup.head.eval()
    outputs: list = []
    seen: list = []
    with torch.no_grad():
        for batch in iter_batches(setup, utts, shuffle=False):
            out, out_len = setup.interface(batch["feats"], batch["lengths"])
            outputs.extend(setup.task.predict(setup.head, out, out_len))
            seen.extend(batch["utts"])
    rec = setup.task.score(outputs, seen, split, setup.data_dir)
    return rec, outputs, seen


def append_line(path: Path, line: str) -> None:
    """Append one line to a log in one write; a full disk names the file (OSError ENOSPC)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as e:
        if e.errno == errno.ENOSPC and e.filename is None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise


def _better(value: float, best: float | None, direction: str) -> bool:
    if best is None:
        return True
    return value > best if direction == "higher" else value < best


def crop_clips(
    feats: list[torch.Tensor], lengths: list[torch.Tensor], rates: list[float], crop_s: float
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One random window of `crop_s` seconds per clip, the same stretch of audio in every
    upstream (each at its own frame rate); clips shorter than the window stay whole. SUPERB
    crops its speaker-verification training clips the same way. Draws from torch's generator,
    which the trainer reseeds every step.

    feats[i] (B, L_i, T_i, D_i), lengths[i] (B,) -> the same with T_i at most crop_s·rate_i.
    """
    dur = torch.stack([n.float() / r for n, r in zip(lengths, rates, strict=True)]).amin(0)
    start = torch.rand(dur.shape, device=dur.device) * (dur - crop_s).clamp(min=0)  # seconds
    out_f, out_n = [], []
    for x, n, r in zip(feats, lengths, rates, strict=True):
        width = max(1, round(crop_s * r))
        if width >= x.shape[2]:
            out_f.append(x)
            out_n.append(n)
            continue
        first = (start * r).long().clamp(min=0)
        first = torch.minimum(first, (n - width).clamp(min=0))
        idx = (first[:, None] + torch.arange(width, device=x.device)).clamp(max=x.shape[2] - 1)
        idx = idx[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[3])
        out_f.append(torch.gather(x, 2, idx))
        out_n.append(torch.minimum(n, torch.full_like(n, width)))
    return out_f, out_n


def _to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_device(v, device) for v in x)
    return x


def epoch_stream(
    seed: int, pos: dict, epoch_batches: Callable[[int], Iterator[dict]], data: str
) -> Iterator[dict]:
    """Training batches across epochs from `pos` ({"epoch", "pos"}, kept current so a
    checkpoint can resume exactly): each epoch reseeds, then `epoch_batches(epoch)` is skipped
    past what was already consumed. One definition for a lone, packed or DDP run."""
    while True:
        reseed(seed, "epoch", pos["epoch"])
        it = epoch_batches(pos["epoch"])
        for _ in range(pos["pos"]):  # skip what the checkpointed run already consumed
            if next(it, None) is None:
                break
        n = 0
        for batch in it:
            n += 1
            pos["pos"] += 1
            yield batch
        if n == 0 and pos["pos"] == 0:
            raise RuntimeError(f"no training batches from {data}/train.jsonl")
        pos["epoch"] += 1
        pos["pos"] = 0


class Trainer:
    """One run: the setup, optimizer, scheduler and the resumable counters."""

    main = True  # this process writes the run directory (not so on DDP ranks > 0)

    def __init__(self, cfg: RunConfig, setup: Setup):
        self.cfg, self.setup = cfg, setup
        self.run_dir = Path(cfg.out)
        self.ckpt_dir = self.run_dir / "checkpoints"
        t = cfg.train
        params = [
            p for m in (setup.interface, setup.head) for p in m.parameters() if p.requires_grad
        ]
        self.params = params
        self.opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        warm = max(t.warmup, 0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0
        )
        # resumable counters: optimizer steps done, epoch, batches consumed in this epoch
        self.state = {"step": 0, "epoch": 0, "pos": 0, "best": None, "best_step": -1, "bad": 0}
        self.state.update({"elapsed": 0.0, "finished": False})

    # -- checkpoints -------------------------------------------------------------------------
    def _weights(self) -> dict:
        s = self.setup
        return {
            "interface": s.interface.state_dict(),
            "head": s.head.state_dict(),
            "task_state": plain(s.task.state()),
            "shapes": [[int(L), int(D)] for L, D in s.shapes],
            "frame_rates": [float(r) for r in s.frame_rates],
            "config": plain(to_dict(self.cfg)),
        }

    def save_last(self) -> None:
        ck = self._weights()
        ck.update(optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict())
        ck.update(state=plain(self.state), rng=rng_state())
        atomic_save(ck, self.ckpt_dir / "last.pt")

    def resume(self) -> None:
        ck = load_checkpoint(self.ckpt_dir / "last.pt", self.setup.device)
        if identity(from_dict(ck["config"], "checkpoint config")) != identity(self.cfg):
            raise RunDirError(
                f"{self.ckpt_dir / 'last.pt'} was written by another config; use --force"
            )
        self.setup.interface.load_state_dict(ck["interface"])
        self.setup.head.load_state_dict(ck["head"])
        self.setup.task.load_state(ck["task_state"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.state.update(ck["state"])
        set_rng_state(ck["rng"])
        if self.main:
            truncate_log(self.run_dir / "log.jsonl", self.state["step"])
        console.print(f"resumed from step {self.state['step']} ({self.ckpt_dir / 'last.pt'})")

    # -- the loop ----------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> Iterator[dict]:
        """Epoch `epoch`'s training batches (a distributed trainer yields its rank's part)."""
        return iter_batches(self.setup, self.setup.splits["train"], shuffle=True, epoch=epoch)

    def _stream(self) -> Iterator[dict]:
        """Training batches across epochs; keeps (epoch, pos) exact for resume."""
        return epoch_stream(self.cfg.train.seed, self.state, self._epoch_batches, self.cfg.data)

    def begin_step(self) -> None:
        """Train mode, the interface's schedule for this step, zeroed gradients."""
        su = self.setup
        su.interface.train()
        su.head.train()
        if hasattr(su.interface, "step"):
            su.interface.step(self.state["step"])
        self.opt.zero_grad(set_to_none=True)

    def batch_loss(self, batch: dict) -> torch.Tensor:
        """The task's loss on one micro-batch (a scalar tensor): clips cropped to `crop_s`
        seconds and the forward in bf16 autocast when the train settings ask for them."""
        su, t = self.setup, self.cfg.train
        feats, lengths = batch["feats"], batch["lengths"]
        if t.crop_s > 0:
            feats, lengths = crop_clips(feats, lengths, su.frame_rates, t.crop_s)
        with torch.autocast(su.device.type, dtype=torch.bfloat16, enabled=t.autocast == "bf16"):
            out, out_len = su.interface(feats, lengths)
            targets = _to_device(
                su.task.collate([su.task.target(u) for u in batch["utts"]]), su.device
            )
            loss = su.task.loss(su.head, out, out_len, targets)
        return loss.float()

    def micro_step(self, batch: dict, micro: int) -> float:
        """Reseed from (seed, step, micro), forward and backward one micro-batch -> loss / accum."""
        s, t = self.state, self.cfg.train
        reseed(t.seed, "step", s["step"], micro)
        loss = self.batch_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at step {s['step']} (utts {batch['ids'][:4]}...)"
            )
        (loss / t.accum).backward()
        return loss.item() / t.accum

    def end_step(self) -> None:
        """Clip, optimizer and scheduler step, count the step."""
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip)
        self.opt.step()
        self.sched.step()
        self.state["step"] += 1

    def _train_step(self, stream: Iterator[dict]) -> float:
        self.begin_step()
        total = 0.0
        for micro in range(self.cfg.train.accum):
            total += self.micro_step(next(stream), micro)
        self.end_step()
        return total

    def _evaluate(self, losses: list[float]) -> bool:
        """Dev evaluation, log line, best.pt and last.pt. Returns True to stop early."""
        s, t, task = self.state, self.cfg.train, self.setup.task
        rec, _, _ = score_split(self.setup, "dev")
        value = float(rec["value"])
        improved = _better(value, s["best"], task.direction)
        if improved:
            s["best"], s["best_step"], s["bad"] = value, s["step"], 0
            best = self._weights()
            best.update(step=s["step"], value=value)
            atomic_save(best, self.ckpt_dir / "best.pt")
        else:
            s["bad"] += 1
        line = {
            "step": s["step"],
            "epoch": s["epoch"],
            "train_loss": float(np.mean(losses)) if losses else None,
            f"dev_{task.metric}": value,
            "best": improved,
            "lr": self.opt.param_groups[0]["lr"],
            "time": round(s["elapsed"], 2),
        }
        append_line(self.run_dir / "log.jsonl", json.dumps(line))
        crash_point("logged")
        stop = t.patience > 0 and s["bad"] >= t.patience
        if stop or s["step"] >= t.steps:
            s["finished"] = True
        self.save_last()
        if stop:
            console.print(
                f"early stop at step {s['step']}: no dev improvement in {t.patience} evaluations"
            )
        return stop

    def fit(self, progress: bool = True) -> None:
        s, t = self.state, self.cfg.train
        if s["finished"]:
            return
        stream = self._stream()
        losses: list[float] = []
        cols = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*cols, console=console, disable=not progress, transient=False) as bar:
            job = bar.add_task("train", total=t.steps, completed=s["step"])
            while s["step"] < t.steps:
                t0 = time.perf_counter()
                losses.append(self._train_step(stream))
                s["elapsed"] += time.perf_counter() - t0
                bar.update(job, completed=s["step"], description=f"train loss {losses[-1]:.3f}")
                if s["step"] % t.eval_every == 0 or s["step"] >= t.steps:
                    if self._evaluate(losses):
                        break
                    losses = []
                    desc = f"dev {self.setup.task.metric} {s['best']:.4f} (best, step {s['best_step']})"
                    bar.update(job, description=desc)
        if t.steps == 0:
            s["finished"] = True
            self.save_last()

    def finish(self) -> list[dict]:
        """Load best.pt (or keep the current weights if there is none), score every non-train split.

        Records, in order: dev, test, then the data dir's other splits (e.g. test_unseen).
        """
        best_path = self.ckpt_dir / "best.pt"
        if best_path.exists():
            ck = load_checkpoint(best_path, self.setup.device)
            self.setup.interface.load_state_dict(ck["interface"])
            self.setup.head.load_state_dict(ck["head"])
        for split in ("dev", "test"):
            if split not in self.setup.splits:
                console.print(f"[yellow]no {split}.jsonl in {self.cfg.data}: {split} not scored")
        records = []
        for split in [k for k in self.setup.splits if k != "train"]:
            rec, _, _ = score_split(self.setup, split)
            rec.setdefault("interface", self.cfg.interface)
            rec.setdefault("models", list(self.cfg.models))
            rec.setdefault("stores", stores_info(self.setup.sources))  # encoding + layers seen
            rec.setdefault("best_step", self.state["best_step"])
            rec.setdefault("inputs", inputs_summary(self.setup.inputs))
            records.append(rec)
        summary = getattr(self.setup.interface, "learned_summary", lambda: {})()
        atomic_write_text(
            self.run_dir / "interface_summary.json",
            json.dumps(summary, indent=2, default=json_default),
        )
        # metrics.json last: its presence means the run finished (the grid without DVC reads it)
        atomic_write_text(
            self.run_dir / "metrics.json", json.dumps(records, indent=2, default=json_default)
        )
        return records


def open_run(cfg: RunConfig, force: bool, *, main: bool = True) -> tuple[Setup, bool]:
    """Everything a run does before its first step, one way for a lone, packed or DDP run:
    prepare the run directory, seed and build the setup, check and record the inputs.

    `main` is False on the DDP ranks that neither write nor decide (rank 0 did, before them).
    Returns (setup, resume: whether a checkpoint to resume from is there and still valid).
    The caller holds the run (`hold_run`) on the main process."""
    if not cfg.out:
        raise RunDirError("no run directory: give --out RUN_DIR")
    run_dir = Path(cfg.out)
    if main:
        resume = prepare_run_dir(cfg, force)
    else:
        resume = (run_dir / "checkpoints" / "last.pt").exists()
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    reseed(cfg.train.seed, "init")  # the interface's and head's initial weights
    setup = build_setup(cfg)
    if main:
        atomic_write_text(
            run_dir / "task_state.json",
            json.dumps(setup.task.state(), indent=2, default=json_default),
        )
        if resume:
            resume = inputs_unchanged(run_dir, setup.inputs, force)
        write_inputs(run_dir, setup.inputs)
    return setup, resume


def train(cfg: RunConfig, *, force: bool = False, progress: bool = True) -> Path:
    """Train (or resume) the run `cfg.out`, holding its lock; returns the run directory.

    RunLocked when another process trains the same run dir."""
    if not cfg.out:
        raise RunDirError("no run directory: give --out RUN_DIR")
    with hold_run(cfg.out):
        return _train(cfg, force, progress)


def _train(cfg: RunConfig, force: bool, progress: bool) -> Path:
    setup, resume = open_run(cfg, force)
    run_dir = Path(cfg.out)
    console.print(
        f"{cfg.task} on {cfg.data} | interface {cfg.interface} over {','.join(cfg.models)} | "
        f"device {setup.device} | features {cfg.train.features}"
    )
    console.print(
        f"trainable parameters: interface {count_parameters(setup.interface):,}, head {count_parameters(setup.head):,}"
    )
    trainer = Trainer(cfg, setup)
    if resume:
        trainer.resume()
    trainer.fit(progress=progress)
    records = trainer.finish()
    for r in records:
        console.print(f"{r['split']}: {r['metric']} = {r['value']:.4f}")
    return run_dir
