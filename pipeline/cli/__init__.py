"""The `pipeline` command: a typer app whose sub-commands call the stage modules.

Each command group lives in its own module in this package; this file only assembles them.
Errors a user can act on print one message and exit 1 (pipeline/cli/errors.py); `--debug`
(before the sub-command) or PIPELINE_DEBUG=1 shows the full traceback instead.
"""

from __future__ import annotations

import os

import typer

from pipeline.cli.errors import ErrorHandlingGroup
from pipeline.cli.names import RegistryHelp
from pipeline.cli.options import either

app = typer.Typer(
    name="pipeline",
    help="Cache all hidden layers of frozen speech foundation models, then train fusion interfaces and task heads on the cache.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    cls=ErrorHandlingGroup,
)


@app.callback()
def _main(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of any error (also PIPELINE_DEBUG=1)."
    ),
    verify_reads: bool = typer.Option(
        False,
        "--verify-reads",
        help="Check every frame chunk a command reads against its recorded crc32 (also "
        "PIPELINE_VERIFY_READS=1; inherited by grid workers). Costs one crc32 pass per chunk.",
    ),
) -> None:
    """Cache all hidden layers of frozen speech foundation models, then train fusion interfaces and task heads on the cache."""
    if verify_reads:
        from pipeline.store.reader import VERIFY_READS_ENV

        os.environ[VERIFY_READS_ENV] = "1"  # every store opened from now on, and child processes


def main() -> None:
    """Entry point of the `pipeline` script."""
    app()


from pipeline.cli import analyze, cache, data, evaluate, extract, grid, report, train  # noqa: E402
from pipeline.cli import predict as predict_cli  # noqa: E402
from pipeline.cli import upstreams as upstreams_cli  # noqa: E402

app.add_typer(
    data.app,
    name="data",
    help="Create the built-in offline suite or import a real corpus into manifests.",
)
app.add_typer(cache.app, name="cache", help="Inspect and verify feature stores.")
app.add_typer(
    analyze.app,
    name="analyze",
    help="Layer-wise probes and cross-model layer similarity from stores.",
)
app.command(
    "extract",
    cls=RegistryHelp,
    help="Stage one: run a frozen upstream over a manifest and store every layer's hidden states.",
)(extract.extract)
app.command(
    "train",
    cls=either(RegistryHelp, cache="store"),
    help="Stage two: train an interface and a task head from cached stores.",
)(train.train)
app.command(
    "train-packed",
    help="Train runs that share one pass over the cache (RUN_DIR/config.yaml files).",
)(train.train_packed)
app.command(
    "upstreams",
    help="List the registered upstreams: states, frame rate, and which extract here now.",
)(upstreams_cli.upstreams)
app.command("grid", help="Stage two at scale: train every pending run of the plan at once.")(
    grid.grid
)
app.command("evaluate", help="Re-score a trained run from its best checkpoint.")(evaluate.evaluate)
app.command("report", help="Collect run directories into results/table.md, metrics and figures.")(
    report.report
)
app.command(
    "predict", help="Predict audio with a trained run: its upstreams live, interface, head."
)(predict_cli.predict)
app.command(
    "export", help="Write a run's interface + head as one TorchScript file and a JSON card."
)(predict_cli.export)
