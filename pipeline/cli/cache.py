"""`pipeline cache verify|info STORE`: check a feature store and describe it."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console

from pipeline.cli.export import export_cmd
from pipeline.store import StoreError, open_store, verify_store
from pipeline.store.h5 import is_h5_path, verify_h5
from pipeline.store.verify import store_bytes

app = typer.Typer(no_args_is_help=True)
app.command("export")(export_cmd)  # pipeline cache export STORE OUT.h5 (docs/HDF5.md)


@app.callback()
def _group() -> None:
    """Command group."""


def store_info(path: str) -> dict:
    """Fingerprint, counts, audio hours, bytes (on disk, arrays, raw fp16), failures, read mode.

    `bytes_arrays`: the frames at the stored width plus the scales, without chunk padding,
    index or metadata (the fair size to compare encodings of one store).
    """
    r = open_store(path)
    frames = r.total_frames
    on_disk = store_bytes(path) if "://" not in path else None
    return {
        "store": path,
        "fingerprint": r.fingerprint,
        "format_version": r.attrs.get("format_version"),
        "parts": r.num_parts,
        "complete": r.complete,
        "utterances": len(r),
        "frames": frames,
        "hours": frames / r.frame_rate / 3600,
        "bytes_on_disk": on_disk,
        "bytes_raw_fp16": frames * r.num_layers * r.dim * 2,
        "bytes_arrays": frames * r.num_layers * r.dim * r.stored_dtype.itemsize
        + (0 if r.scales is None else r.scales.nbytes),
        "encoding": r.encoding,
        "layers": r.layers,
        "read_mode": r.mode,
        "failed": r.failed,
    }


def _zarr_only(store: str, command: str) -> None:
    """HDF5 exports are read-only copies: `cache info` / `cache verify` work on the Zarr store."""
    if is_h5_path(store):
        raise StoreError(
            f"{store} is an HDF5 export (docs/HDF5.md); `pipeline cache {command}` reads Zarr "
            "stores: run it on the store it was exported from, or inspect the file with h5py"
        )


@app.command("verify")
def verify(
    store: str = typer.Argument(..., help="The store (.zarr folder) or an HDF5 export (.h5)."),
    full: bool = typer.Option(False, "--full", help="Also scan every stored value for NaN/inf."),
) -> None:
    """Check a store: every frame chunk and index array against the checksum recorded at commit,
    index consistency, lengths vs frames, fingerprint, every shard complete (--full: NaN/inf).
    An HDF5 export (.h5): every utterance's dataset, length, crc32 and values."""
    console = Console()
    t0 = time.monotonic()
    h5 = is_h5_path(store)
    probs = verify_h5(store) if h5 else verify_store(store, full=full)
    if probs:
        for p in probs:
            console.print(f"[red]✗[/red] {p}", highlight=False)
        raise typer.Exit(1)
    gb = store_bytes(store) / 1e9 if "://" not in store else 0.0
    dt = time.monotonic() - t0
    if h5:
        console.print(f"[green]✓[/green] {store}: every utterance's dataset, length, checksum and "
                      f"values are consistent ({dt:.1f} s)", highlight=False)  # fmt: skip
        return
    what = "checksums, values" if full else "checksums"
    console.print(
        f"[green]✓[/green] {store}: {what}, index, lengths, fingerprint and shards are consistent "
        f"({gb:.3f} GB in {dt:.1f} s)",
        highlight=False,
    )


@app.command("info")
def info(
    store: str = typer.Argument(..., help="The store (.zarr folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a store: fingerprint, utterances, hours, bytes, failures."""
    try:
        _zarr_only(store, "info")
        d = store_info(store)
    except StoreError as e:
        Console(stderr=True).print(f"[red]{e}[/red]", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    console = Console()
    console.print(f"[bold]{store}[/bold] (format v{d['format_version']}, {d['parts']} part(s), {'complete' if d['complete'] else 'INCOMPLETE'}, read mode {d['read_mode']})")  # fmt: skip
    for k, v in d["fingerprint"].items():
        console.print(f"  {k:14s} {v}", highlight=False)
    gb = (d["bytes_on_disk"] or 0) / 1e9
    console.print(f"  {d['utterances']} utterances, {d['frames']} frames, {d['hours']:.3f} audio-h, {gb:.3f} GB on disk ({d['bytes_arrays'] / 1e9:.3f} GB of {d['encoding']} arrays, {d['bytes_raw_fp16'] / 1e9:.3f} GB as raw fp16)")  # fmt: skip
    console.print(f"  {len(d['failed'])} failed utterance(s)")
    for f in d["failed"]:
        console.print(f"    {f['id']}: {f['reason']}", highlight=False)
