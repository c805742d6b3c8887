"""WER/CER against hand-checked strings, EER at its two ends, text normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tasks.metrics import cer, eer, normalize_en, normalize_ml, wer


def test_wer_hand_checked():
    assert wer(["A B C D"], ["A X C"]) == pytest.approx(0.5)  # 1 substitution + 1 deletion / 4
    assert wer(["A B", "C D E F"], ["A B", "C D E F G H"]) == pytest.approx(2 / 6)  # 2 insertions
    assert wer(["HELLO WORLD"], [""]) == pytest.approx(1.0)
    assert wer([], []) == 0.0


def test_cer_hand_checked_spaces_count():
    assert cer(["abcd"], ["axc"]) == pytest.approx(0.5)
    assert cer(["a b"], ["ab"]) == pytest.approx(1 / 3)  # the missing space is one deletion
    assert cer(["你好世界"], ["你好世"]) == pytest.approx(0.25)  # Han characters are single tokens


def test_pairs_must_match():
    with pytest.raises(ValueError, match="pair"):
        wer(["A"], [])


def test_eer_perfect_and_chance():
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(5000), np.ones(5000)]
    assert eer(labels, rng.normal(size=10000)) == pytest.approx(0.5, abs=0.03)
    assert eer([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_eer_interpolates_between_roc_points():
    # ROC points (FPR, FNR): (0, 1/3) then (1/2, 1/3); the curves cross at FPR = FNR = 1/3
    assert eer([1, 1, 1, 0, 0], [0.9, 0.8, 0.3, 0.5, 0.1]) == pytest.approx(1 / 3)
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.3, 0.6, 0.2, 0.1, 0.05]
    assert eer(labels, scores) == pytest.approx(0.25)  # an exact crossing at a ROC point
    # the reversed scores are perfectly wrong
    assert eer([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(1.0)


def test_eer_needs_both_classes():
    with pytest.raises(ValueError, match="target"):
        eer([1, 1], [0.2, 0.3])


def test_normalisation():
    assert normalize_en("Well-known, it's 3 o'clock.") == "WELL KNOWN IT'S O'CLOCK"
    assert normalize_ml("  你好，世界！ Hello,  World. ") == "你好世界 HELLO WORLD"
    assert normalize_ml("Straße") == "STRASSE"
