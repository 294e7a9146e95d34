"""Image/pixel metric functions against scikit-learn and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from adaptclip_med.metrics import (
    Evaluator,
    MetricUndefinedError,
    aupr,
    auroc,
    average_precision,
    canonical_metric,
    f1_max,
)


def _sk_f1max(y: np.ndarray, s: np.ndarray) -> float:
    p, r, _ = precision_recall_curve(y, s)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    return float(f1.max())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_sklearn(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + 0.8 * y
    if ties:
        s = np.round(s, 1)
    p, r, _ = precision_recall_curve(y, s)
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr(s, y) == pytest.approx(auc(r, p), abs=1e-12)
    assert average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert f1_max(s, y) == pytest.approx(_sk_f1max(y, s), abs=1e-12)


def test_hand_computed() -> None:
    # negatives 0.1, 0.4; positives 0.35, 0.8: one discordant pair of four -> AUROC 0.75
    s = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([0, 0, 1, 1])
    assert auroc(s, y) == pytest.approx(0.75)
    # PR points (recall, precision): (0,1) (.5,1) (.5,.5) (1,2/3) -> trapezoid .5 + .5*(.5+2/3)/2
    assert aupr(s, y) == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert average_precision(s, y) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # best threshold 0.35: TP 2, FP 1 -> F1 = 4 / 5
    assert f1_max(s, y) == pytest.approx(0.8)


def test_perfect_and_inverted() -> None:
    y = np.array([0, 0, 1, 1])
    assert auroc(np.array([0.0, 0.1, 0.9, 1.0]), y) == 1.0
    assert auroc(np.array([1.0, 0.9, 0.1, 0.0]), y) == 0.0
    assert f1_max(np.array([0.0, 0.1, 0.9, 1.0]), y) == 1.0


def test_single_label_is_undefined() -> None:
    with pytest.raises(MetricUndefinedError, match="no normal"):
        auroc(np.array([0.2, 0.3]), np.array([1, 1]))
    with pytest.raises(MetricUndefinedError, match="no anomalous"):
        aupr(np.array([0.2, 0.3]), np.array([0, 0]))


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="3 scores and 2 labels"):
        auroc(np.array([0.1, 0.2, 0.3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        auroc(np.array([np.nan, 0.2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="unknown metric"):
        canonical_metric("I-ROC")
    assert canonical_metric("P-AUPRO") == "AUPRO"


def test_evaluator_na_reasons() -> None:
    ev = Evaluator(has_masks=False)
    ev.update(np.array([0.1, 0.9]), np.array([1, 1]))
    out = ev.compute()
    assert out["I-AUROC"].is_na and "no normal images" in out["I-AUROC"].reason
    assert out["P-AUPR"].is_na and "no ground-truth masks" in out["P-AUPR"].reason
    assert np.isnan(out["AUPRO"].as_float())
    ev2 = Evaluator(has_masks=True)
    ev2.update(np.array([0.1, 0.9]), np.array([0, 1]), np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    out2 = ev2.compute()
    assert out2["I-AUROC"].value == 1.0
    assert out2["P-AUROC"].is_na and "no anomalous pixel" in out2["P-AUROC"].reason
