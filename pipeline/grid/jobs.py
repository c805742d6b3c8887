"""The grid runner's jobs and its local engine: worker processes on slots of this machine.

A `Job` is a list of runs one worker trains in turn (`python -m pipeline.grid.worker KEY...`);
a `Slot` is where a local job runs (one GPU, or a share of the cores). `run_job` starts one
job's process and waits for it (also a Dask task, pipeline/grid/dask_runner.py); `run_local` keeps every
slot busy and hands each result to the caller's thread, one at a time.

Workers die with their grid. Each starts in its own session and process group (so its
DataLoader workers or torchrun ranks go with it) with a parent-death signal: on Linux
prctl(PR_SET_PDEATHSIG, SIGKILL), set between fork and exec (`die_with_parent`), so a grid
killed by any signal, SIGKILL included, takes its workers with it. `run_local` kills every live
worker's group (`kill_workers`) when it ends by an error or an interrupt (Ctrl-C), and
`run_job` kills what is left of a worker's group when the worker itself exits. A worker killed
by a signal is reported `lost`; the runner resubmits it and its runs resume.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    """Runs (plan keys) one worker trains in turn."""

    keys: list[str]
    cost: float = 0.0  # relative expected time, for longest-first ordering
    attempt: int = 0  # resubmissions so far

    @property
    def name(self) -> str:
        return self.keys[0] if len(self.keys) == 1 else f"{self.keys[0]}+{len(self.keys) - 1}"


@dataclass
class Slot:
    """Where a local job runs: one GPU, or a share of the CPU cores."""

    index: int
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES
    cores: list[int] = field(default_factory=list)  # CPU affinity; empty: no pinning
    threads: int = 1  # torch intra-op threads (and OMP/MKL)


@dataclass
class JobResult:
    keys: list[str]
    rc: int  # the worker process's exit status; negative: killed by that signal
    seconds: float
    log: str  # its stdout+stderr file
    lost: bool = False  # killed by a signal or lost with its Dask worker: resubmit


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_live: dict[int, subprocess.Popen] = {}  # worker pid (= its process group) -> its process
_live_lock = threading.Lock()


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, loaded once here (not between fork and exec); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


_prctl = _load_prctl()


def die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when the thread that started it exits (Linux;
    a no-op elsewhere). If `parent` (its pid) is already gone, end now: the signal would never
    come. Meant for between fork and exec (a preexec_fn): it takes no lock and imports nothing
    (prctl was loaded before the fork)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def kill_workers() -> int:
    """SIGKILL the process group of every worker `run_job` started in this process and that is
    still running; returns how many. (The runner calls it when the grid stops early.)"""
    with _live_lock:
        procs = list(_live.values())
    for p in procs:
        _kill_group(p.pid)
    return len(procs)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_then_clean(p: subprocess.Popen) -> int:
    """Wait for a worker; once it has exited, and before it is reaped (so its pid, the group's
    id, cannot be reused yet), forget it and kill whatever it left in its group; then reap it."""
    if hasattr(os, "waitid"):
        try:
            os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # reaped elsewhere
            pass
    with _live_lock:
        _live.pop(p.pid, None)
    _kill_group(p.pid)
    return p.wait()


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))  # fmt: skip


def local_slots(jobs: int, gpus: int, cores: list[int] | None = None) -> list[Slot]:
    """`jobs` slots: round-robin over the GPUs when there are any; each its share of the cores."""
    cores = cores if cores is not None else usable_cores()
    per = max(1, len(cores) // jobs)
    slots = []
    for i in range(jobs):
        mine = cores[i * per : (i + 1) * per] if (i + 1) * per <= len(cores) else [cores[i % len(cores)]]  # fmt: skip
        slots.append(Slot(i, str(i % gpus) if gpus else None, mine, len(mine)))
    return slots


def worker_argv(params: str, job: Job, device: str | None, threads: int | None, cores: list[int], pack: bool = False) -> list[str]:  # fmt: skip
    argv = [sys.executable, "-m", "pipeline.grid.worker", "--params", params]
    if pack and len(job.keys) > 1:
        argv += ["--pack"]
    if device:
        argv += ["--device", device]
    if threads:
        argv += ["--threads", str(threads)]
    if cores:
        argv += ["--cores", ",".join(map(str, cores))]
    return argv + job.keys


def thread_env(threads: int, gpu: str | None = None) -> dict[str, str]:
    """The environment a worker process gets on top of its host's: thread counts, its GPU."""
    n = str(threads)
    env = {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n} if threads else {}
    return {**env, "CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else env


def run_job(root: str, argv: list[str], env: dict[str, str], log: str) -> JobResult:
    """Run one job's worker process in `root` with `env` over this host's environment, its
    output appended to `log` (module level: it is also a Dask task).

    The worker gets its own process group and dies with the thread that started it (see the
    module's docstring); an exception here (an interrupt) kills its group before propagating."""
    t0 = time.monotonic()
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    parent = os.getpid()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(argv)}\n")
        f.flush()
        p = subprocess.Popen(argv, cwd=root, env={**os.environ, **env}, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=lambda: die_with_parent(parent))  # fmt: skip
        with _live_lock:
            _live[p.pid] = p
        try:
            rc = _wait_then_clean(p)
        except BaseException:
            with _live_lock:
                _live.pop(p.pid, None)
            _kill_group(p.pid)
            p.wait()
            raise
    keys = [a for a in argv[argv.index("--params") + 2 :] if not a.startswith("--")]
    return JobResult(keys, rc, time.monotonic() - t0, log, lost=rc < 0 or rc == 137)


def run_local(jobs: list[Job], slots: list[Slot], launch: Callable[[Job, Slot], JobResult],
              on_result: Callable[[Job, JobResult], bool]) -> None:  # fmt: skip
    """Run jobs on `slots` (one thread each, blocking on its worker process). `on_result` runs
    in this thread, one result at a time (DVC calls stay serialized); it returns True to
    resubmit the job. Ended by an exception (Ctrl-C included), it starts nothing more and kills
    every live worker's process group before raising."""
    todo: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()
    for j in jobs:
        todo.put(j)

    stop = threading.Event()

    def loop(slot: Slot) -> None:
        while (job := todo.get()) is not None and not stop.is_set():
            try:
                results.put((job, launch(job, slot)))
            except BaseException as e:  # noqa: BLE001 (reported as a failed job)
                results.put((job, JobResult(job.keys, 1, 0.0, f"launch failed: {e}")))

    threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in slots]
    for t in threads:
        t.start()
    outstanding = len(jobs)
    try:
        while outstanding:
            job, res = results.get()
            if on_result(job, res):
                todo.put(job)
            else:
                outstanding -= 1
    except BaseException:  # an interrupt or an error here: no worker outlives the grid
        stop.set()  # nothing more starts
        for _ in threads:
            todo.put(None)
        deadline = time.monotonic() + 10.0
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            kill_workers()  # again, should a slot have started one as we stopped
            for t in threads:
                t.join(0.05)
        raise
    finally:
        for _ in threads:
            todo.put(None)
