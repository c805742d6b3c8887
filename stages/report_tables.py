"""The markdown of results/table.md (Table I/II layout) and results/languages.md (Table III layout).

Values are stored as fractions by the tasks and shown in %; the best value of each (table,
section) group per column is in bold; a cell whose runs are partly missing says how many it has.
"""

from __future__ import annotations

from pathlib import Path

from stages.plan import make_plan
from stages.report import (
    ARROW,
    INTERFACE_LABEL,
    METRIC_LABEL,
    Layout,
    RunResult,
    _members_resolved,
    _read_json,
    best_marks,
    cell,
    metric_of,
    set_label,
)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _header(layout: Layout, runs: dict[str, RunResult], found: int, expected: int) -> str:
    cfg, lines = layout.cfg, []
    data = cfg.get("data") or {}
    lines.append(
        f"Each number is the **{layout.split}-split** score of a task head trained on the cached "
        "hidden states of frozen speech foundation models (the upstreams), fused by the interface "
        "named in the row: WS = weighted sum of layers (SUPERB; with several upstreams, one per "
        "model, concatenated and projected), GumD = per-dimension Gumbel layer selection, HConv = "
        "hierarchical convolution over the layer axis (several upstreams aligned and added), "
        "CHConv = HConv over the concatenated upstreams. WER, CER and EER are in % (lower is "
        "better, ↓); accuracy is in % (higher is better, ↑). The best value of each section is in "
        "**bold**. A cell averaged over folds or languages is the mean of its runs."
    )
    if data.get("synth"):
        suite = Path((cfg.get("paths") or {}).get("data_root", "data")) / str(data.get("suite"))
        info = _read_json(suite / "suite.json", {})
        lines.append(
            f"\n**Data**: the built-in offline suite (`pipeline data synth --preset {data['synth']}`), "
            "speech synthesized with eSpeak NG: English sentences (asr_en), 8 languages (ml_asr), "
            "synthetic speakers (sv) and four prosody classes standing in for emotions (er). "
            "The numbers show the pipeline working end to end; they are not comparable to the paper's."
        )
        counts = _suite_counts(info)
        if counts:
            lines.append("Utterances (train/dev/test): " + "; ".join(counts) + ".")
    elif data.get("import"):
        lines.append(
            "\n**Data**: "
            + ", ".join(f"{v.get('corpus')} (`{v.get('root')}`)" for v in data["import"].values())
            + "."
        )
    ups = list(dict.fromkeys(m for r in layout.rows for m in _members_resolved(r, runs)))
    dims = _upstream_dims(cfg)
    if ups:
        desc = [f"{u} ({dims[u]})" if u in dims else u for u in ups]
        lines.append(
            "\n**Upstreams** (frozen; hidden states L × width D): " + ", ".join(desc) + "."
        )
    steps = _steps_by_column(layout, runs)
    if steps:
        lines.append(
            "**Training** (AdamW, best dev checkpoint tested): "
            + "; ".join(f"{c}: {s} steps" for c, s in steps.items())
            + "."
        )
    if found < expected:
        lines.append(
            f"\n*{expected - found} of {expected} planned runs have no {layout.split} result yet (–).*"
        )
    return "\n".join(lines)


def _suite_counts(info: dict) -> list[str]:
    """suite.json -> ["asr_en 120/30/30 (6.1 min of train audio)", ...]."""
    out = []
    for task, d in (info.get("tasks") or {}).items():
        try:
            n = "/".join(str(d[s]["utterances"]) for s in ("train", "dev", "test"))
            out.append(f"{task} {n} ({d['train']['seconds'] / 60:.1f} min of training audio)")
        except (KeyError, TypeError):
            continue
    return out


def _upstream_dims(cfg: dict) -> dict[str, str]:
    """upstream -> "L × D" from the extract stamps' fingerprints (no model code imported)."""
    out: dict[str, str] = {}
    if not cfg:
        return out
    for s in make_plan(cfg).stores.values():
        fp = _read_json(Path(s.stamp), {}).get("fingerprint") or {}
        if "num_layers" in fp and "dim" in fp:
            out.setdefault(s.upstream, f"{fp['num_layers']} × {fp['dim']}")
    return out


def _steps_by_column(layout: Layout, runs: dict[str, RunResult]) -> dict[str, int]:
    out = {}
    for col in layout.columns:
        for row in layout.rows:
            k = next((k for k in row.cells.get(col, []) if k in runs), None)
            if k and "steps" in (runs[k].config.get("train") or {}):
                out[layout.column_labels.get(col, col)] = runs[k].config["train"]["steps"]
                break
    return out


def table_markdown(layout: Layout, runs: dict[str, RunResult]) -> tuple[str, dict]:
    """The markdown of table.md and the flat metrics dict."""
    metrics: dict[str, dict[str, float]] = {}
    parts, found, expected = [], 0, 0
    tables = list(dict.fromkeys(r.table for r in layout.rows))
    for t in tables:
        rows = [r for r in layout.rows if r.table == t]
        cols = [c for c in layout.columns if any(c in r.cells for r in rows)]
        head = ["Model", "Interface"]
        grid: dict[str, list[str]] = {}
        for c in cols:
            metric, direction = metric_of(layout, c, runs)
            head.append(
                f"{layout.column_labels.get(c, c)} {METRIC_LABEL.get(metric, metric)} {ARROW.get(direction, '')}"
            )
            cells = [cell(r, c, runs, layout.split) if c in r.cells else None for r in rows]
            vals = [x.value if x else None for x in cells]
            marks = best_marks(rows, vals, direction)
            grid[c] = []
            for r, x, m in zip(rows, cells, marks, strict=True):
                if x is None:
                    grid[c].append("")
                    continue
                found, expected = found + x.found, expected + x.expected
                s = _pct(x.value)
                if x.value is not None and 0 < x.found < x.expected:
                    s += f" ({x.found}/{x.expected})"
                grid[c].append(f"**{s}**" if m else s)
                if x.value is not None:
                    rk = f"{'+'.join(_members_resolved(r, runs))}-{r.interface}" + (
                        f"-t{t}" if len(tables) > 1 else ""
                    )
                    metrics.setdefault(rk, {})[f"{c}_{metric}"] = round(100 * x.value, 4)
        lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(cols)]
        prev = (None, None)
        for i, r in enumerate(rows):
            if r.section != prev[0]:
                lines.append(f"| **{r.section}** |" + " |" * (len(cols) + 1))
            label = set_label(layout, r.members) if (r.section, tuple(r.members)) != prev else ""
            prev = (r.section, tuple(r.members))
            lines.append(
                f"| {label} | {INTERFACE_LABEL.get(r.interface, r.interface)} | "
                + " | ".join(grid[c][i] for c in cols)
                + " |"
            )
        parts.append((f"## Table {t}\n\n" if len(tables) > 1 else "") + "\n".join(lines))
    text = (
        f"# {layout.title}\n\n{_header(layout, runs, found, expected)}\n\n"
        + "\n\n".join(parts)
        + "\n"
    )
    return text, metrics


def languages_markdown(layout: Layout, runs: dict[str, RunResult]) -> str:
    """Per-language CER of every ml_asr column, rows like table.md (the paper's Table III)."""
    out = [f"# Per-language CER ({layout.split} split, %, lower is better)\n"]
    any_col = False
    for col in [c for c in layout.columns if layout.column_task.get(c) == "ml_asr"]:
        rows = [r for r in layout.rows if col in r.cells]
        per_row: list[dict[str, float]] = []
        langs: list[str] = []
        for r in rows:
            vals: dict[str, float] = {}
            for k in r.cells[col]:
                rec = runs[k].record(layout.split) if k in runs else None
                if rec is None:
                    continue
                if col in layout.expanded:  # one run per language (mono-1h): its own CER
                    vals[layout.group_of.get(k, k)] = float(rec["value"])
                else:
                    vals.update(
                        {str(a): float(b) for a, b in (rec.get("per_language") or {}).items()}
                    )
            per_row.append(vals)
            langs += [x for x in vals if x not in langs]
        if col in layout.expanded:  # the config's order of languages
            order = [layout.group_of.get(k, k) for r in rows for k in r.cells[col]]
            langs = [x for x in dict.fromkeys(order) if any(x in v for v in per_row)]
        else:
            langs.sort()
        if not langs:
            continue
        any_col = True
        columns = ["Avg."] + langs
        table = {
            c: [
                (sum(v.values()) / len(v) if v else None) if c == "Avg." else v.get(c)
                for v in per_row
            ]
            for c in columns
        }
        marks = {c: best_marks(rows, table[c], "lower") for c in columns}
        out.append(f"## {layout.column_labels.get(col, col)}\n")
        out.append("| Model | Interface | " + " | ".join(columns) + " |")
        out.append("|---|---|" + "---:|" * len(columns))
        prev = (None, None)
        for i, r in enumerate(rows):
            if r.section != prev[0]:
                out.append(f"| **{r.section}** |" + " |" * (len(columns) + 1))
            label = set_label(layout, r.members) if (r.section, tuple(r.members)) != prev else ""
            prev = (r.section, tuple(r.members))
            cells = [
                f"**{_pct(table[c][i])}**" if marks[c][i] else _pct(table[c][i]) for c in columns
            ]
            out.append(
                f"| {label} | {INTERFACE_LABEL.get(r.interface, r.interface)} | "
                + " | ".join(cells)
                + " |"
            )
        out.append("")
    if not any_col:
        out.append("No ml_asr runs with per-language results.")
    return "\n".join(out) + "\n"
