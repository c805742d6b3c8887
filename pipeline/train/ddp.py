"""One run over many GPUs (or CPU processes) with torch DistributedDataParallel.

    torchrun --standalone --nproc_per_node=N -m pipeline.cli train --interface ws ...

`pipeline train` sees torchrun's WORLD_SIZE > 1 and calls `train_ddp`. Every rank builds the
same setup (same init seed), reads the same bucketed global batches in the same epoch-seeded
order and takes its disjoint slice of each (`pipeline.feed.loader.DistributedBucketSampler`);
`train.batch_size` stays the GLOBAL batch, so a run on N processes follows the one-process
loss trajectory to float rounding. Each rank's loss is weighted by n_rank * N / n_global, so
DDP's gradient average equals the gradient of the global batch mean even when the slices
differ in size. Rank 0 alone evaluates on dev, writes log.jsonl, best.pt, last.pt and
metrics.json; the others wait and receive its counters (best, early stop). Resume: every
rank loads rank 0's last.pt. Backend: nccl on CUDA (one GPU per rank, LOCAL_RANK), else gloo.

Rank 0 holds the run dir's lock (RUN_DIR.train.lock, pipeline/train/run_dir.py) from before the
process group forms to the end: a second job, or a `pipeline train`, of the same run dir is
refused (RunLocked names the holder) and its ranks end with torchrun's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.console import console
from pipeline.feed.loader import FeatureDataset, make_loader
from pipeline.interfaces.base import count_parameters
from pipeline.train.config import RunConfig
from pipeline.train.feed import Setup, _on_device
from pipeline.train.loop import RunDirError, Trainer, _to_device, open_run
from pipeline.train.run_dir import hold_run


def world_size() -> int:
    """Processes in this job as torchrun announces them (1 when not started by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class _Loss(nn.Module):
    """interface + head + the task's loss as one module, for DDP to wrap."""

    def __init__(self, setup: Setup):
        super().__init__()
        self.interface, self.head, self.task = setup.interface, setup.head, setup.task

    def forward(self, feats: list, lengths: list, targets: object) -> torch.Tensor:
        out, out_len = self.interface(feats, lengths)
        return self.task.loss(self.head, out, out_len, targets)


class DDPTrainer(Trainer):
    """A Trainer whose steps run on this rank's slice of each global batch."""

    def __init__(self, cfg: RunConfig, setup: Setup, rank: int, world: int):
        super().__init__(cfg, setup)
        self.rank, self.world = rank, world
        self.main = rank == 0
        ids = [setup.device.index] if setup.device.type == "cuda" else None
        self.model = DistributedDataParallel(
            _Loss(setup), device_ids=ids, find_unused_parameters=True
        )
        self._loader = None

    def _epoch_batches(self, epoch: int) -> Iterator[dict]:
        su, t = self.setup, self.cfg.train
        if self._loader is None:
            ds = FeatureDataset(su.sources, su.splits["train"])
            self._loader = make_loader(ds, t.batch_size, shuffle=True, seed=t.seed,
                                       num_workers=t.num_workers, tier=t.tier, device=su.device,
                                       rank=self.rank, world=self.world)  # fmt: skip
        self._loader.set_epoch(epoch)
        for batch in self._loader:
            yield _on_device(batch, su.device)

    def begin_step(self) -> None:
        super().begin_step()
        self.model.train()

    def batch_loss(self, batch: dict) -> torch.Tensor:
        su = self.setup
        n = torch.tensor([float(len(batch["ids"]))], device=su.device)
        total = n.clone()
        dist.all_reduce(total)
        targets = _to_device(su.task.collate([su.task.target(u) for u in batch["utts"]]), su.device)  # fmt: skip
        loss = self.model(batch["feats"], batch["lengths"], targets)
        return loss * (n * self.world / total).squeeze()

    def micro_step(self, batch: dict, micro: int) -> float:
        """This rank's weighted loss is backpropagated; the global batch mean is returned."""
        local = super().micro_step(batch, micro)
        value = torch.tensor([local], dtype=torch.float64, device=self.setup.device)
        dist.all_reduce(value)
        return float(value.item()) / self.world

    def save_last(self) -> None:
        if self.main:
            super().save_last()

    def _evaluate(self, losses: list[float]) -> bool:
        stop = super()._evaluate(losses) if self.main else None
        shared = [self.state, stop]
        dist.broadcast_object_list(shared, src=0)
        self.state.update(shared[0])
        return bool(shared[1])


def train_ddp(cfg: RunConfig, *, force: bool = False, progress: bool = True) -> Path:
    """Train (or resume) `cfg.out` as one rank of a torchrun job; returns the run directory.

    Rank 0 holds the run dir's lock throughout (RunLocked when another process trains it)."""
    if not cfg.out:
        raise RunDirError("no run directory: give --out RUN_DIR")
    if cfg.train.features != "cache":
        raise RunDirError("DDP trains from stores only: set train.features=cache")
    rank = int(os.environ["RANK"])
    with hold_run(cfg.out) if rank == 0 else nullcontext():
        return _train_ddp(cfg, rank, force, progress)


def _train_ddp(cfg: RunConfig, rank: int, force: bool, progress: bool) -> Path:
    world = world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
    if cuda:
        torch.cuda.set_device(local)
        cfg.train.device = f"cuda:{local}"  # volatile: not part of the run's identity
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        if rank == 0:  # rank 0 prepares and checks the run dir, the others follow
            setup, resume = open_run(cfg, force)
        dist.barrier()
        if rank != 0:
            setup, resume = open_run(cfg, force, main=False)
        trainer = DDPTrainer(cfg, setup, rank, world)
        if rank == 0:
            console.print(
                f"{cfg.task} on {cfg.data} | interface {cfg.interface} over {','.join(cfg.models)}"
                f" | DDP over {world} processes ({dist.get_backend()}) | global batch "
                f"{cfg.train.batch_size} | trainable parameters: interface "
                f"{count_parameters(setup.interface):,}, head {count_parameters(setup.head):,}"
            )
        if resume:
            trainer.resume()
        trainer.fit(progress=progress and rank == 0)
        if rank == 0:
            for r in trainer.finish():
                console.print(f"{r['split']}: {r['metric']} = {r['value']:.4f}")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return Path(cfg.out)
