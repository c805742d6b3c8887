"""results/languages.md: the CER of every ml_asr column per language (the paper's Table III
layout), mean ± sd over seeds, with the table's bold rule; under each column's heading, where
its data come from (real recorded or synthesized speech) and the languages' names."""

from __future__ import annotations

from pipeline.analysis.stats import Summary, summarize
from pipeline.report.cells import best_marks, fmt, seeds_in
from pipeline.report.layout import INTERFACE_LABEL, Layout, set_label
from pipeline.report.runs import RunResult

# ISO 639-3 code -> English name, for the legend under each table (the cells keep the codes)
LANGUAGE_NAMES = {
    "eng": "English", "spa": "Spanish", "fra": "French", "ita": "Italian", "rus": "Russian",
    "deu": "German", "por": "Portuguese", "nld": "Dutch", "pol": "Polish", "cmn": "Mandarin",
    "jpn": "Japanese", "swa": "Swahili", "swe": "Swedish", "xty": "Yoloxóchitl Mixtec",
    "hin": "Hindi", "tur": "Turkish", "vie": "Vietnamese", "ara": "Arabic", "kor": "Korean",
}  # fmt: skip
# What the data of a column read from an imported corpus is (data.import.<name>.corpus)
CORPUS_NOTES = {
    "asterisk": "**real recorded speech**: the Asterisk PBX's telephone prompts (Debian "
    "asterisk-core-sounds-<lang>), 8 kHz telephone band, one professional speaker per "
    "language, split by prompt (docs/DATA_ASTERISK.md)",
    "mlsuperb": "ML-SUPERB 1-hour sets (read speech of many speakers and sources)",
}


def language_name(code: str) -> str:
    """`spa` -> `Spanish`; an unknown code stays itself."""
    return LANGUAGE_NAMES.get(code, code)


def column_data_note(cfg: dict, col: str) -> str:
    """One sentence on where a column's utterances come from: an imported corpus (with what
    it is, when known) or the built-in suite's synthesized speech; "" without a config."""
    tasks, data = cfg.get("tasks") or {}, cfg.get("data") or {}
    spec = tasks.get(col) or {}
    if not spec:
        return ""
    dataset = str(spec.get("data") or spec.get("task") or col)
    corpora = {str(v.get("corpus")): v for v in (data.get("import") or {}).values()}
    corpus = dataset.split("/")[0]
    if corpus in corpora:
        note = CORPUS_NOTES.get(corpus, f"the imported corpus `{corpus}`")
        return f"Data: {note}; audio from `{corpora[corpus].get('root')}`."
    if data.get("synth"):
        return (
            "Data: synthesized speech of the built-in suite (eSpeak NG and Flite voices), "
            "not recorded speech."
        )
    return ""


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
        note = column_data_note(layout.cfg, col)
        named = [f"{x} = {language_name(x)}" for x in langs if language_name(x) != x]
        if named:
            note = (note + " " if note else "") + "Languages: " + ", ".join(named) + "."
        if note:
            out.append(note + "\n")
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
