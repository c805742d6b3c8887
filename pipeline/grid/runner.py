"""Stage two at scale: train every run of the plan that is not up to date, many at once.

    params.yaml plan -> pending runs (`dvc status`) -> jobs (a job: runs one worker trains in
    turn) -> slots (local processes pinned to a GPU or a share of the cores) or Dask workers
    -> each finished job recorded in dvc.lock (as `dvc commit train@KEY` does; serialized here)

A job runs as one process, `python -m pipeline.grid.worker RUN_KEY...` (pipeline/grid/worker.py),
which trains its runs through the same `train_run` as dvc.yaml's train stage; so a run's
directory is the one `dvc repro` would write, and DVC afterwards finds those stages up to date.
Locally (`jobs`), slot i gets CUDA_VISIBLE_DEVICES=<GPU i mod #GPUs> on a GPU machine, and on
CPU its own `cores // jobs` cores (sched_setaffinity, torch threads, OMP/MKL_NUM_THREADS).
On Dask (`cluster`: local:N, or tcp://HOST:PORT of a running scheduler) each job is one task
that starts the same process on its worker (needing GPU=1 where workers declare that resource;
dask-cuda's LocalCUDACluster, one worker per GPU, for local:N on a GPU machine when installed).
A job whose process dies by a signal, or whose Dask worker is lost, is resubmitted (up to
`retries` times) and its runs resume from their last checkpoints (pipeline/train/loop.py).

Nothing trains twice. One grid per checkout: `run_grid` holds GRID_LOCK (.dvc/tmp/grid.lock,
or <runs_root>/.grid.lock without DVC; an flock, pipeline/store/lock.py) while it trains, and a
second `pipeline grid` is refused (GridLocked, one line naming the holder). Workers die with
their grid, even a SIGKILLed one (pipeline/grid/jobs.py: own process group, parent-death
signal, the group killed when the grid stops). Each run dir is trained under its own lock
(RUN_DIR.train.lock, pipeline/train/run_dir.py): before a job starts, its slot waits while
another process (a `pipeline train`, a worker of another checkout) holds one of its runs, then
starts the worker, which takes the lock itself; should a third process take it in between, the
worker is refused (RunLocked) and the job is reported failed, not trained twice.

A job is a list of runs so that runs sharing one pass over the cache can later be packed into
one worker; today every job holds one run, longest first (steps × batch × models, ×2 for CTC).
Modules: runner.py (what to train, the locks, recording it in DVC), jobs.py (jobs, slots, the
local engine), dask_runner.py (the Dask engine), worker.py (one job's process).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import yaml

from pipeline.errors import UserError
from pipeline.grid.dask_runner import connect, run_dask
from pipeline.grid.jobs import (
    Job,
    JobResult,
    Slot,
    local_slots,
    run_job,
    run_local,
    thread_env,
    usable_cores,
    worker_argv,
)
from pipeline.plan import Experiment, Plan, PlanError, check, load_experiment, make_plan
from pipeline.store.lock import FileLock
from pipeline.train.from_plan import run_config, store_paths
from pipeline.train.pack import pack_groups
from pipeline.train.run_dir import run_lock_path

GRID_LOCK = ".dvc/tmp/grid.lock"  # with DVC; without: <runs_root>/.grid.lock


class GridLocked(UserError, RuntimeError):
    """Another `pipeline grid` trains this checkout's runs."""


def grid_lock_path(root: Path, runs_root: Path, use_dvc: bool) -> Path:
    """The one-grid-per-checkout lock: GRID_LOCK in a DVC repo, else <runs_root>/.grid.lock."""
    return root / GRID_LOCK if use_dvc else runs_root / ".grid.lock"


def claim_run(run_dir: Path, fresh: bool, echo: Callable[[str], None], poll: float = 0.5) -> None:
    """Wait while another process trains `run_dir` (holds its lock); with `fresh`, remove the
    directory holding the lock (a stale finished run starts afresh, as under `dvc repro`).
    The lock is released on return: the worker takes it when it trains."""
    lock = FileLock(run_lock_path(run_dir))
    told = False
    while not lock.acquire(blocking=False):
        if not told:
            echo(f"  waiting: {run_dir} is being trained by {lock.owner()} ({lock.path})")
            told = True
        time.sleep(poll)
    try:
        if fresh and run_dir.exists():
            shutil.rmtree(run_dir)
    finally:
        lock.release()


@dataclass
class GridReport:
    planned: int = 0  # runs in the plan
    up_to_date: list[str] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)  # key -> why it cannot train yet
    pending: list[str] = field(default_factory=list)  # to train now
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason (log file)
    resubmitted: int = 0
    seconds: float = 0.0


def is_dvc_repo(root: Path) -> bool:
    return (root / ".dvc").is_dir()


def dvc_changed(root: Path) -> dict[str, list]:
    """`dvc status --json`: the stages that are not up to date, with what changed."""
    p = subprocess.run([_dvc(), "status", "--json"], cwd=root, capture_output=True, text=True)
    if p.returncode != 0:
        raise PlanError(f"`dvc status` failed in {root}: {p.stderr.strip() or p.stdout.strip()}")
    return json.loads(p.stdout or "{}")


def pending_runs(root: Path, exp: Experiment, plan: Plan, use_dvc: bool) -> GridReport:
    """Sort the plan's runs into up to date, blocked (stores not extracted yet) and to train.

    With DVC: a run is to train when `dvc status` lists its train stage; blocked when one of its
    stores' stamps is missing or its extract stage is not up to date. Without: a run is to train
    when its directory has no metrics.json, blocked when one of its stores does not exist.
    """
    rep = GridReport(planned=len(plan.runs))
    changed = dvc_changed(root) if use_dvc else {}
    stale_stores = {s.stamp for k, s in plan.stores.items() if f"extract@{k}" in changed}
    runs_root = Path(root, exp.paths.runs_root)
    for key, run in plan.runs.items():
        todo = f"train@{key}" in changed if use_dvc else not (runs_root / key / "metrics.json").is_file()  # fmt: skip
        if not todo:
            rep.up_to_date.append(key)
            continue
        if use_dvc:
            missing = [s for s in dict.fromkeys(run.stamps) if not (root / s).is_file() or s in stale_stores]  # fmt: skip
            why = f"store stamp(s) {missing} missing or stale: `dvc repro extract` first"
        else:
            stores = store_paths(run)
            missing = [s for s in stores if not (root / s).is_dir()]
            why = f"store(s) {missing} missing: extract them first (`dvc repro extract`)"
        if missing:
            rep.blocked[key] = why
        else:
            rep.pending.append(key)
    return rep


def make_jobs(exp: Experiment, plan: Plan, keys: list[str], pack: bool = False) -> list[Job]:
    """Jobs, longest first (the cost is a guess from the resolved run config): one per run, or
    with `pack` one per group of runs that can share a pass over the cache (pipeline/train/pack.py:
    the rows of one table column with the same seed), which its worker trains packed."""
    rcs = {k: run_config(exp, plan.runs[k]) for k in keys}  # resolved once per run
    cost = {}
    for k, rc in rcs.items():
        t, run = rc.train, plan.runs[k]
        ctc = 2.0 if run.task in ("asr_en", "asr", "ml_asr") else 1.0
        cost[k] = t.steps * t.batch_size * t.accum * len(run.models) * ctc
    groups = [[k] for k in keys]
    if pack and keys:
        by_out = {str(Path(rc.out)): k for k, rc in rcs.items()}
        try:  # grouping reads each run's train manifest and stores
            packed = pack_groups(list(rcs.values()))
        except (UserError, OSError, KeyError, ValueError) as e:  # a run unreadable here fails alone
            print(f"[grid] not packing: {e}", file=sys.stderr)
        else:
            groups = [[by_out[str(Path(c.out))] for c in g] for g in packed]
    jobs = [Job(g, sum(cost[k] for k in g)) for g in groups]
    return sorted(jobs, key=lambda j: -j.cost)


def _dvc() -> str:
    """The dvc executable: the one beside this Python (the project's venv), else on PATH."""
    here = Path(sys.executable).with_name("dvc")
    return str(here) if here.exists() else (shutil.which("dvc") or "dvc")


def dvc_commit(root: Path, keys: list[str]) -> None:
    """Record finished runs in dvc.lock, as `dvc commit -f train@KEY ...` would.

    The CLI re-reads and rewrites the whole dvc.lock once per target: with the default
    experiment's 132 train stages (a 20,000-line lock file) that is 7-8 s of CPU per run, 16
    minutes over the grid, taken from the training slots. Here DVC's own Repo collects the train
    stages once, saves and commits the finished ones (what `Repo.commit` does per target) and
    writes dvc.lock once, under DVC's repo lock: about 3 s plus 0.5 s per run.
    """
    from dvc.exceptions import DvcException  # DVC loads slowly: only when recording
    from dvc.repo import Repo

    want = {f"train@{k}" for k in keys}
    log = logging.getLogger("dvc")
    level, cwd = log.level, os.getcwd()
    log.setLevel(logging.ERROR)  # as `dvc commit -q`: DVC's info and warnings are not ours to show
    os.chdir(root)  # DVC resolves paths against the working directory, as its CLI in ROOT would
    try:
        with Repo(".") as repo, repo.lock:
            stages = [i.stage for i in repo.stage.collect_granular("train") if i.stage.name in want]  # fmt: skip
            if missing := want - {s.name for s in stages}:
                raise PlanError(f"dvc.yaml has no stage {sorted(missing)}: rerun `python -m pipeline.plan write`")  # fmt: skip
            for stage in stages:
                stage.save()
                stage.commit()
            stages[0].dvcfile.dump_stages(stages, update_pipeline=False)
    except DvcException as e:
        raise PlanError(f"`dvc commit` of {keys} failed: {e}") from e
    finally:
        os.chdir(cwd)
        log.setLevel(level)


def locked_stages(root: Path) -> set[str]:
    """Stage names recorded in dvc.lock (a run there but not up to date is a stale finished run)."""
    lock = root / "dvc.lock"
    return set((yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})) if lock.is_file() else set()  # fmt: skip


@dataclass
class GridOptions:
    params: str = "params.yaml"
    jobs: int | None = None  # local slots (default: #GPUs, else #cores)
    threads: int | None = None  # torch threads per local slot (default: its share of the cores)
    cluster: str | None = None  # local:N | tcp://HOST:PORT (Dask)
    device: str | None = None  # default: params.yaml's `device`
    retries: int = 2  # resubmissions of a job whose worker died
    dry_run: bool = False
    pack: bool = (
        True  # runs that can share one pass over the cache train packed (pipeline/train/pack.py)
    )
    dvc: bool | None = None  # None: when ROOT is a DVC repository
    record_every: float = 120.0  # seconds between recordings of finished runs in dvc.lock
    logs: str | None = None  # default: .dvc/tmp/grid (DVC) or <runs_root>/.grid-logs


def run_grid(opts: GridOptions, root: Path | str = ".", echo: Callable[[str], None] = print) -> GridReport:  # fmt: skip
    """Train every pending run of the plan concurrently; record each finished one in dvc.lock.

    Holds the checkout's grid lock throughout (not for a dry run); GridLocked when another
    grid holds it."""
    t0 = time.monotonic()
    root = Path(root).resolve()
    check(root / opts.params)
    exp = load_experiment(root / opts.params)
    plan = make_plan(exp)
    use_dvc = is_dvc_repo(root) if opts.dvc is None else opts.dvc
    if opts.dry_run:
        return _run_grid(opts, root, exp, plan, use_dvc, echo, t0)
    lock = FileLock(grid_lock_path(root, root / exp.paths.runs_root, use_dvc))
    if not lock.acquire(blocking=False):
        raise GridLocked(
            f"another `pipeline grid` ({lock.owner()}) is training the runs of {root} (it holds "
            f"{lock.path}); wait for it to finish or stop it, then rerun"
        )
    try:
        return _run_grid(opts, root, exp, plan, use_dvc, echo, t0)
    finally:
        lock.release()


def _run_grid(opts: GridOptions, root: Path, exp: Experiment, plan: Plan, use_dvc: bool,
              echo: Callable[[str], None], t0: float) -> GridReport:  # fmt: skip
    rep = pending_runs(root, exp, plan, use_dvc)
    jobs = make_jobs(exp, plan, rep.pending, pack=opts.pack)
    device = opts.device or exp.device
    gpus = 0 if device == "cpu" else torch.cuda.device_count()
    slots = local_slots(opts.jobs or gpus or len(usable_cores()), gpus)
    if opts.threads:  # a fixed thread count per slot (its cores stay its share)
        slots = [replace(s, threads=opts.threads) for s in slots]
    runs_root = root / exp.paths.runs_root
    logs = root / (opts.logs or (".dvc/tmp/grid" if use_dvc else runs_root / ".grid-logs"))
    where = f"Dask {opts.cluster}" if opts.cluster else f"{len(slots)} local slot(s)"
    echo(f"{rep.planned} runs: {len(rep.up_to_date)} up to date, {len(rep.blocked)} blocked, "
         f"{len(jobs)} to train on {where}" + (f" ({gpus} GPU(s))" if gpus else ""))  # fmt: skip
    for k, why in rep.blocked.items():
        echo(f"  blocked {k}: {why}")
    if opts.dry_run or not jobs:
        for j in jobs:
            echo(f"  would train {' '.join(j.keys)} (cost {j.cost:.3g})")
        return rep
    stale = locked_stages(root) if use_dvc else set()
    # like `dvc repro`: a stale finished run starts afresh (a partial one resumes); removed once,
    # when its job first starts (a resubmitted job resumes)
    fresh = {k for j in jobs for k in j.keys if f"train@{k}" in stale}
    fresh_lock = threading.Lock()

    def claim(job: Job) -> None:
        """Before a job starts: wait for its runs' other trainers; remove its stale runs."""
        for k in job.keys:
            with fresh_lock:
                remove = k in fresh
                fresh.discard(k)
            claim_run(runs_root / k, remove, echo)

    def on_result(job: Job, res: JobResult) -> bool:
        if res.lost and job.attempt < opts.retries:
            job.attempt += 1
            rep.resubmitted += 1
            echo(f"  lost {job.name} (rc {res.rc}); resubmitted ({job.attempt}/{opts.retries}), it resumes")  # fmt: skip
            return True
        if res.rc != 0:
            for k in job.keys:
                rep.failed[k] = f"exit status {res.rc}, see {res.log}"
            echo(f"  FAILED {job.name}: exit status {res.rc}, see {res.log}")
            return False
        rep.done += job.keys
        unrecorded.extend(job.keys)
        echo(f"  done {job.name} in {res.seconds:.1f} s [{len(rep.done)}/{len(rep.pending)}]")
        record()
        return False

    unrecorded: list[str] = []
    last_record = time.monotonic()

    def record(final: bool = False) -> None:
        """Record finished runs in dvc.lock: at most every `record_every` seconds, and at the end
        (one DVC pass costs seconds of CPU that the training slots would lose)."""
        nonlocal last_record
        if not (use_dvc and unrecorded) or (not final and time.monotonic() - last_record < opts.record_every):  # fmt: skip
            return
        keys = list(unrecorded)
        unrecorded.clear()
        try:
            dvc_commit(root, keys)
            echo(f"  recorded {len(keys)} run(s) in dvc.lock")
        except PlanError as e:  # trained, not recorded: `dvc commit` by hand, or `dvc repro`
            for k in keys:
                rep.done.remove(k)
                rep.failed[k] = str(e)
            echo(f"  trained {len(keys)} run(s) but could not record them: {e}")
        last_record = time.monotonic()

    def log(job: Job) -> str:
        return str(logs / f"{job.name}.log")

    if opts.cluster:
        client, owned, threads = connect(opts.cluster, gpus)

        def task(job: Job) -> tuple[str, list[str], dict[str, str], str]:
            claim(job)  # (waits here, in the submitting thread, while another process trains one)
            argv = worker_argv(opts.params, job, opts.device, threads, [], opts.pack)
            return str(root), argv, thread_env(threads), log(job)

        try:
            run_dask(jobs, client, task, on_result)
        finally:
            record(final=True)
            client.close()
            if owned is not None:
                owned.close()
    else:

        def launch(job: Job, s: Slot) -> JobResult:
            claim(job)
            argv = worker_argv(opts.params, job, opts.device, s.threads, s.cores, opts.pack)
            return run_job(str(root), argv, thread_env(s.threads, s.gpu), log(job))

        try:
            run_local(jobs, slots, launch, on_result)
        finally:  # Ctrl-C, or an error here: the workers are killed, what finished is recorded
            record(final=True)
    rep.seconds = time.monotonic() - t0
    echo(f"trained {len(rep.done)} run(s) in {rep.seconds:.1f} s, {len(rep.failed)} failed, "
         f"{rep.resubmitted} resubmitted" + ("; recorded in dvc.lock" if use_dvc else ""))  # fmt: skip
    return rep
