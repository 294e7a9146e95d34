"""Sensitivity/specificity at fixed operating points, bootstrap CIs, threshold calibration."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from adaptclip_med.metrics import (
    MetricUndefinedError,
    bootstrap_ci,
    calibrate_threshold,
    decision_metrics,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)


@pytest.mark.parametrize("seed", [0, 1])
def test_operating_points_match_sklearn_roc(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.normal(size=400) + y, 2)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert sensitivity_at_specificity(s, y, 0.95) == pytest.approx(tpr[fpr <= 0.05].max())
    assert specificity_at_sensitivity(s, y, 0.95) == pytest.approx((1 - fpr[tpr >= 0.95]).max())


def test_hand_case() -> None:
    # 20 normals 0..19, positives 15.5 and 30: at spec >= 95 % (<= 1 FP) the threshold 18.5 keeps 1 TP
    s = np.concatenate([np.arange(20.0), [15.5, 30.0]])
    y = np.array([0] * 20 + [1, 1])
    assert sensitivity_at_specificity(s, y, 0.95) == 0.5
    # sensitivity >= 95 % needs both positives -> threshold 15.5 -> 4 of 20 normals above -> spec 0.8
    assert specificity_at_sensitivity(s, y, 0.95) == pytest.approx(0.8)


def test_bootstrap_is_deterministic_and_contains_estimate() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    s = rng.normal(size=120) + 1.5 * y
    a = bootstrap_ci(sensitivity_at_specificity, s, y, n_boot=300, seed=7)
    b = bootstrap_ci(sensitivity_at_specificity, s, y, n_boot=300, seed=7)
    assert a == b
    assert a.low <= a.value <= a.high and a.unit == "image-level" and a.n_boot == 300


def test_bootstrap_resamples_whole_patients() -> None:
    # three images per patient share one score; a patient-level replicate keeps triples intact
    scores = np.repeat(np.arange(30.0), 3)
    labels = np.repeat(np.arange(30) % 2, 3)
    groups = np.repeat([f"p{i}" for i in range(30)], 3)

    def whole_triples(s: np.ndarray, y: np.ndarray) -> float:
        return float(np.all(np.unique(s, return_counts=True)[1] % 3 == 0))

    patient = bootstrap_ci(whole_triples, scores, labels, groups=groups, n_boot=50)
    image = bootstrap_ci(whole_triples, scores, labels, groups=None, n_boot=50)
    assert patient.unit == "patient" and patient.low == patient.high == 1.0
    assert image.unit == "image-level" and image.low == 0.0
    missing = bootstrap_ci(whole_triples, scores, labels, groups=np.array([None] * 90), n_boot=50)
    assert missing.unit == "image-level" and missing.low == 0.0  # None ids are not one big patient


def test_bootstrap_one_label_is_undefined() -> None:
    with pytest.raises(MetricUndefinedError):
        bootstrap_ci(sensitivity_at_specificity, np.array([0.1, 0.2]), np.array([0, 0]))


def test_calibration_and_decisions() -> None:
    normals = np.array([0.1, 0.2, 0.3, 0.4])
    assert calibrate_threshold(normals, 0.95) == 0.4  # 4 LOO scores: the 95 % quantile is the max
    assert calibrate_threshold(np.arange(100.0), 0.95) == 95.0  # 96 of 100 at or below
    d = decision_metrics(np.array([0.05, 0.5, 0.35, 0.45]), np.array([0, 0, 1, 1]), threshold=0.4)
    assert (d["tp"], d["fp"], d["tn"], d["fn"]) == (1, 1, 1, 1)
    assert d["sensitivity"] == 0.5 and d["specificity"] == 0.5 and d["f1"] == 0.5
    assert decision_metrics(np.array([0.1]), np.array([0]), 0.5)["sensitivity"] is None
    with pytest.raises(ValueError, match="no normal scores"):
        calibrate_threshold(np.array([]))
