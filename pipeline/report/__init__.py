"""The report: collect run directories into results/: the comparison table, the findings check,
per-language CERs, metrics, curves, figures and the page that shows them.

    write_report("runs", "results", config="params.yaml")

Writes `table.md` (rows grouped like the paper's Table I: sections of upstream sets × interfaces,
one column per task and scored split, mean ± sd over seeds; pipeline/report/tables.py),
`findings.md` (the paper's findings tested on these runs; pipeline/report/findings.py),
`languages.md` (ml_asr CER per language, the paper's Table III layout), `metrics.json` (flat,
for `dvc metrics show`: per row the mean, sd and per-seed values), `curves/<column>.csv` (for
`dvc plots show`), `figures/*.png` (training curves, what each interface learned) and
`report.md` (one page: every figure with a caption, and the layer analysis of results/analysis/
that dvc.yaml's analyze stage writes; pipeline/report/page.py).

With a config (params.yaml or configs/*.yaml) the rows, their order and the labels come from
its plan (pipeline/plan/) and each cell holds the run directories whose config matches it, over
seeds, folds and mono-1h languages. Without one, rows are inferred from each run's config.yaml.

The package's modules import one way: this one (`write_report`) imports the others; they share
the types of runs.py (a run directory) and layout.py (rows, columns, labels) and never import
the package itself. What callers use is exported here: `write_report`, `build_layout`,
`load_runs`, `Layout`, `RunResult`.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.plan import load_experiment
from pipeline.report.curves import write_curve_figures, write_curves
from pipeline.report.figures import write_figures
from pipeline.report.findings import findings_markdown
from pipeline.report.languages import languages_markdown
from pipeline.report.layout import Layout, layout_from_config, layout_from_runs
from pipeline.report.page import page_markdown
from pipeline.report.runs import RunResult, load_runs
from pipeline.report.tables import table_markdown

__all__ = ["Layout", "RunResult", "build_layout", "load_runs", "write_report"]


def build_layout(runs: dict[str, RunResult], config: str | Path | None = None) -> Layout:
    """The layout of the config's plan, or one inferred from the runs without a config."""
    return (
        layout_from_config(load_experiment(config).to_dict(), runs)
        if config
        else layout_from_runs(runs)
    )


def write_report(
    runs_dir: str | Path,
    out_dir: str | Path,
    config: str | Path | None = None,
    importance: bool = True,
) -> dict[str, Path]:
    """Write everything under `out_dir`; returns {name: path}. `importance` False skips the
    HConv ablation (loading checkpoints and stores) and uses the cheap weight-norm fallback."""
    runs = load_runs(runs_dir)
    layout = build_layout(runs, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, metrics = table_markdown(layout, runs)
    paths = {
        "table": out / "table.md",
        "findings": out / "findings.md",
        "languages": out / "languages.md",
        "metrics": out / "metrics.json",
    }
    paths["table"].write_text(table, encoding="utf-8")
    paths["findings"].write_text(findings_markdown(layout, runs), encoding="utf-8")
    paths["languages"].write_text(languages_markdown(layout, runs), encoding="utf-8")
    paths["metrics"].write_text(
        json.dumps(metrics, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    write_curves(layout, runs, out / "curves")
    paths.update(write_curve_figures(layout, runs, out / "figures"))
    paths.update(write_figures(layout, runs, out / "figures", importance=importance))
    paths["report"] = out / "report.md"  # every figure with its caption, and the layer analysis
    paths["report"].write_text(page_markdown(layout, paths, out), encoding="utf-8")
    return paths
