"""`pipeline predict` and `pipeline export`: use a trained run (the work is in pipeline/infer/).

Registered in pipeline/cli/__init__.py as the top-level commands `predict` (`predict`) and
`export` (`export`); `pipeline cache export` (a store as HDF5) is another command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console


def _upstreams(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, where = item.partition("=")
        if not sep or not name or not where:
            raise typer.BadParameter(f"{item!r}: expected MODEL=NAME_OR_PATH, e.g. whisper_base=/models/wb")  # fmt: skip
        out[name] = where
    return out


def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pipeline train`."),
    audio: list[str] = typer.Argument(
        None, help="Audio files, folders of them, or manifests (.jsonl)."
    ),
    out: Path = typer.Option(
        None, "--out", help="The JSONL to write (one line per utterance); default: stdout."
    ),
    trials: Path = typer.Option(
        None,
        "--trials",
        help="sv runs: score this trial list (`label enroll_id test_id`); ids name utterances of "
        "the inputs, else of the manifests beside the list.",
    ),
    upstream: list[str] = typer.Option(
        [],
        "--upstream",
        help="MODEL=NAME_OR_PATH: load the run's upstream MODEL from there (it must still match "
        "the store's fingerprint).",
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    batch_size: int = typer.Option(
        None, "--batch-size", help="Utterances per interface/head batch (default: the run's)."
    ),
    batch_seconds: float = typer.Option(
        None,
        "--batch-seconds",
        help="Padded audio seconds per upstream batch (default as `pipeline extract`: 40 on CPU, 400 on GPU).",
    ),
    score: bool = typer.Option(
        False, "--score", help="Score the predictions against the labels of the one manifest given."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Predict audio with a run: its upstreams live (as its stores were made), interface, head."""
    from pipeline.infer.predict import predict as run_predict

    err = Console(stderr=True)
    res = run_predict(
        run_dir,
        audio or [],
        out,
        trials=trials,
        upstreams=_upstreams(upstream),
        device=device,
        batch_size=batch_size,
        batch_seconds=batch_seconds,
        score=score,
        progress=progress,
    )
    if out is None:
        for r in res.records:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
    n = len(res.outputs)
    where = f" -> {res.out}" if res.out else ""
    err.print(
        f"[green]✓[/green] {n} utterance(s), {res.audio_seconds:.1f} audio-s in "
        f"{res.wall_seconds:.1f} s ({res.rate:.1f} audio-s/s){where}",
        highlight=False,
    )
    if res.skipped:
        listed = f" (listed in {res.out.with_name(res.out.stem + '.skipped.jsonl')})" if res.out else ""  # fmt: skip
        err.print(f"[yellow]{len(res.skipped)} skipped{listed}", highlight=False)
    if res.metric is not None:
        m = res.metric
        err.print(f"{m['split']}: {m['metric']} = {m['value']:.4f}", highlight=False)


def export(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pipeline train`."),
    out_dir: Path = typer.Argument(..., help="Folder for model.torchscript.pt and card.json."),
    force: bool = typer.Option(False, "--force", help="Overwrite an export already in OUT_DIR."),
    check_batches: int = typer.Option(
        4, "--check-batches", help="Cached test batches the file is checked on (0: random only)."
    ),
) -> None:
    """Write the run's interface + head as one TorchScript file (loads with torch alone) and its card."""
    from pipeline.infer.export import export_run

    res = export_run(run_dir, out_dir, force=force, check_batches=check_batches)
    Console(stderr=True).print(
        f"[green]✓[/green] {res.model} ({res.bytes / 1e6:.2f} MB), {res.card}; checked on "
        f"{len(res.checked_on)} batch(es), max |diff| {res.max_abs_diff:.2g}",
        highlight=False,
    )
