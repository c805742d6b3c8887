"""pipeline.analysis.stats against scipy's own tests and hand-computed values."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from pipeline.analysis.stats import (
    clear_lead,
    contrast,
    difference,
    summarize,
    variance_ratio,
)


def test_summarize_mean_sample_sd():
    s = summarize([0.30, 0.32, 0.34])
    assert s.mean == pytest.approx(0.32) and s.sd == pytest.approx(0.02) and s.n == 3
    one = summarize([0.5])
    assert one.sd is None and one.n == 1
    with pytest.raises(ValueError, match="no values"):
        summarize([])


def test_difference_is_welchs_t_test():
    a, b = [0.30, 0.35, 0.33, 0.31], [0.40, 0.37, 0.45]
    d = difference(summarize(a), summarize(b))
    ref = st.ttest_ind(a, b, equal_var=False)
    assert d.value == pytest.approx(sum(a) / 4 - sum(b) / 3)
    assert d.p == pytest.approx(ref.pvalue) and d.significant(0.05) == (ref.pvalue < 0.05)
    assert difference(summarize([0.3]), summarize(b)).p is None  # one seed: no test


def test_contrast_of_two_gains_adds_variances():
    xs = [
        summarize(v) for v in ([1.0, 1.2, 1.1], [0.5, 0.7, 0.6], [1.0, 1.1, 1.2], [0.9, 1.0, 1.1])
    ]
    c = contrast([(1, xs[0]), (-1, xs[1]), (-1, xs[2]), (1, xs[3])])
    assert c.value == pytest.approx(1.1 - 0.6 - 1.1 + 1.0)
    assert c.se == pytest.approx(math.sqrt(4 * 0.01 / 3))
    assert c.df == pytest.approx(8.0)  # equal variances and n: the pooled df
    assert c.p == pytest.approx(2 * st.t.sf(c.value / c.se, 8.0))


def test_variance_ratio_is_one_sided_f_test():
    wide, narrow = summarize([0.1, 0.5, 0.9]), summarize([0.49, 0.5, 0.51])
    r = variance_ratio(wide, narrow)
    assert r.ratio == pytest.approx(1600.0) and r.p == pytest.approx(st.f.sf(1600.0, 2, 2))
    assert r.p < 0.01 and variance_ratio(narrow, wide).p > 0.99


def test_clear_lead_needs_more_than_both_spreads():
    a = summarize([0.20, 0.21, 0.22])  # 0.21 ± 0.01
    assert clear_lead(a, summarize([0.23, 0.24, 0.25]))  # lead 0.03 > 0.01 + 0.01
    assert not clear_lead(a, summarize([0.21, 0.23, 0.25]))  # lead 0.02 < 0.01 + 0.02
    assert clear_lead(summarize([0.2]), summarize([0.2001]))  # one seed: any lead
    assert not clear_lead(summarize([0.2]), summarize([0.2]))


def test_welch_ci_equals_scipys_and_holds_the_difference():
    from scipy import stats as st

    from pipeline.analysis.stats import difference, summarize

    a, b = [0.31, 0.29, 0.35, 0.30], [0.40, 0.37, 0.45]
    d = difference(summarize(a), summarize(b))
    lo, hi = d.ci()
    ref = st.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert abs(lo - ref.low) < 1e-9 and abs(hi - ref.high) < 1e-9
    assert lo < d.value < hi and hi < 0  # significant: the interval excludes 0
    assert d.p < 0.05
    assert difference(summarize([0.3]), summarize(b)).ci() is None  # one seed: no spread


def test_seeds_to_decide_grows_as_the_difference_shrinks_against_the_spread():
    from pipeline.analysis.stats import Contrast, seeds_to_decide

    # t = value / se = 1 with 3 seeds: n (z_.975 + z_.8)^2 / t^2 = 3 * 7.85 -> 24
    assert seeds_to_decide(Contrast(0.01, 0.01, 4.0, 0.37), 3) == 24
    assert seeds_to_decide(Contrast(0.02, 0.01, 4.0, 0.12), 3) == 6
    assert seeds_to_decide(Contrast(0.0, 0.01, 4.0, 1.0), 3) is None
    assert seeds_to_decide(Contrast(0.01, None, None, None), 1) is None
