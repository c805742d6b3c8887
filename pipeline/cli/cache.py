"""`pipeline cache verify|info STORE`: check a feature store and describe it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Command group."""


def verify_store(path: str, sample: int = 32) -> list[str]:
    """Problems found in a store (empty when it is sound): index, lengths, fingerprint, shards, NaN."""
    from pipeline.store import FINGERPRINT_FIELDS, StoreError, open_store

    try:
        r = open_store(path)
    except (StoreError, KeyError, ValueError, OSError) as e:
        return [f"cannot open: {e}"]
    probs = [f"fingerprint lacks field {k!r}" for k in FINGERPRINT_FIELDS if k not in r.fingerprint]
    if len(r.layers) != r.num_layers or r.layers != sorted(set(r.layers)):
        probs.append(f"fingerprint lists layers {r.layers} for num_layers {r.num_layers}")
    if r.fingerprint.get("dtype") != str(r.stored_dtype):
        probs.append(f"fingerprint dtype {r.fingerprint.get('dtype')!r} does not match encoding {r.encoding} ({r.stored_dtype})")  # fmt: skip
    if r.scales is not None:
        if r.scales.shape != (r.num_layers, r.dim):
            probs.append(f"scales have shape {r.scales.shape}, expected ({r.num_layers}, {r.dim})")
        elif not (np.isfinite(r.scales).all() and (r.scales > 0).all()):
            probs.append("scales hold zero, negative or non-finite values: rebuild with --force")
    probs += [f"part {n} is missing (its shard never ran: run it with --shard)" for n in r.missing_parts]  # fmt: skip
    for p in r.parts:
        k, where = len(p.ids), f"part {p.name}"
        if not p.attrs.get("complete"):
            probs.append(f"{where} is not complete ({k} utterances committed): rerun the same `pipeline extract` command to finish it")  # fmt: skip
        if (p.L, p.D) != (r.num_layers, r.dim) or p.zarr.dtype != r.stored_dtype:
            probs.append(f"{where}: frames are {p.zarr.dtype} (.., {p.L}, {p.D}), fingerprint says {r.stored_dtype} (.., {r.num_layers}, {r.dim})")  # fmt: skip
        if k and (p.offsets[0] != 0 or np.any(p.offsets[1:] != np.cumsum(p.lengths)[:-1])):
            probs.append(f"{where}: offsets are not the running sum of lengths")
        if np.any(p.lengths <= 0):
            probs.append(f"{where}: {int(np.sum(p.lengths <= 0))} utterance(s) of length 0")
        if int(p.lengths.sum()) != p.F:
            probs.append(f"{where}: lengths sum to {int(p.lengths.sum())} frames, committed {p.F}")
        if p.dir is not None:
            gone = [c for c in range(p.nchunks) if not p.chunk_file(c).is_file()]
            if gone:
                probs.append(f"{where}: {len(gone)} frame chunk file(s) missing, e.g. {p.chunk_file(gone[0])}: rebuild with --force")  # fmt: skip
        if p.attrs.get("complete") and p.index_len != k:
            probs.append(f"{where}: index arrays hold {p.index_len} entries, {k} committed")
        if p.attrs.get("complete") and p.zarr.shape[0] != p.F:
            probs.append(f"{where}: frames array holds {p.zarr.shape[0]} frames, index says {p.F}")
    if r.parts and r.ids:
        pick = [r.ids[j] for j in np.linspace(0, len(r.ids) - 1, min(sample, len(r.ids))).astype(int)]  # fmt: skip
        for uid in pick:
            try:
                x = np.asarray(r[uid])
            except Exception as e:  # a missing or truncated chunk file
                probs.append(f"utterance {uid}: cannot read ({type(e).__name__}: {e})")
                continue
            if x.shape != (r.length(uid), r.num_layers, r.dim):
                probs.append(f"utterance {uid}: shape {x.shape}, index says ({r.length(uid)}, {r.num_layers}, {r.dim})")  # fmt: skip
            elif not np.isfinite(x).all():
                probs.append(f"utterance {uid}: NaN/inf values")
    if "://" not in path:
        probs += [f"lock {lk.name} present: a writer is running, or died (a rerun takes it over)" for lk in Path(path).glob("*.lock")]  # fmt: skip
    return probs


def store_info(path: str) -> dict:
    """Fingerprint, counts, audio hours, bytes (on disk, arrays, raw fp16), failures, read mode.

    `bytes_arrays`: the frames at the stored width plus the scales, without chunk padding,
    index or metadata (the fair size to compare encodings of one store).
    """
    from pipeline.store import open_store

    r = open_store(path)
    frames = r.total_frames
    on_disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if "://" not in path else None  # fmt: skip
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


@app.command("verify")
def verify(
    store: str = typer.Argument(..., help="The store (.zarr folder)."),
    sample: int = typer.Option(32, help="Utterances read back and checked for NaN/inf."),
) -> None:
    """Check a store: index consistency, lengths vs frames, fingerprint, every shard committed, no NaN in a sample."""
    console = Console()
    probs = verify_store(store, sample)
    if probs:
        for p in probs:
            console.print(f"[red]✗[/red] {p}", highlight=False)
        raise typer.Exit(1)
    console.print(
        f"[green]✓[/green] {store}: index, lengths, fingerprint and shards are consistent"
    )


@app.command("info")
def info(
    store: str = typer.Argument(..., help="The store (.zarr folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a store: fingerprint, utterances, hours, bytes, failures."""
    from pipeline.store import StoreError

    try:
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
