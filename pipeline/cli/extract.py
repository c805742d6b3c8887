"""`pipeline extract`: stage one from the command line (the work is in pipeline/extract/engine.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def _shard(text: str | None) -> tuple[int, int]:
    if not text:
        return (0, 1)
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise typer.BadParameter(f"{text!r}: need 0 <= i < n")
    return (i, n)


def extract(
    model: str = typer.Option(
        ...,
        "--model",
        help="Registry name ({upstreams}), hub id, local HF dir, Whisper checkpoint or CTranslate2 dir.",
    ),
    data: Path = typer.Option(
        ..., "--data", help="A manifest (.jsonl) or a task folder with train/dev/test.jsonl."
    ),
    out: str = typer.Option(
        ..., "--out", help="The store to write, e.g. cache/tiny/er/whisper_tiny_en.zarr."
    ),
    device: str = typer.Option("auto", "--device", help="cpu | cuda | auto."),
    whisper_mode: str = typer.Option(
        "pad30",
        "--whisper-mode",
        help="Whisper only: pad30 (pad to 30 s, crop) | trim (own length).",
    ),
    shard: str = typer.Option(
        None, "--shard", help="i/n: write part i of n (N processes or GPUs, no coordination)."
    ),
    batch_seconds: float = typer.Option(
        None,
        "--batch-seconds",
        help="Padded audio seconds per batch (default 40 on CPU, 400 on GPU).",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Rebuild a store made for a different request (deletes only the store's own files; "
        "refuses a folder holding anything else, or a part another process is writing).",
    ),
    cluster: str = typer.Option(
        None, "--cluster", help="Run all shards on Dask: local:N or tcp://HOST:PORT."
    ),
    compress: str = typer.Option(
        None, "--compress", help="zstd: smaller store, read through zarr (no memory map)."
    ),
    encoding: str = typer.Option(
        "fp16",
        "--encoding",
        help="fp16 (default) | int8 | fp8: 8-bit stores take half the bytes; a scale per layer "
        "and channel from a calibration pass (cache/README.md).",
    ),
    layers: str = typer.Option(
        None,
        "--layers",
        help="Keep only these hidden states: 0,4,8,12 or ranges a-b / a-b:step (0-12:4); default all.",
    ),
    calib_seconds: float = typer.Option(
        120.0, "--calib-seconds", help="int8/fp8: audio seconds of the calibration sample."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Run a frozen upstream over a manifest and store every layer's hidden states."""
    from pipeline.extract.engine import ExtractConfig, run, run_cluster

    console = Console(stderr=True)
    if whisper_mode not in ("pad30", "trim"):
        raise typer.BadParameter(f"--whisper-mode {whisper_mode!r}: use pad30 or trim")
    if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
        raise typer.BadParameter(f"--device {device!r}: use cpu, cuda or auto")
    if compress not in (None, "zstd", "none"):
        raise typer.BadParameter(f"--compress {compress!r}: use zstd")
    if encoding not in ("fp16", "int8", "fp8"):
        raise typer.BadParameter(f"--encoding {encoding!r}: use fp16, int8 or fp8")
    if cluster and shard:
        raise typer.BadParameter("--cluster runs every shard itself: drop --shard")
    cfg = ExtractConfig(
        model=model, data=str(data), out=out, device=device, whisper_mode=whisper_mode,
        shard=_shard(shard), batch_seconds=batch_seconds, force=force,
        compress=None if compress in (None, "none") else compress, progress=progress,
        encoding=encoding, layers=layers, calib_seconds=calib_seconds,
    )  # fmt: skip
    results = run_cluster(cfg, cluster) if cluster else [run(cfg)]  # errors: pipeline/errors.py
    written = sum(r.written for r in results)
    already = sum(r.already for r in results)
    failed = [f for r in results for f in r.failed]
    for w in [w for r in results for w in r.warnings][:20]:
        console.print(f"  [yellow]warning[/yellow] {w['id']}: {w['reason']}", highlight=False)
    secs = sum(r.audio_seconds for r in results)
    wall = max(r.wall_seconds for r in results)
    console.print(
        f"{out}: wrote {written} utterance(s) ({secs / 3600:.3f} audio-h in {wall:.1f} s, "
        f"{secs / max(wall, 1e-9):.0f}× real time), {already} already done, {len(failed)} failed"
    )
    for f in failed[:20]:
        console.print(f"  [yellow]failed[/yellow] {f['id']}: {f['reason']}", highlight=False)
    if len(failed) > 20:
        console.print(
            f"  ... and {len(failed) - 20} more: `pipeline cache info {out}` lists them all"
        )
