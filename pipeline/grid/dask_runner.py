"""The grid runner's jobs on Dask distributed: a local cluster or a running scheduler.

    local:N         a LocalCluster of N worker processes (one thread each), or dask-cuda's
                    LocalCUDACluster (one worker per GPU, CUDA_VISIBLE_DEVICES set per worker)
                    when the device is a GPU and dask-cuda is installed
    tcp://HOST:PORT a scheduler whose workers were started elsewhere, e.g. on SLURM through
                    dask-jobqueue (docs/SCALING.md); where workers declare `--resources GPU=1`
                    each job asks for one GPU

Each job is one task, `pipeline.grid.jobs.run_job`, which starts the job's worker process on the Dask
worker's machine in the same repository path (a shared filesystem). A worker lost mid-job makes
Dask reschedule its task elsewhere; a task that still fails because its process was killed is
resubmitted here. The runs resume from their last checkpoints either way.

Each job's process dies with the Dask worker thread that started it (`run_job` gives it its
own process group and a parent-death signal, pipeline/grid/jobs.py). A local:N cluster's worker
processes end with the grid that started them, even a SIGKILLed one, and their jobs with them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from distributed import Client, LocalCluster, as_completed

from pipeline.grid.jobs import Job, JobResult, run_job


def connect(cluster: str, gpus: int) -> tuple[Client, object | None, int]:
    """(client, the cluster this process started or None, threads per job or 0 for default)."""
    if cluster.startswith("local:"):
        n = int(cluster.split(":", 1)[1])
        if gpus:
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                LocalCUDACluster = None
            if LocalCUDACluster is not None:
                owned = LocalCUDACluster(n_workers=min(n, gpus), threads_per_worker=1)
                return Client(owned), owned, max(1, (os.cpu_count() or 1) // n)
        owned = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)  # fmt: skip
        return Client(owned), owned, max(1, (os.cpu_count() or 1) // n)
    if cluster.startswith("tcp://"):
        return Client(cluster), None, 0
    raise ValueError(f"--cluster {cluster!r}: use local:N or tcp://HOST:PORT")


def gpu_resource(client: Client) -> dict[str, float] | None:
    """{"GPU": 1} when the cluster's workers declare a GPU resource, else None."""
    workers = client.scheduler_info().get("workers", {}).values()
    return {"GPU": 1} if any("GPU" in (w.get("resources") or {}) for w in workers) else None


def run_dask(jobs: list[Job], client: Client, task: Callable[[Job], tuple[str, list[str], dict[str, str], str]],
             on_result: Callable[[Job, JobResult], bool]) -> None:  # fmt: skip
    """Submit every job (`task(job)` gives run_job's root, argv, env, log); `on_result` runs here,
    one result at a time, and returns True to resubmit."""
    resources = gpu_resource(client)
    futures = {}

    def submit(job: Job):
        root, argv, env, log = task(job)
        fut = client.submit(run_job, root, argv, env, log, pure=False, resources=resources,
                            key=f"grid-{job.name}-{job.attempt}")  # fmt: skip
        futures[fut] = job
        return fut

    done = as_completed([submit(j) for j in jobs])
    for fut in done:
        job = futures.pop(fut)
        try:
            res = fut.result()
        except Exception as e:  # noqa: BLE001 (KilledWorker, a lost connection: resubmit)
            res = JobResult(job.keys, -1, 0.0, f"{type(e).__name__}: {e}", lost=True)
        if on_result(job, res):
            done.add(submit(job))
