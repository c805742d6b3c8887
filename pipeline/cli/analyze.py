"""`pipeline analyze probe|similarity`: layer-wise probes and cross-model layer similarity.

Both read the stores `CACHE_DIR/<model>.zarr` that `pipeline extract` wrote for the data dir
(or explicit `--store NAME=PATH`); the work is in pipeline/analysis/.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.analysis import settings as defaults
from pipeline.cli.names import RegistryHelp
from pipeline.cli.options import either, need_cache

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


def _open(names: list[str], cache: Path | None, stores: list[str]) -> list:
    from pipeline.feed.run_inputs import find_stores
    from pipeline.store import open_store

    if cache is None:  # --store instead of --cache: every model needs its store
        need_cache(names, stores)
    return [open_store(p) for p in find_stores(names, cache or "", stores)]


CACHE_HELP = "CACHE_DIR holding <model>.zarr for DATA (not needed with a --store per model)."
STORE_HELP = "An explicit store, NAME=PATH (repeatable); one per model replaces --cache."
# The defaults below are the analyze stage's (pipeline/analysis/settings.py), so a command and
# the `analysis` section of a config that leaves the key out give the same numbers.


def _splits(data: Path, names: tuple[str, ...], required: tuple[str, ...] = ("train",)) -> dict:
    from pipeline.data.splits import read_splits

    return read_splits(data, names, required=required)


@app.command("probe", cls=either(RegistryHelp, cache="store"))
def probe(
    model: str = typer.Option(..., "--model", help="Upstream(s), comma-separated: one curve each."),
    task: str = typer.Option(..., "--task", help="Task: {probe_tasks}."),
    data: Path = typer.Option(..., "--data", help="Task data dir with train/dev/test.jsonl."),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    out: Path = typer.Option(..., "--out", help="Writes OUT/probe_<task>.json and .png."),
    steps: int = typer.Option(
        None, "--steps", help="Adam steps per layer (default 300 er/sv, 600 CTC)."
    ),
    lr: float = typer.Option(
        None, "--lr", help="Adam learning rate (default 1e-2 er/sv, 5e-3 CTC)."
    ),
    seed: int = typer.Option(
        defaults.SEED, "--seed", help="Seed of every probe's initialisation and batches."
    ),
    store: list[str] = typer.Option([], "--store", help=STORE_HELP),
    split: str = typer.Option(
        defaults.PROBE["split"], "--plot-split", help="Split whose metric the PNG shows."
    ),
    max_train: int = typer.Option(
        defaults.PROBE["max_train_utterances"],
        "--max-train-utterances",
        help="A seeded sample of this many train utterances (default: all).",
    ),
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
    from pipeline.analysis.suite import limit

    splits = _splits(data, ("train", "dev", "test"))
    splits["train"] = limit(splits["train"], max_train, seed)
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


@app.command("similarity", cls=either(cache="store"))
def similarity(
    models: str = typer.Option(..., "--models", help="Upstreams, comma-separated (two or more)."),
    data: Path = typer.Option(..., "--data", help="Task data dir whose utterances are compared."),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    out: Path = typer.Option(..., "--out", help="Writes OUT/similarity.{json,npz}, cka_A__B.png."),
    max_frames: int = typer.Option(
        defaults.SIMILARITY["max_frames"],
        "--max-frames",
        help="Use at most N aligned frames (seeded sample of utterances; default: all).",
    ),
    splits: str = typer.Option(
        ",".join(defaults.SIMILARITY["splits"]),
        "--splits",
        help="Which manifests' utterances to use, comma-separated.",
    ),
    memory_gb: float = typer.Option(
        defaults.SIMILARITY["memory_gb"],
        "--memory-gb",
        help="Accumulator budget; wider models take several passes.",
    ),
    remove_position: bool = typer.Option(
        defaults.SIMILARITY["remove_position"],
        "--remove-position/--keep-position",
        help="First subtract each model's mean frame at every frame index (Whisper's positional "
        "embedding makes any two Whisper models, random ones too, look alike frame by frame).",
    ),
    seed: int = typer.Option(
        defaults.SEED, "--seed", help="Seed of the utterance sample (with --max-frames)."
    ),
    store: list[str] = typer.Option([], "--store", help=STORE_HELP),
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
            seed=seed,
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
