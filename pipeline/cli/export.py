"""`pipeline cache export STORE OUT.h5 [--layers SPEC]`: a feature store as an HDF5 file.

Registered in pipeline/cli/cache.py as `app.command("export")(export_cmd)`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from pipeline.layers import LayerSpecError
from pipeline.store import StoreError
from pipeline.store.h5_export import export_h5


def export_cmd(
    store: str = typer.Argument(..., help="The store (.zarr folder)."),
    out: Path = typer.Argument(..., help="The HDF5 file to write, e.g. features/wavlm.h5."),
    layers: str = typer.Option(
        None,
        "--layers",
        help="Upstream states to keep, as `pipeline extract --layers` (e.g. 0-12:4); default every stored state.",
    ),
    dtype: str = typer.Option(
        "float16", "--dtype", help="float16 | float32 (8-bit stores are decoded to it)."
    ),
    compression: str = typer.Option(
        "none", "--compression", help="none | gzip | lzf, per utterance dataset."
    ),
    partial: bool = typer.Option(
        False, "--partial", help="Export the committed utterances of an unfinished store."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Write a store as HDF5: one (T, L, D) dataset per utterance, the fingerprint as attributes (docs/HDF5.md)."""
    err = Console(stderr=True)
    try:
        s = export_h5(store, out, layers, dtype, compression, partial, force, progress)
    except (StoreError, LayerSpecError, ValueError) as e:
        err.print(f"[red]{e}[/red]", highlight=False)
        raise typer.Exit(1) from None
    err.print(
        f"[green]✓[/green] {s['out']}: {s['utterances']} utterances, {s['frames']} frames, "
        f"states {s['layers']}, {s['dtype']}, {s['bytes'] / 1e6:.1f} MB in {s['seconds']:.1f} s",
        highlight=False,
    )
