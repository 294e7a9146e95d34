"""The conformal operating point: order statistic ⌈(n+1)(1−α)⌉, the α it achieves, its plain name."""

from __future__ import annotations

import numpy as np
import pytest

from adaptclip_med.metrics import conformal_threshold


def test_four_normals_give_the_max_and_alpha_one_fifth() -> None:
    rule = conformal_threshold(np.array([0.3, 0.1, 0.4, 0.2]), 0.95)
    assert rule.value == 0.4 and rule.order_statistic == 4 and rule.n == 4
    assert rule.alpha == pytest.approx(0.2) and not rule.valid_for_target
    assert rule.rule == "max leave-one-out normal score, k = 4"
    assert rule.description == "max leave-one-out normal score, k = 4 (α = 0.2)"


def test_enough_normals_reach_the_target() -> None:
    scores = np.arange(1.0, 20.0)  # n = 19 = 1/α − 1 for α = 0.05: the smallest n that reaches it
    rule = conformal_threshold(scores, 0.95)
    assert rule.order_statistic == 19 and rule.alpha == pytest.approx(0.05) and rule.valid_for_target
    big = conformal_threshold(np.arange(100.0), 0.95)  # j = ⌈101 · 0.95⌉ = 96 → the 96th smallest
    assert big.order_statistic == 96 and big.value == 95.0 and big.alpha == pytest.approx(1 - 96 / 101)
    assert big.rule.startswith("leave-one-out normal score 96 of 100 (conformal")


def test_alpha_bounds_the_false_positive_rate_on_exchangeable_scores() -> None:
    rng = np.random.default_rng(0)
    hits = [np.mean(rng.random(2000) > conformal_threshold(rng.random(9), 0.9).value) for _ in range(400)]
    assert conformal_threshold(np.zeros(9), 0.9).alpha == pytest.approx(0.1)
    assert np.mean(hits) <= 0.1 + 0.01  # marginal guarantee, averaged over calibration draws


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="no normal scores"):
        conformal_threshold(np.array([]))
    with pytest.raises(ValueError, match="target_specificity"):
        conformal_threshold(np.array([1.0]), 1.5)
