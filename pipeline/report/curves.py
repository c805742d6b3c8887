"""Training curves from each run's log.jsonl: CSVs for `dvc plots show` and PNGs that need no
browser or network.

    results/curves/<column>.csv          step, run, dev (dev metric, %), train_loss
    results/figures/curves_dev.png       dev metric (%) against step; a panel per task column
    results/figures/curves_train_loss.png  mean train loss since the previous evaluation

One line per run: the runs of one table row share a colour (its seeds drawn alike), the panels
are laid out two across, sized for a 1,200-pixel-wide page.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pipeline.report.layout import METRIC_LABEL, Layout, metric_of, row_label  # noqa: E402
from pipeline.report.runs import RunResult  # noqa: E402

PAGE_PX, DPI = 1200, 100  # a figure is PAGE_PX pixels wide at DPI


def _palette(n: int) -> list:
    """n distinct colours: tab10, or tab20 beyond ten rows."""
    return list(plt.get_cmap("tab10" if n <= 10 else "tab20").colors)


def dev_value(line: dict) -> float | None:
    """The dev metric of a log line (`dev_<metric>`, or `dev`), as a fraction."""
    v = next((v for n, v in line.items() if n.startswith("dev_")), line.get("dev"))
    return None if v is None else float(v)


def _run_label(layout: Layout, row, key: str, runs: dict[str, RunResult], seeds: bool) -> str:
    label = row_label(layout, row)
    if key in layout.group_of:
        label += f" · {layout.group_of[key]}"
    return label + (f" · s{runs[key].seed}" if seeds else "")


def _several_seeds(layout: Layout, runs: dict[str, RunResult]) -> bool:
    keys = {k for r in layout.rows for ks in r.cells.values() for k in ks if k in runs}
    return len({runs[k].seed for k in keys}) > 1


def write_curves(layout: Layout, runs: dict[str, RunResult], out_dir: Path) -> list[Path]:
    """One CSV per task column, long format: step, run (row label), dev (the dev metric in %),
    train_loss. dvc.yaml plots each file with .dvc/plots/runs.json (one line per run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.csv"):
        old.unlink()
    seeds = _several_seeds(layout, runs)
    written = []
    for col in layout.columns:
        lines = []
        for row in layout.rows:
            for k in row.cells.get(col, []):
                if k not in runs or not runs[k].log:
                    continue
                label = _run_label(layout, row, k, runs, seeds)
                for line in runs[k].log:
                    dev = dev_value(line)
                    dev = None if dev is None else round(100 * dev, 4)
                    lines.append([line.get("step"), label, dev, line.get("train_loss")])
        if lines:
            path = out_dir / f"{col}.csv"
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["step", "run", "dev", "train_loss"])
                w.writerows(lines)
            written.append(path)
    return written


def _panel_grid(n: int, height: float = 3.6):
    """n panels two across, PAGE_PX wide at DPI; returns (fig, axes list)."""
    ncols = 1 if n == 1 else 2
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(PAGE_PX / DPI, height * nrows + 1.4), squeeze=False
    )
    flat = [ax for r in axes for ax in r]
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def plot_curves(
    layout: Layout, runs: dict[str, RunResult], quantity: str, path: Path
) -> Path | None:
    """`quantity` "dev" (the dev metric, %) or "train_loss" against step; None without logs."""
    cols = [
        c for c in layout.columns
        if any(runs[k].log for r in layout.rows for k in r.cells.get(c, []) if k in runs)
    ]  # fmt: skip
    if not cols:
        path.unlink(missing_ok=True)
        return None
    fig, axes = _panel_grid(len(cols))
    colour: dict[str, tuple] = {}
    palette = _palette(len(layout.rows))
    for ax, col in zip(axes, cols, strict=True):
        for row in layout.rows:
            for k in row.cells.get(col, []):
                if k not in runs or not runs[k].log:
                    continue
                label = row_label(layout, row)
                c = colour.setdefault(label, palette[len(colour) % len(palette)])
                pts = [
                    (ln["step"], 100 * v if quantity == "dev" else v)
                    for ln in runs[k].log
                    if "step" in ln
                    and (v := dev_value(ln) if quantity == "dev" else ln.get("train_loss"))
                    is not None
                ]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, color=c, lw=1.2, alpha=0.8, marker=".", ms=4)
        metric, direction = metric_of(layout, col, runs)
        arrow = "lower is better" if direction == "lower" else "higher is better"
        name = layout.column_labels.get(col, col)
        ax.set_title(
            f"{name}: dev {METRIC_LABEL.get(metric, metric)} (%, {arrow})"
            if quantity == "dev"
            else f"{name}: train loss",
            fontsize=10,
        )
        ax.set_xlabel("training step", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if quantity == "train_loss":
            ax.set_yscale("log")
    handles = [plt.Line2D([], [], color=c, lw=2) for c in colour.values()]
    fig.legend(handles, list(colour), loc="lower center", ncol=min(4, len(colour)), fontsize=8,
               frameon=False)  # fmt: skip
    what = "dev metric" if quantity == "dev" else "mean train loss between evaluations"
    fig.suptitle(
        f"Training curves: {what} against step (one line per run; a row's seeds share a colour)",
        fontsize=11,
    )
    legend_rows = (len(colour) + 3) // 4
    fig.tight_layout(rect=(0, 0.03 + 0.22 * legend_rows / fig.get_figheight(), 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def write_curve_figures(
    layout: Layout, runs: dict[str, RunResult], out_dir: Path
) -> dict[str, Path]:
    """curves_dev.png and curves_train_loss.png under `out_dir` (those with data)."""
    out = {}
    for q in ("dev", "train_loss"):
        p = plot_curves(layout, runs, q, out_dir / f"curves_{q}.png")
        if p is not None:
            out[f"curves_{q}"] = p
    return out
