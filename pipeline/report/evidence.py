"""The paired comparisons behind results/findings.md, built from the table's cells.

`Evidence` indexes the layout's rows by (resolved upstreams, interface) and gives each cell's
Summary over seeds on the main split. Each builder below returns the comparisons of one claim
and, when rows it needs are absent, what is missing. Upstream families come from the upstream
registry (`UpstreamSpec.family`); a name the registry does not know has no family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.analysis.stats import (
    Contrast,
    Summary,
    contrast,
    difference,
    seeds_to_decide,
    variance_ratio,
)
from pipeline.report.cells import cell
from pipeline.report.layout import (
    ARROW,
    INTERFACE_LABEL,
    METRIC_LABEL,
    Layout,
    members_resolved,
    metric_of,
    set_label,
)
from pipeline.report.runs import RunResult
from pipeline.upstreams.registry import REGISTRY

ALPHA = 0.05
Models = tuple[str, ...]


@dataclass
class Comparison:
    """'a is better than b' on one column (a, b: Summaries shown; None for derived quantities)."""

    column: str
    a_label: str
    b_label: str
    a: Summary | None
    b: Summary | None
    difference: str  # in percentage points, "a - b", or a spread ratio
    p: float | None
    outcome: str  # holds | fails | undecided
    ci: tuple[float, float] | None = None  # 95 % CI of the difference (fractions), Welch's t
    seeds_needed: int | None = None  # seeds per cell that would decide it, from the spreads


def registry_family(name: str) -> str | None:
    spec = REGISTRY.get(name)
    return spec.family if spec is not None else None


class Evidence:
    """Cells of the layout by (upstreams, interface) and column, over seeds."""

    def __init__(
        self,
        layout: Layout,
        runs: dict[str, RunResult],
        family: Callable[[str], str | None] = registry_family,
    ) -> None:
        self.layout, self.runs, self.family = layout, runs, family
        self.index: dict[tuple[Models, str], int] = {}
        for i, r in enumerate(layout.rows):
            self.index.setdefault((tuple(members_resolved(r, runs)), r.interface), i)
        self.sets: list[Models] = list(dict.fromkeys(m for m, _ in self.index))

    def stat(self, models: Models, iface: str, col: str) -> Summary | None:
        i = self.index.get((models, iface))
        if i is None or col not in self.layout.rows[i].cells:
            return None
        return cell(self.layout, i, col, self.runs, self.layout.split).stat

    def direction(self, col: str) -> str:
        return metric_of(self.layout, col, self.runs)[1]

    def column_label(self, col: str) -> str:
        metric, direction = metric_of(self.layout, col, self.runs)
        name = self.layout.column_labels.get(col, col)
        return f"{name} {METRIC_LABEL.get(metric, metric)} {ARROW.get(direction, '')}"

    def name(self, models: Models, iface: str | None = None) -> str:
        s = set_label(self.layout, models)
        return f"{s} {INTERFACE_LABEL.get(iface, iface)}" if iface else s

    def families(self, models: Models) -> set[str] | None:
        fams = [self.family(m) for m in models]
        return None if any(f is None for f in fams) else set(fams)  # type: ignore[arg-type]

    def fusion_sets(self) -> list[Models]:
        return [s for s in self.sets if len(s) > 1]

    def best_single(self, models: Models, iface: str, col: str) -> tuple[str, Summary] | None:
        """(label, cell) of the best single-upstream row among `models` with `iface` (CHConv
        on one upstream is HConv, so CHConv falls back to the HConv rows)."""
        options = [iface] + (["hconv"] if iface == "chconv" else [])
        sign = -1.0 if self.direction(col) == "higher" else 1.0
        for opt in options:
            have = [
                (self.name((m,), opt), s)
                for m in models
                if (s := self.stat((m,), opt, col)) is not None
            ]
            if have:
                return min(have, key=lambda x: sign * x[1].mean)
        return None


def judge(c: Contrast, claimed_sign: float) -> str:
    if not c.significant(ALPHA):
        return "undecided"
    return "holds" if c.value * claimed_sign > 0 else "fails"


def compare(ev: Evidence, col: str, a: tuple[str, Summary], b: tuple[str, Summary]) -> Comparison:
    """'a beats b' on `col` by Welch's t-test of the two cells' seeds."""
    d = difference(a[1], b[1])
    claimed = 1.0 if ev.direction(col) == "higher" else -1.0
    return Comparison(ev.column_label(col), a[0], b[0], a[1], b[1], f"{100 * d.value:+.2f}", d.p,
                      judge(d, claimed), d.ci(), _needed(d, a[1], b[1]))  # fmt: skip


def _needed(c: Contrast, *cells: Summary) -> int | None:
    """Seeds per cell that would decide an undecided comparison (None once it is decided)."""
    if c.significant(ALPHA):
        return None
    return seeds_to_decide(c, min(s.n for s in cells), ALPHA)


Found = tuple[list[Comparison], list[str]]


def fusion_vs_single(ev: Evidence) -> dict[str, Found]:
    """F1, per interface: each fusion row against its best single-upstream row, per column."""
    out: dict[str, Found] = {}
    for s in ev.fusion_sets():
        for iface in INTERFACE_LABEL:
            if (s, iface) not in ev.index:
                continue
            comps, missing = out.setdefault(INTERFACE_LABEL[iface], ([], []))
            for col in ev.layout.columns:
                fused = ev.stat(s, iface, col)
                single = ev.best_single(s, iface, col)
                if fused is None:
                    continue
                if single is None:
                    missing.append(f"no single-model {INTERFACE_LABEL[iface]} row of {ev.name(s)}")
                    continue
                comps.append(compare(ev, col, (ev.name(s, iface), fused), single))
    return out


def single_vs_ws(ev: Evidence) -> dict[str, Found]:
    """F2: single-upstream HConv (and CHConv where such rows exist) against WS of the same upstream."""
    out: dict[str, Found] = {"HConv": ([], [])}
    for iface in ("hconv", "chconv"):
        for s in (s for s in ev.sets if len(s) == 1):
            if (s, iface) not in ev.index:
                continue
            comps, missing = out.setdefault(INTERFACE_LABEL[iface], ([], []))
            if (s, "ws") not in ev.index:
                missing.append(f"no single-model WS row of {ev.name(s)}")
                continue
            for col in ev.layout.columns:
                a, b = ev.stat(s, iface, col), ev.stat(s, "ws", col)
                if a is not None and b is not None:
                    comps.append(compare(ev, col, (ev.name(s, iface), a), (ev.name(s, "ws"), b)))
    if not out["HConv"][0] and not out["HConv"][1]:
        out["HConv"][1].append("no single-model row with both HConv and WS")
    return out


def spread_ws_vs_gumd(ev: Evidence) -> Found:
    """F3a: GumD's sd over seeds against WS's, same upstreams and column (one-sided F-tests)."""
    comps: list[Comparison] = []
    for s in ev.sets:
        if (s, "ws") not in ev.index or (s, "gumd") not in ev.index:
            continue
        for col in ev.layout.columns:
            w, g = ev.stat(s, "ws", col), ev.stat(s, "gumd", col)
            if w is None or g is None:
                continue
            more, less = variance_ratio(g, w), variance_ratio(w, g)
            outcome = ("holds" if more.p is not None and more.p < ALPHA
                       else "fails" if less.p is not None and less.p < ALPHA else "undecided")  # fmt: skip
            # p: the F-test that decides (GumD spreads more; or, when that fails, WS spreads more)
            sd = "sd " + " vs ".join("–" if x.sd is None else f"{100 * x.sd:.2f}" for x in (w, g))
            comps.append(Comparison(ev.column_label(col), ev.name(s, "ws"), ev.name(s, "gumd"),
                                    w, g, sd, less.p if outcome == "fails" else more.p, outcome))  # fmt: skip
    return comps, [] if comps else ["no upstream set with both a WS and a GumD row"]


def gumd_on_sv(ev: Evidence) -> Found:
    """F3b: on SV columns, every other interface of a set against its GumD row."""
    comps: list[Comparison] = []
    sv = [c for c in ev.layout.columns if ev.layout.column_task.get(c) == "sv"]
    for s in ev.sets:
        for col in sv:
            g = ev.stat(s, "gumd", col)
            for iface in (i for i in INTERFACE_LABEL if i != "gumd"):
                other = ev.stat(s, iface, col)
                if g is not None and other is not None:
                    comps.append(
                        compare(ev, col, (ev.name(s, iface), other), (ev.name(s, "gumd"), g))
                    )
    missing = [] if comps else ["an SV column and a set with GumD and another interface"]
    return comps, missing


def chconv_vs_hconv(ev: Evidence) -> tuple[Found, Found]:
    """F4: CHConv against HConv of the same fusion set, on ml_asr columns / heterogeneous sets."""
    ml_cols = [c for c in ev.layout.columns if ev.layout.column_task.get(c) == "ml_asr"]
    both = [s for s in ev.fusion_sets() if (s, "hconv") in ev.index and (s, "chconv") in ev.index]
    het = [s for s in both if (f := ev.families(s)) is not None and len(f) > 1]

    def pairs(sets: list[Models], cols: list[str]) -> list[Comparison]:
        out = []
        for s in sets:
            for col in cols:
                a, b = ev.stat(s, "chconv", col), ev.stat(s, "hconv", col)
                if a is not None and b is not None:
                    out.append(
                        compare(ev, col, (ev.name(s, "chconv"), a), (ev.name(s, "hconv"), b))
                    )
        return out

    ml = pairs(both, ml_cols)
    ml_missing = (
        [] if ml else ["a multilingual ASR column and a fusion set with HConv and CHConv rows"]
    )
    hc = pairs(het, ev.layout.columns)
    het_missing = (
        [] if hc else ["a fusion set of upstreams of different families with HConv and CHConv rows"]
    )
    return (ml, ml_missing), (hc, het_missing)


def _gain(ev: Evidence, s: Models, iface: str, col: str) -> list[tuple[float, Summary]] | None:
    """Contrast terms of 'fusion's improvement over its best single upstream' (positive = better)."""
    fused, single = ev.stat(s, iface, col), ev.best_single(s, iface, col)
    if fused is None or single is None:
        return None
    sign = 1.0 if ev.direction(col) == "lower" else -1.0
    return [(sign, single[1]), (-sign, fused)]


def family_gains(ev: Evidence) -> dict[str, Found]:
    """F5, per interface: gain of each heterogeneous fusion minus gain of each homogeneous one."""
    out: dict[str, Found] = {}
    known = [(s, f) for s in ev.fusion_sets() if (f := ev.families(s)) is not None]
    het = [s for s, f in known if len(f) > 1]
    hom = [s for s, f in known if len(f) == 1]
    for iface in INTERFACE_LABEL:
        h_rows = [s for s in het if (s, iface) in ev.index]
        m_rows = [s for s in hom if (s, iface) in ev.index]
        if not h_rows and not m_rows:
            continue
        comps: list[Comparison] = []
        for h in h_rows:
            for m in m_rows:
                for col in ev.layout.columns:
                    gh, gm = _gain(ev, h, iface, col), _gain(ev, m, iface, col)
                    if gh is None or gm is None:
                        continue
                    c = contrast(gh + [(-k, x) for k, x in gm])
                    a, b = contrast(gh), contrast(gm)
                    comps.append(Comparison(
                        ev.column_label(col), f"{ev.name(h, iface)}: gain {100 * a.value:+.2f}",
                        f"{ev.name(m, iface)}: gain {100 * b.value:+.2f}", None, None,
                        f"{100 * c.value:+.2f}", c.p, judge(c, 1.0), c.ci(),
                        _needed(c, *[x for _, x in gh + gm])))  # fmt: skip
        missing = []
        if not h_rows or not m_rows:
            missing.append(
                f"a heterogeneous and a homogeneous fusion row with {INTERFACE_LABEL[iface]}"
            )
        elif not comps:
            missing.append(f"single-model {INTERFACE_LABEL[iface]} rows of the fused upstreams")
        out[INTERFACE_LABEL[iface]] = (comps, missing)
    if not out:
        out["any interface"] = ([], ["fusion rows of different families and of one family"])
    return out
