"""results/languages.md: the CER of every ml_asr column per language (the paper's Table III
layout), mean ± sd over seeds, with the table's bold rule."""

from __future__ import annotations

from pipeline.analysis.stats import Summary, summarize
from pipeline.report.cells import best_marks, fmt, seeds_in
from pipeline.report.layout import INTERFACE_LABEL, Layout, set_label
from pipeline.report.runs import RunResult


def _row_languages(layout: Layout, keys: list[str], col: str, runs: dict[str, RunResult]) -> dict:
    """{language: {seed: [CER, ...]}} of one row's runs in an ml_asr column."""
    out: dict[str, dict[int, list[float]]] = {}
    for k in keys:
        rec = runs[k].record(layout.split) if k in runs else None
        if rec is None:
            continue
        if col in layout.expanded:  # one run per language (mono-1h): its own CER
            vals = {layout.group_of.get(k, k): float(rec["value"])}
        else:
            vals = {str(a): float(b) for a, b in (rec.get("per_language") or {}).items()}
        for lang, v in vals.items():
            out.setdefault(lang, {}).setdefault(runs[k].seed, []).append(v)
    return out


def _summaries(per_lang: dict, langs: list[str]) -> dict[str, Summary | None]:
    """Per language and 'Avg.' (per seed: the mean over the row's languages), over seeds."""
    out: dict[str, Summary | None] = {}
    by_seed_avg: dict[int, list[float]] = {}
    for lang in langs:
        seeds = {s: sum(v) / len(v) for s, v in per_lang.get(lang, {}).items()}
        out[lang] = summarize(list(seeds.values())) if seeds else None
        for s, v in seeds.items():
            by_seed_avg.setdefault(s, []).append(v)
    avg = [sum(v) / len(v) for v in by_seed_avg.values()]
    out["Avg."] = summarize(avg) if avg else None
    return out


def languages_markdown(layout: Layout, runs: dict[str, RunResult]) -> str:
    """Per-language CER of every ml_asr column, rows like table.md (the paper's Table III)."""
    n = len(seeds_in(layout, runs)) or 1
    spread = f"mean ± sd over {n} seeds" if n > 1 else "one seed"
    out = [f"# Per-language CER ({layout.split} split, %, lower is better; {spread})\n"]
    any_col = False
    for col in [c for c in layout.columns if layout.column_task.get(c) == "ml_asr"]:
        rows = [r for r in layout.rows if col in r.cells]
        per_row = [_row_languages(layout, r.cells[col], col, runs) for r in rows]
        langs: list[str] = []
        for p in per_row:
            langs += [x for x in p if x not in langs]
        if col in layout.expanded:  # the config's order of languages
            order = [layout.group_of.get(k, k) for r in rows for k in r.cells[col]]
            langs = [x for x in dict.fromkeys(order) if any(x in p for p in per_row)]
        else:
            langs.sort()
        if not langs:
            continue
        any_col = True
        columns = ["Avg.", *langs]
        table = [_summaries(p, langs) for p in per_row]
        marks = {c: best_marks(rows, [t[c] for t in table], "lower") for c in columns}
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
                f"**{fmt(table[i][c], n)}**" if marks[c][i] else fmt(table[i][c], n)
                for c in columns
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
