"""One decision rule everywhere: a score strictly above the threshold is anomalous, one equal to it is normal
(evaluate's confusion counts, the conformal bound, score's above_threshold, the viewer and the DICOM SEG)."""

from __future__ import annotations

import numpy as np

from adaptclip_med.metrics import DECISION_RULE, conformal_threshold, decision_metrics, is_anomalous


def test_a_tie_is_normal() -> None:
    assert DECISION_RULE == "score > threshold"
    assert is_anomalous(0.5, 0.5) is False and is_anomalous(0.5000001, 0.5) is True
    np.testing.assert_array_equal(is_anomalous(np.array([0.4, 0.5, 0.6]), 0.5), [False, False, True])


def test_decision_metrics_count_a_tie_as_negative() -> None:
    # an abnormal image exactly at the threshold is a miss, a normal one exactly at it a true negative
    counts = decision_metrics(np.array([0.5, 0.5, 0.7, 0.1]), np.array([1, 0, 1, 0]), threshold=0.5)
    assert (counts["tp"], counts["fn"], counts["tn"], counts["fp"]) == (1, 1, 2, 0)


def test_conformal_threshold_is_an_order_statistic_and_equal_is_normal() -> None:
    loo = np.linspace(0.0, 1.0, 20)  # 20 leave-one-out normal scores
    ct = conformal_threshold(loo, target_specificity=0.9)
    assert ct.value in set(loo.tolist())
    # the normal that sets the threshold is itself called normal under the one rule
    assert not is_anomalous(ct.value, ct.value)
    assert float(np.mean(is_anomalous(loo, ct.value))) <= 0.1 + 1e-12
