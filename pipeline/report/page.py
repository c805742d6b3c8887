"""results/report.md: the one page that lists what the report wrote, every figure with a caption
(what it measures, on which split, how to read it), and the layer analysis of
results/analysis/ (pipeline/report/analysis.py).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.report.analysis import analysis_markdown
from pipeline.report.layout import Layout

FIGURES = "figures"  # under the report's folder
# name (as write_report returns it) -> caption; figures appear in this order when written
CAPTIONS = {
    "curves_dev": "**Dev curves.** The dev metric (%) of every run against the training step, "
    "a panel per task column, a colour per table row (its seeds drawn alike). Curves still "
    "falling at the last step mean the runs are undertrained.",
    "curves_train_loss": "**Train loss.** The mean training loss since the previous evaluation, "
    "per run, against the step. A train loss far below a flat dev curve means overfitting.",
    "ws_layer_weights": "**What the weighted sum (WS) learned.** The softmax weight of each "
    "hidden state (0 = the first), a bar colour per upstream, a panel per row and task column "
    "(mean over the cell's runs). Weights near 1/L mean no preference; a peak shows the layers "
    "the task draws on.",
    "gumd_layer_selection": "**What GumD selected.** For each hidden state, the share of the "
    "interface's output dimensions that select it at the end of training (mean over the cell's "
    "runs). Compare with the WS weights: GumD picks a layer per dimension instead of mixing.",
    "hconv_state_importance": "**What HConv / CHConv use.** For each input hidden state, the "
    "relative change of the interface output when that state is zeroed (best checkpoint of the "
    "cell's first seed, dev utterances from the cache). 0 = ignored; taller bars = states the "
    "learned convolutions rely on.",
    "hconv_tap_norms": "**HConv / CHConv first-layer weights.** A weight-only proxy (used when "
    "no checkpoint or store was at hand): the first convolution's weight norm per input state "
    "divided by the square root of the kernel taps that read it.",
}


def _figure_lines(name: str, path: Path, out: Path) -> list[str]:
    rel = path.relative_to(out).as_posix() if path.is_relative_to(out) else path.as_posix()
    caption = CAPTIONS.get(name, f"**{name}.**")
    return [f"![{name}]({rel})", "", caption, ""]


def page_markdown(layout: Layout, paths: dict[str, Path], out_dir: str | Path) -> str:
    """The text of report.md for the files `paths` (name -> path) written under `out_dir`."""
    out = Path(out_dir)
    lines = [f"# {layout.title}", ""]
    docs = [("table", "the comparison table (mean ± sd over seeds)"),
            ("findings", "the paper's findings F1-F5, each tested on these runs"),
            ("languages", "per-language CER of the multilingual ASR column"),
            ("metrics", "every cell's per-seed values, for `dvc metrics show`")]  # fmt: skip
    for name, what in docs:
        if name in paths:
            lines.append(f"- [{paths[name].name}]({paths[name].name}): {what}")
    lines += ["", "## Figures", ""]
    shown = [n for n in CAPTIONS if n in paths] + sorted(
        n for n, p in paths.items() if n not in CAPTIONS and p.suffix == ".png"
    )
    for name in shown:
        lines += _figure_lines(name, paths[name], out)
    if not shown:
        lines += ["No figure: no run directory had the data for one.", ""]
    lines.append(analysis_markdown(out, layout.names, layout.column_labels))
    return "\n".join(lines).rstrip() + "\n"
