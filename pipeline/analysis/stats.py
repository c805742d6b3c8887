"""Small-sample statistics for comparing runs over seeds: mean ± sd, Welch contrasts, F-tests.

    s = summarize([0.31, 0.29, 0.33])            # Summary(mean=0.31, sd=0.02, n=3)
    c = contrast([(1, a), (-1, b)])               # a - b with its Welch standard error and df
    c.p                                           # two-sided p-value (None with fewer than 2 seeds)

A contrast is a signed sum of independent means (a difference of two cells, or a difference of
two gains: (fusion - single) - (fusion' - single')). Its standard error is sqrt(sum s_i^2/n_i)
and its degrees of freedom the Welch-Satterthwaite value; the p-value is Student's t, two-sided.
`variance_ratio` is the F-test of two spreads (one-sided: is the first spread larger).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _st


@dataclass(frozen=True)
class Summary:
    """Values of one quantity over seeds: mean, sample sd (ddof 1; None for n < 2), n."""

    mean: float
    sd: float | None
    n: int
    values: tuple[float, ...] = ()


def summarize(values: Sequence[float]) -> Summary:
    """Summary of the (non-empty) per-seed values."""
    if not values:
        raise ValueError("summarize: no values (a table cell without any finished run)")
    v = tuple(float(x) for x in values)
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None
    return Summary(m, sd, len(v), v)


@dataclass(frozen=True)
class Contrast:
    """A signed sum of means with its Welch standard error, df and two-sided p-value."""

    value: float
    se: float | None  # None when any term has fewer than 2 seeds
    df: float | None
    p: float | None

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p is not None and self.p < alpha

    def ci(self, level: float = 0.95) -> tuple[float, float] | None:
        """The two-sided `level` confidence interval of the value (Welch's t), or None."""
        if self.se is None or self.df is None:
            return None
        if self.se == 0.0:
            return (self.value, self.value)
        half = float(_st.t.ppf(0.5 + level / 2, self.df)) * self.se
        return (self.value - half, self.value + half)


def seeds_to_decide(c: Contrast, n: int, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Seeds per cell that would make a difference of this size significant at `alpha` with
    probability `power`, if the measured spreads stay (normal approximation, each term's
    variance scaled from its `n` seeds): n · ((z_{1-α/2} + z_power) · se / value)². None when
    it cannot be computed (no spread, or a zero difference)."""
    if c.se is None or c.value == 0.0:
        return None
    if c.se == 0.0:
        return 2
    z = float(_st.norm.ppf(1 - alpha / 2) + _st.norm.ppf(power))
    return max(2, math.ceil(n * (z * c.se / c.value) ** 2))


def contrast(terms: Sequence[tuple[float, Summary]]) -> Contrast:
    """sum_i c_i * mean_i, with se^2 = sum c_i^2 s_i^2 / n_i and the Welch-Satterthwaite df."""
    value = sum(c * s.mean for c, s in terms)
    if any(s.sd is None for _, s in terms):
        return Contrast(value, None, None, None)
    parts = [(c * c * s.sd**2 / s.n, s.n) for c, s in terms]  # type: ignore[operator]
    var = sum(v for v, _ in parts)
    if var == 0.0:  # every seed gave the same value: any difference is exact
        return Contrast(value, 0.0, float("inf"), 1.0 if value == 0 else 0.0)
    df = var**2 / sum(v * v / (n - 1) for v, n in parts if v > 0)
    t = value / math.sqrt(var)
    return Contrast(value, math.sqrt(var), df, float(2 * _st.t.sf(abs(t), df)))


def difference(a: Summary, b: Summary) -> Contrast:
    """a - b (Welch's t-test of two means)."""
    return contrast([(1.0, a), (-1.0, b)])


@dataclass(frozen=True)
class VarianceRatio:
    """sd_a^2 / sd_b^2 with the one-sided F-test p-value of 'a spreads more than b'."""

    ratio: float | None
    p: float | None


def variance_ratio(a: Summary, b: Summary) -> VarianceRatio:
    if a.sd is None or b.sd is None:
        return VarianceRatio(None, None)
    if b.sd == 0.0:
        return VarianceRatio(math.inf if a.sd > 0 else 1.0, 0.0 if a.sd > 0 else 1.0)
    r = a.sd**2 / b.sd**2
    return VarianceRatio(r, float(_st.f.sf(r, a.n - 1, b.n - 1)))


def clear_lead(best: Summary, runner_up: Summary) -> bool:
    """The report's bold rule: the lead exceeds the spread, |mean_best - mean_runner| > sd_best +
    sd_runner (the mean ± sd intervals do not overlap); with one seed (no sd) any lead > 0."""
    spread = (best.sd or 0.0) + (runner_up.sd or 0.0)
    return abs(best.mean - runner_up.mean) > spread + 1e-12
