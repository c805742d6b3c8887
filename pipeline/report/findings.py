"""results/findings.md: the paper's findings (F1-F5) tested one by one on this experiment's runs.

Every finding is a set of paired comparisons of table cells (each cell: its per-seed values on
the main test split). A comparison *holds* when Welch's t-test over seeds puts the difference
in the claimed direction at p < ALPHA, *fails* when it is significant the other way, and is
*undecided* otherwise (or with one seed, where no spread is known). A finding (or each of its
part) is **reproduced** when none of its comparisons fails and at least half hold,
**contradicted** when none holds and at least half fail, and **inconclusive** otherwise; a part
whose rows are absent is not tested, and a finding with no tested part is inconclusive. Spread comparisons (F3) use the one-sided F-test of two
variances. The comparisons live in pipeline/report/evidence.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.analysis.stats import Summary
from pipeline.report.cells import seeds_in
from pipeline.report.evidence import (
    ALPHA,
    Comparison,
    Evidence,
    chconv_vs_hconv,
    family_gains,
    fusion_vs_single,
    gumd_on_sv,
    single_vs_ws,
    spread_ws_vs_gumd,
)
from pipeline.report.layout import Layout
from pipeline.report.runs import RunResult


@dataclass
class Part:
    """One testable claim and its comparisons."""

    claim: str
    comparisons: list[Comparison]
    missing: list[str] = field(default_factory=list)  # what rows it would need

    @property
    def verdict(self) -> str:
        n = len(self.comparisons)
        holds = sum(c.outcome == "holds" for c in self.comparisons)
        fails = sum(c.outcome == "fails" for c in self.comparisons)
        if n and not fails and 2 * holds >= n:
            return "reproduced"
        if n and not holds and 2 * fails >= n:
            return "contradicted"
        return "inconclusive"

    def counts(self) -> str:
        if not self.comparisons:
            return "no comparison possible: " + (
                "; ".join(dict.fromkeys(self.missing)) or "the rows are absent"
            )
        holds = sum(c.outcome == "holds" for c in self.comparisons)
        fails = sum(c.outcome == "fails" for c in self.comparisons)
        rest = len(self.comparisons) - holds - fails
        return f"{holds} of {len(self.comparisons)} comparisons hold, {fails} go against it, {rest} undecided"


def overall(parts: list[Part]) -> str:
    """Over the parts that could be tested (rows present): reproduced when every one is;
    contradicted when one is and none is reproduced; inconclusive otherwise or when none could."""
    verdicts = [p.verdict for p in parts if p.comparisons]
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if "contradicted" in verdicts and "reproduced" not in verdicts:
        return "contradicted"
    return "inconclusive"


def _overall_text(parts: list[Part]) -> str:
    tested = sum(1 for p in parts if p.comparisons)
    note = f" ({tested} of {len(parts)} parts tested)" if tested < len(parts) else ""
    return f"**{overall(parts)}**{note}"


def _pct(s: Summary) -> str:
    return f"{100 * s.mean:.2f}" + (f" ± {100 * s.sd:.2f}" if s.sd is not None else "")


def _table(part: Part) -> list[str]:
    if not part.comparisons:
        return []
    out = [
        "| Column | Claimed better | Compared with | Difference | 95 % CI | p | Outcome | Seeds to decide |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]
    for c in part.comparisons:
        p = "–" if c.p is None else (f"{c.p:.3f}" if c.p >= 0.001 else "<0.001")
        a = f"{c.a_label}: {_pct(c.a)}" if c.a is not None else c.a_label
        b = f"{c.b_label}: {_pct(c.b)}" if c.b is not None else c.b_label
        ci = "–" if c.ci is None else f"[{100 * c.ci[0]:+.2f}, {100 * c.ci[1]:+.2f}]"
        need = "–" if c.seeds_needed is None else str(c.seeds_needed)
        out.append(
            f"| {c.column} | {a} | {b} | {c.difference} | {ci} | {p} | {c.outcome} | {need} |"
        )
    return out


def build_findings(layout: Layout, runs: dict[str, RunResult]) -> list[tuple[str, str, list[Part]]]:
    """[(id, statement, parts)] for F1-F5."""
    ev = Evidence(layout, runs)
    f1 = [Part(f"{name}: the fusion beats its best single model", comps, miss)
          for name, (comps, miss) in fusion_vs_single(ev).items()]  # fmt: skip
    f2 = [Part(f"{name} beats WS on a single model", comps, miss)
          for name, (comps, miss) in single_vs_ws(ev).items()]  # fmt: skip
    f3 = [
        Part(
            "WS is more stable over seeds than GumD (GumD's sd is larger)", *spread_ws_vs_gumd(ev)
        ),
        Part("GumD is worse than the other interfaces on SV", *gumd_on_sv(ev)),
    ]
    ml, het = chconv_vs_hconv(ev)
    f4 = [
        Part("CHConv beats HConv on multilingual ASR (fusion rows)", *ml),
        Part("CHConv beats HConv in heterogeneous fusion (upstreams of different families)", *het),
    ]
    f5 = [Part(f"{name}: fusing different families gains more over the best single model than "
               "fusing two of one family", comps, miss)
          for name, (comps, miss) in family_gains(ev).items()]  # fmt: skip
    return [
        ("F1", "A fusion of upstreams beats its best single upstream, for each interface.", f1),
        ("F2", "HConv (and CHConv) beat the weighted sum (WS) on single models.", f2),
        (
            "F3",
            "WS is more stable than GumD across seeds, and GumD is worse on speaker "
            "verification (SV).",
            f3,
        ),  # fmt: skip
        (
            "F4",
            "CHConv beats HConv on the harder tasks: multilingual ASR and heterogeneous fusion.",
            f4,
        ),
        (
            "F5",
            "Fusing upstreams of different families gains more than fusing two of one family.",
            f5,
        ),
    ]


def findings_markdown(layout: Layout, runs: dict[str, RunResult]) -> str:
    """The text of findings.md."""
    seeds = seeds_in(layout, runs)
    found = build_findings(layout, runs)
    lines = [
        f"# Findings check: {layout.title}",
        "",
        "The paper this pipeline reproduces compares *interfaces* that fuse the hidden layers of "
        "frozen speech foundation models (upstreams) before a small task head: WS (weighted sum "
        "of layers), GumD (Gumbel layer selection per dimension), HConv (a convolution over the "
        "layer axis, several upstreams aligned and added) and CHConv (HConv over concatenated "
        "upstreams). It reports five findings. Below, each is tested on this experiment's runs "
        f"(the `{layout.split}` split of `table.md`; WER, CER, EER in %, lower is better; "
        "accuracy in %, higher is better).",
        "",
        f"**Seeds**: {len(seeds)} ({', '.join(map(str, seeds)) or 'none'}). "
        + (
            "With one seed there is no spread, so no comparison can be decided: every finding "
            "below is inconclusive by construction; set `seeds: [0, 1, 2]` in the experiment."
            if len(seeds) < 2
            else "Each value is mean ± sd over the seeds."
        ),
        "",
        f"**Rule**: a comparison *holds* when Welch's t-test over seeds puts the difference in "
        f"the claimed direction at p < {ALPHA} (two-sided), *fails* when it is significant the "
        "other way, and is *undecided* otherwise. A claim is **reproduced** when none of its "
        "comparisons fails and at least half hold, **contradicted** when none holds and at least "
        "half fail, **inconclusive** otherwise; a part whose rows are absent is not tested, and "
        "a finding is reproduced when every tested part is (contradicted when a tested part is "
        "and none is reproduced). Spreads (F3) "
        f"are compared with a one-sided F-test at p < {ALPHA}. Differences are 'claimed better "
        "minus compared with' in percentage points, so negative means better in ↓ columns and "
        "positive in ↑ columns (for F5: the first gain minus the second, positive = the claim). "
        "With 3 seeds only large, consistent differences can be decided. The 95 % CI is "
        "Welch's interval of the difference. *Seeds to decide*, for an undecided comparison: "
        "how many seeds per cell would make a difference of the measured size significant "
        "with 80 % power if the measured spreads stay (normal approximation; '–' once decided "
        "or without a spread).",
        "",
        "| Finding | Verdict |",
        "|---|---|",
    ]
    lines += [f"| {fid}: {text} | {_overall_text(parts)} |" for fid, text, parts in found]
    for fid, text, parts in found:
        lines += ["", f"## {fid}. {text}", "", f"Verdict: {_overall_text(parts)}.", ""]
        for p in parts:
            lines += [f"- *{p.claim}*: **{p.verdict}** ({p.counts()})."]
        for p in parts:
            t = _table(p)
            if t:
                lines += ["", f"{p.claim}:", "", *t]
    return "\n".join(lines) + "\n"
