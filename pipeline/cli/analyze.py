"""`pipeline analyze probe|similarity`: layer-wise probes and cross-model layer similarity.

Both read the stores `CACHE_DIR/<model>.zarr` that `pipeline extract` wrote for the data dir
(or explicit `--store NAME=PATH`); the work is in pipeline/analysis/.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli.names import RegistryHelp

app = typer.Typer(no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Layer-wise probes and cross-model layer similarity from stores."""


def _names(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise typer.BadParameter("give at least one model name")
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"{text!r}: a model is named twice")
    return names


def _open(names: list[str], cache: Path, stores: list[str]) -> list:
    from pipeline.feed.run_inputs import find_stores
    from pipeline.store import open_store

    return [open_store(p) for p in find_stores(names, cache, stores)]


def _splits(data: Path, names: tuple[str, ...], required: tuple[str, ...] = ("train",)) -> dict:
    from pipeline.data.splits import read_splits

    return read_splits(data, names, required=required)


@app.command("probe", cls=RegistryHelp)
def probe(
    model: str = typer.Option(..., "--model", help="Upstream(s), comma-separated: one curve each."),
    task: str = typer.Option(..., "--task", help="Task: {probe_tasks}."),
    data: Path = typer.Option(..., "--data", help="Task data dir with train/dev/test.jsonl."),
    cache: Path = typer.Option(..., "--cache", help="CACHE_DIR holding <model>.zarr for DATA."),
    out: Path = typer.Option(..., "--out", help="Writes OUT/probe_<task>.json and .png."),
    steps: int = typer.Option(
        None, "--steps", help="Adam steps per layer (default 300 er/sv, 600 CTC)."
    ),
    lr: float = typer.Option(
        None, "--lr", help="Adam learning rate (default 1e-2 er/sv, 5e-3 CTC)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every probe's initialisation and batches."),
    store: list[str] = typer.Option(
        [], "--store", help="An explicit store, NAME=PATH (repeatable)."
    ),
    split: str = typer.Option("test", "--plot-split", help="Split whose metric the PNG shows."),
) -> None:
    """A linear probe on every stored layer; per-layer dev/test metrics and a curve over depth."""
    from pipeline.analysis.probe import (
        CLASSIFIER_TASKS,
        CTC_TASKS,
        ProbeConfig,
        run_probes,
        write_probe,
    )

    if task not in CLASSIFIER_TASKS + CTC_TASKS:
        raise typer.BadParameter(
            f"--task {task!r}: use one of {', '.join(CLASSIFIER_TASKS + CTC_TASKS)}"
        )
    names = _names(model)
    readers = dict(zip(names, _open(names, cache, store), strict=True))
    splits = _splits(data, ("train", "dev", "test"))
    cfg = ProbeConfig(steps=steps, lr=lr, seed=seed)
    try:
        doc = run_probes(readers, task, splits, data, cfg)
    except (KeyError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    js, png = write_probe(doc, out, split)
    for name, m in doc["models"].items():
        best = m.get("best_layer")
        if best:
            typer.echo(f"{name}: best layer {best['layer']}/{m['num_layers'] - 1} ({best['split']} {best['metric']} {best['value']:.3f})")  # fmt: skip
    typer.echo(str(js))
    typer.echo(str(png))


@app.command("similarity")
def similarity(
    models: str = typer.Option(..., "--models", help="Upstreams, comma-separated (two or more)."),
    data: Path = typer.Option(..., "--data", help="Task data dir whose utterances are compared."),
    cache: Path = typer.Option(..., "--cache", help="CACHE_DIR holding <model>.zarr for DATA."),
    out: Path = typer.Option(..., "--out", help="Writes OUT/similarity.{json,npz}, cka_A__B.png."),
    max_frames: int = typer.Option(
        None, "--max-frames", help="Use at most N aligned frames (seeded sample of utterances)."
    ),
    splits: str = typer.Option(
        "train,dev,test", "--splits", help="Which manifests' utterances to use."
    ),
    memory_gb: float = typer.Option(
        2.0, "--memory-gb", help="Accumulator budget; wider models take several passes."
    ),
    remove_position: bool = typer.Option(
        False,
        "--remove-position",
        help="First subtract each model's mean frame at every frame index (Whisper's positional "
        "embedding makes any two Whisper models, random ones too, look alike frame by frame).",
    ),
    store: list[str] = typer.Option(
        [], "--store", help="An explicit store, NAME=PATH (repeatable)."
    ),
) -> None:
    """Linear CKA between every layer of every model (and within each), on aligned frames."""
    from pipeline.analysis.similarity import layer_similarity, write_similarity

    names = _names(models)
    if len(names) < 2:
        raise typer.BadParameter("--models: name at least two upstreams (a,b)")
    readers = _open(names, cache, store)
    wanted = tuple(s.strip() for s in splits.split(",") if s.strip())
    utts = [u for us in _splits(data, wanted, required=()).values() for u in us]
    if not utts:
        typer.echo(f"error: no manifest of {wanted} in {data}", err=True)
        raise typer.Exit(1)
    try:
        res = layer_similarity(
            readers,
            names,
            [u.id for u in utts],
            max_frames,
            memory_bytes=memory_gb * 1e9,
            remove_position=remove_position,
        )
    except (KeyError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    write_similarity(res, out)
    for key, s in res.summary.items():
        typer.echo(
            f"{key}: a_to_b {s['a_to_b']:.3f}  b_to_a {s['b_to_a']:.3f}  mean {s['mean']:.3f}"
        )
    typer.echo(f"{res.frames} frames from {res.utterances} utterances, {res.passes} pass(es)")
    typer.echo(str(out / "similarity.json"))
