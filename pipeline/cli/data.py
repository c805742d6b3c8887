"""`pipeline data ...`: build the offline suite, import a real corpus, check manifests and audio."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.data.corpora import IMPORTERS

app = typer.Typer(no_args_is_help=True)
MAX_SHOWN = 20


@app.callback()
def _group() -> None:
    """Create the built-in offline suite or import a real corpus into manifests."""


def _fail(msg: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


@app.command("import")
def import_(
    corpus: str = typer.Argument(..., help=f"Corpus layout to read: {', '.join(IMPORTERS)}."),
    root: Path = typer.Argument(
        ..., help="Where the corpus was extracted (see the importer's docstring)."
    ),
    out: Path = typer.Option(
        Path("data"), "--out", help="Folder the task data dirs are written under."
    ),
    seed: int = typer.Option(0, help="Seed of the random dev splits (VoxCeleb1, IEMOCAP)."),
    trials: Path | None = typer.Option(
        None, help="VoxCeleb1 only: the official trial list, if not in ROOT."
    ),
) -> None:
    """Read a corpus in its own layout and write `OUT/<corpus>/.../{train,dev,test}.jsonl`."""
    from pipeline.data.corpora import CorpusError, import_corpus
    from pipeline.data.manifest import ManifestError

    if corpus not in IMPORTERS:
        raise _fail(f"unknown corpus {corpus!r}; choose one of {', '.join(IMPORTERS)}", 2)
    options = {}
    if trials is not None:
        if corpus != "voxceleb1":
            raise _fail("--trials applies to voxceleb1 only", 2)
        options["trials"] = trials
    try:
        result = import_corpus(corpus, root, out, seed=seed, **options)
    except (CorpusError, ManifestError) as e:
        raise _fail(str(e)) from None
    for path, n in result.written.items():
        typer.echo(f"{n:8d}  {path}")
    if result.skipped:
        typer.echo(f"left out {len(result.skipped)} item(s):")
        for s in result.skipped[:MAX_SHOWN]:
            typer.echo(f"  {s}")
        if len(result.skipped) > MAX_SHOWN:
            typer.echo(f"  ... and {len(result.skipped) - MAX_SHOWN} more")


@app.command()
def synth(
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Folder of the suite (task dirs go inside); default data/<preset>, where the "
        "configs of that preset read it (configs/tiny.yaml: data/tiny).",
    ),
    preset: str = typer.Option(
        "demo",
        help="Size of the suite: tiny (tests), demo (the default experiment) or large (configs/gpu.yaml).",
    ),
    seed: int = typer.Option(
        0, help="Seed of every random choice; the same seed gives the same files."
    ),
) -> None:
    """Synthesize the built-in offline suite (asr_en, ml_asr, sv, er) with eSpeak NG voices."""
    import importlib

    synth_module = importlib.import_module("pipeline.data.synth")

    errors = (ValueError, getattr(synth_module, "SynthError", ValueError))  # e.g. no espeak-ng
    out = out if out is not None else Path("data") / preset
    try:
        path = synth_module.synthesize(out, preset=preset, seed=seed)
    except errors as e:
        raise _fail(str(e)) from None
    typer.echo(f"wrote the {preset} suite to {path}")


@app.command()
def check(
    target: Path = typer.Argument(
        ..., help="A manifest (.jsonl) or a folder searched for manifests."
    ),
) -> None:
    """Read every manifest and decode every audio file; list every problem, exit 1 if any."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from pipeline.data.check import check_manifests
    from pipeline.data.manifest import ManifestError

    columns = (TextColumn("decoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        try:
            rep = check_manifests(target, track=progress.track)
        except ManifestError as e:
            raise _fail(str(e)) from None
    typer.echo(
        f"{len(rep.manifests)} manifest(s), {rep.utterances} utterance(s), {rep.files} audio "
        f"file(s), {rep.seconds / 3600:.2f} h decoded"
    )
    if rep.problems:
        typer.echo(f"{len(rep.problems)} problem(s):", err=True)
        for p in rep.problems:
            typer.echo(f"  {p}", err=True)
        raise typer.Exit(1)
    typer.echo("all manifests and audio files are usable")
