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
    out: Path = typer.Option(
        Path("data/demo"), "--out", help="Folder of the suite (task dirs go inside)."
    ),
    preset: str = typer.Option("demo", help="Size of the suite: tiny (tests) or demo."),
    seed: int = typer.Option(
        0, help="Seed of every random choice; the same seed gives the same files."
    ),
) -> None:
    """Synthesize the built-in offline suite (asr_en, ml_asr, sv, er) with eSpeak NG voices."""
    import importlib

    synth_module = importlib.import_module("pipeline.data.synth")

    errors = (ValueError, getattr(synth_module, "SynthError", ValueError))  # e.g. no espeak-ng
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

    from pipeline.audio import AudioError, load_audio
    from pipeline.data.manifest import ManifestError, read_manifest, read_trials

    manifests = [target] if target.is_file() else sorted(target.rglob("*.jsonl"))
    if not target.exists() or not manifests:
        raise _fail(f"{target} is not a manifest nor a folder holding *.jsonl manifests")
    problems: list[str] = []
    files: dict[Path, tuple[Path, str, float]] = {}  # audio -> (manifest, utt id, duration)
    ids_by_dir: dict[Path, set[str]] = {}
    n_utts = 0
    for m in manifests:
        try:
            utts = read_manifest(m, check_files=False)
        except ManifestError as e:
            problems.append(str(e))
            continue
        n_utts += len(utts)
        ids_by_dir.setdefault(m.parent, set()).update(u.id for u in utts)
        for u in utts:
            files.setdefault(Path(u.path), (m, u.id, u.duration))
    missing = [
        f"{m}: {uid}: {p} does not exist" for p, (m, uid, _) in files.items() if not p.is_file()
    ]
    problems += missing

    for t in sorted({d / "trials.tsv" for d in ids_by_dir if (d / "trials.tsv").is_file()}):
        try:
            unknown = sorted(
                {i for _, a, b in read_trials(t) for i in (a, b)} - ids_by_dir[t.parent]
            )
        except ManifestError as e:
            problems.append(str(e))
            continue
        if unknown:
            problems.append(
                f"{t}: {len(unknown)} id(s) not in the manifests beside it, e.g. {unknown[:5]}"
            )

    present = [p for p in files if p.is_file()]
    seconds = 0.0
    columns = (TextColumn("decoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        for p in progress.track(present):
            m, uid, duration = files[p]
            try:
                n = len(load_audio(p))
            except AudioError as e:
                problems.append(f"{m}: {uid}: {e}")
                continue
            seconds += n / 16000
            if abs(n / 16000 - duration) > 0.05:
                problems.append(
                    f"{m}: {uid}: manifest says {duration:.3f} s, {p} holds {n / 16000:.3f} s"
                )

    typer.echo(
        f"{len(manifests)} manifest(s), {n_utts} utterance(s), {len(files)} audio file(s), "
        f"{seconds / 3600:.2f} h decoded"
    )
    if problems:
        typer.echo(f"{len(problems)} problem(s):", err=True)
        for p in problems:
            typer.echo(f"  {p}", err=True)
        raise typer.Exit(1)
    typer.echo("all manifests and audio files are usable")
