"""`pipeline grid`: train every pending run of params.yaml's plan at once (the work is in pipeline/grid/runner.py).

One grid per checkout: a second one is refused with one `error:` line naming the first (exit
1). SIGTERM stops the grid as Ctrl-C does: its workers are killed, what finished is recorded.
"""

from __future__ import annotations

import signal
import threading

import typer


def _interrupt_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt (in the main thread), so the grid's cleanup runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def grid(
    jobs: int = typer.Option(
        None, "--jobs", "-j", help="Local slots (default: one per GPU, else one per CPU core)."
    ),
    cluster: str = typer.Option(
        None, "--cluster", help="Run the jobs on Dask instead: local:N or tcp://HOST:PORT."
    ),
    threads: int = typer.Option(
        None, "--threads", help="Torch threads per local slot (default: its share of the cores)."
    ),
    params: str = typer.Option("params.yaml", "--params", help="The experiment and its plan."),
    device: str = typer.Option(None, "--device", help="cpu | cuda (default: params.yaml's)."),
    retries: int = typer.Option(2, "--retries", help="Resubmissions of a job whose worker died."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would train, train nothing."),
    pack: bool = typer.Option(
        True, "--pack/--no-pack", help="Train the runs of one table column in one pass (default)."
    ),
    dvc: bool = typer.Option(
        None,
        "--dvc/--no-dvc",
        help="Ask DVC what is pending and record what finished (default: in a DVC repo).",  # fmt: skip
    ),
    record_every: float = typer.Option(
        120.0, "--record-every", help="Seconds between recordings of finished runs in dvc.lock."
    ),
) -> None:
    """Train the runs `dvc status` lists as pending, concurrently, and record them in dvc.lock."""
    from pipeline.grid.runner import GridLocked, GridOptions, run_grid
    from pipeline.plan import PlanError

    if jobs is not None and cluster:
        raise typer.BadParameter("give --jobs (local slots) or --cluster (Dask), not both")
    if jobs is not None and jobs < 1:
        raise typer.BadParameter(f"--jobs {jobs}: need at least 1")
    opts = GridOptions(params=params, jobs=jobs, threads=threads, cluster=cluster, device=device, retries=retries, pack=pack,
                       dry_run=dry_run, dvc=dvc, record_every=record_every)  # fmt: skip
    _interrupt_on_sigterm()
    try:
        rep = run_grid(opts, echo=typer.echo)
    except GridLocked as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except (PlanError, ValueError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if rep.failed:
        raise typer.Exit(1)
