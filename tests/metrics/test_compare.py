"""Paired statistics (metrics.compare): DeLong against a hand derivation and against Sun & Xu's fast
algorithm written here, the paired bootstrap, Holm and Friedman/Nemenyi against hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from adaptclip_med.metrics import (
    MetricUndefinedError,
    aupr,
    aupro,
    auroc,
    delong_test,
    friedman_nemenyi,
    holm,
    paired_bootstrap,
    placements,
    pooled_pixels,
)

# ---------------------------------------------------------------------------------------------------
# DeLong: a hand-derived example (3 normal images Y, 2 abnormal images X, a tie in method b).
#
#   image:      Y1   Y2   Y3   X1   X2
#   method a:  0.1  0.4  0.6  0.5  0.8
#   method b:  0.2  0.5  0.3  0.5  0.4
#
# psi(X, Y) = 1 if X > Y, 1/2 if X == Y, 0 otherwise.
# Method a: X1 = 0.5 beats Y1, Y2, not Y3 -> V10(X1) = 2/3; X2 = 0.8 beats all -> V10(X2) = 1.
#           V01(Y1) = (1 + 1)/2 = 1, V01(Y2) = 1, V01(Y3) = (0 + 1)/2 = 1/2.  AUC_a = 5/6.
# Method b: X1 = 0.5 vs 0.2, 0.5 (tie), 0.3 -> (1 + 1/2 + 1)/3 = 5/6; X2 = 0.4 vs 0.2, 0.5, 0.3 -> 2/3.
#           V01(Y1) = 1, V01(Y2) = (1/2 + 0)/2 = 1/4, V01(Y3) = 1.  AUC_b = 3/4.
# S10 (over the m = 2 abnormal images, denominator m - 1 = 1):
#   deviations a: (-1/6, +1/6), b: (+1/12, -1/12)
#   S10_aa = 2/36 = 1/18, S10_bb = 2/144 = 1/72, S10_ab = -2/72 = -1/36
# S01 (over the n = 3 normal images, denominator n - 1 = 2):
#   deviations a: (1/6, 1/6, -1/3), b: (1/4, -1/2, 1/4)
#   S01_aa = (1/36 + 1/36 + 1/9)/2 = 1/12, S01_bb = (1/16 + 1/4 + 1/16)/2 = 3/16,
#   S01_ab = (1/24 - 1/12 - 1/12)/2 = -1/16
# S = S10/m + S01/n: S_aa = 1/36 + 1/36 = 1/18, S_bb = 1/144 + 1/16 = 5/72, S_ab = -1/72 - 1/48 = -5/144
# Var(a - b) = 1/18 + 5/72 + 2 * 5/144 = 28/144 = 7/36, SE = sqrt(7)/6
# delta = 5/6 - 3/4 = 1/12, z = (1/12) / (sqrt(7)/6) = 1/(2 sqrt(7)), p = 2 (1 - Phi(z)) = 0.85010...
# ---------------------------------------------------------------------------------------------------
HAND_Y = np.array([0, 0, 0, 1, 1])
HAND_A = np.array([0.1, 0.4, 0.6, 0.5, 0.8])
HAND_B = np.array([0.2, 0.5, 0.3, 0.5, 0.4])


def test_delong_hand_derived() -> None:
    v10, v01 = placements(HAND_A, HAND_Y.astype(bool))
    np.testing.assert_allclose(v10, [2 / 3, 1.0], atol=1e-15)
    np.testing.assert_allclose(v01, [1.0, 1.0, 0.5], atol=1e-15)
    v10, v01 = placements(HAND_B, HAND_Y.astype(bool))
    np.testing.assert_allclose(v10, [5 / 6, 2 / 3], atol=1e-15)
    np.testing.assert_allclose(v01, [1.0, 0.25, 1.0], atol=1e-15)

    r = delong_test(HAND_A, HAND_B, HAND_Y)
    assert r.value_a == pytest.approx(5 / 6, abs=1e-15)
    assert r.value_b == pytest.approx(3 / 4, abs=1e-15)
    assert r.delta == pytest.approx(1 / 12, abs=1e-15)
    se = math.sqrt(7) / 6
    assert r.se == pytest.approx(se, abs=1e-14)
    z = 1 / (2 * math.sqrt(7))
    assert r.p_value == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(z / math.sqrt(2)))), abs=1e-12)
    assert r.p_value == pytest.approx(0.850107, abs=1e-6)
    assert r.ci_low == pytest.approx(1 / 12 - 1.959963984540054 * se, abs=1e-12)
    assert r.ci_high == pytest.approx(1 / 12 + 1.959963984540054 * se, abs=1e-12)
    assert (r.n_normal, r.n_abnormal, r.test) == (3, 2, "delong")
    # swapping the methods flips the sign only
    s = delong_test(HAND_B, HAND_A, HAND_Y)
    assert s.delta == pytest.approx(-r.delta) and s.p_value == pytest.approx(r.p_value)


# ---------------------------------------------------------------------------------------------------
# An independent implementation: the fast DeLong algorithm of Sun & Xu (2014, IEEE SPL 21(11)) via
# mid-ranks. For each method, Tx = mid-ranks of the abnormal scores among themselves, Ty = those of the
# normal scores among themselves, Tz = mid-ranks of all scores; AUC = (sum Tz[abnormal] - m(m+1)/2)/(mn),
# V10 = (Tz[abnormal] - Tx) / n, V01 = 1 - (Tz[normal] - Ty) / m.
# ---------------------------------------------------------------------------------------------------
def _midrank(x: np.ndarray) -> np.ndarray:
    """Mid-ranks (1-based) by Sun & Xu's Algorithm: sort, walk runs of equal values, give each the mean."""
    order = np.argsort(x, kind="mergesort")
    z = x[order]
    n = z.size
    t = np.zeros(n)
    i = 0
    while i < n:
        j = i
        while j < n and z[j] == z[i]:
            j += 1
        t[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n)
    out[order] = t
    return out


def _sun_xu(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their covariance (k, k) of ``scores`` (k, M)."""
    pos, neg = labels.astype(bool), ~labels.astype(bool)
    m, n = int(pos.sum()), int(neg.sum())
    k = scores.shape[0]
    tx = np.vstack([_midrank(scores[r, pos]) for r in range(k)])
    ty = np.vstack([_midrank(scores[r, neg]) for r in range(k)])
    tz = np.vstack([_midrank(scores[r]) for r in range(k)])
    aucs = (tz[:, pos].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, pos] - tx) / n
    v01 = 1.0 - (tz[:, neg] - ty) / m
    cov = np.cov(v10) / m + np.cov(v01) / n
    return aucs, cov


def _sun_xu_test(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    aucs, cov = _sun_xu(np.vstack([a, b]), y)
    delta = aucs[0] - aucs[1]
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    p = 2 * stats.norm.sf(abs(delta) / se)
    return float(aucs[0]), float(aucs[1]), float(se), float(p)


def test_sun_xu_reproduces_the_hand_example() -> None:
    aucs, cov = _sun_xu(np.vstack([HAND_A, HAND_B]), HAND_Y)
    np.testing.assert_allclose(aucs, [5 / 6, 3 / 4], atol=1e-15)
    np.testing.assert_allclose(cov, [[1 / 18, -5 / 144], [-5 / 144, 5 / 72]], atol=1e-15)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_delong_matches_sun_xu_on_random_scores(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    n_img = int(rng.integers(20, 400))
    y = rng.integers(0, 2, n_img)
    y[:2], y[2:4] = 0, 1
    a = rng.normal(size=n_img) + 0.8 * y
    b = 0.6 * a + rng.normal(size=n_img) + 0.3 * y  # correlated with a
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    r = delong_test(a, b, y)
    auc_a, auc_b, se, p = _sun_xu_test(a, b, y)
    diffs = [abs(r.value_a - auc_a), abs(r.value_b - auc_b), abs(r.se - se), abs(r.p_value - p)]
    assert max(diffs) <= 1e-9, diffs
    assert r.value_a == pytest.approx(auroc(a, y), abs=1e-12)
    assert r.value_b == pytest.approx(auroc(b, y), abs=1e-12)


def test_delong_identical_methods() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    r = delong_test(s, s.copy(), y)
    assert r.delta == 0.0 and r.p_value == 1.0
    assert r.ci_low == r.ci_high == 0.0


def test_delong_clearly_better_method() -> None:
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1], 100)
    noise = rng.normal(size=200)
    good = noise + 2.0 * y
    weak = noise + 0.3 * y + rng.normal(size=200)
    r = delong_test(good, weak, y)
    assert r.p_value < 0.01 and r.delta > 0.15
    assert 0 < r.ci_low < r.delta < r.ci_high


def test_delong_needs_two_of_each_label() -> None:
    with pytest.raises(MetricUndefinedError, match="at least 2 normal and 2 abnormal"):
        delong_test([0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0, 0, 1])
    with pytest.raises(ValueError, match="one score of each method"):
        delong_test([0.1, 0.2], [0.3], [0, 1])


# ------------------------------------------------------------------------- paired bootstrap
def test_bootstrap_identical_methods() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    r = paired_bootstrap(aupr, s, s.copy(), y, n_boot=300, seed=1)
    assert r.delta == 0.0 and r.p_value == 1.0
    assert r.ci_low == r.ci_high == 0.0
    assert r.n_boot == 300 and r.unit == "image" and r.test == "paired-bootstrap"


def test_bootstrap_clearly_better_method() -> None:
    rng = np.random.default_rng(11)
    y = np.repeat([0, 1], 100)
    noise = rng.normal(size=200)
    good = noise + 2.0 * y
    weak = noise + 0.3 * y + rng.normal(size=200)
    r = paired_bootstrap(aupr, good, weak, y, n_boot=500, seed=2)
    assert r.value_a == pytest.approx(aupr(good, y)) and r.value_b == pytest.approx(aupr(weak, y))
    assert r.p_value < 0.01
    assert r.p_value == pytest.approx(2 / 501)  # no replicate at or below 0
    assert 0 < r.ci_low < r.delta < r.ci_high
    assert (r.n_normal, r.n_abnormal) == (100, 100)


def test_bootstrap_p_value_construction() -> None:
    """p = min(1, 2 min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (B + 1)), recomputed from the same draws."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 60)
    a = rng.normal(size=60) + 0.5 * y
    b = rng.normal(size=60) + 0.4 * y
    r = paired_bootstrap(auroc, a, b, y, n_boot=400, seed=9)
    draw = np.random.default_rng(9)
    d = []
    for _ in range(400):
        idx = draw.integers(0, 60, 60)
        if y[idx].min() == y[idx].max():
            continue
        d.append(auroc(a[idx], y[idx]) - auroc(b[idx], y[idx]))
    d = np.asarray(d)
    p = min(1.0, 2 * min(1 + np.sum(d <= 0), 1 + np.sum(d >= 0)) / (d.size + 1))
    assert r.p_value == pytest.approx(p, abs=1e-15)
    assert (r.ci_low, r.ci_high) == pytest.approx(tuple(np.quantile(d, [0.025, 0.975])), abs=1e-15)
    assert r.n_boot == d.size
    assert 0.0 < r.p_value < 1.0


def test_bootstrap_resamples_groups() -> None:
    """Patients whose images are near copies: the group bootstrap sees 20 units, not 200 images."""
    rng = np.random.default_rng(4)
    patient_label = np.repeat([0, 1], 10)
    groups = np.repeat(np.arange(20), 10)
    y = patient_label[groups]
    pa = rng.normal(size=20) + 0.6 * patient_label
    pb = rng.normal(size=20) + 0.4 * patient_label
    a = pa[groups] + 0.01 * rng.normal(size=200)
    b = pb[groups] + 0.01 * rng.normal(size=200)
    by_image = paired_bootstrap(auroc, a, b, y, n_boot=400, seed=0)
    by_patient = paired_bootstrap(auroc, a, b, y, groups=[f"p{g}" for g in groups], n_boot=400, seed=0)
    assert by_patient.unit == "patient" and by_image.unit == "image"
    assert by_patient.delta == by_image.delta
    assert by_patient.ci_high - by_patient.ci_low > 2 * (by_image.ci_high - by_image.ci_low)
    # ids missing everywhere: image-level
    assert paired_bootstrap(auroc, a, b, y, groups=[""] * 200, n_boot=50).unit == "image"


def test_bootstrap_pixel_metrics_per_image() -> None:
    """Per-image maps and masks: stacked arrays for AUPRO, ragged lists through pooled_pixels."""
    rng = np.random.default_rng(8)
    masks = np.zeros((12, 16, 16), dtype=bool)
    for i in range(0, 12, 2):
        masks[i, 4:9, 5:10] = True
    good = rng.random(masks.shape) + 1.5 * masks
    weak = rng.random(masks.shape) + 0.2 * masks
    r = paired_bootstrap(aupro, good, weak, masks, n_boot=100, seed=3)
    assert r.value_a == pytest.approx(aupro(good, masks)) and r.delta > 0
    assert (r.n_normal, r.n_abnormal) == (6, 6)
    # ragged: images of different sizes
    maps_a = [good[i, : 10 + i % 3] for i in range(12)]
    maps_b = [weak[i, : 10 + i % 3] for i in range(12)]
    gts = [masks[i, : 10 + i % 3] for i in range(12)]
    q = paired_bootstrap(pooled_pixels(auroc), maps_a, maps_b, gts, n_boot=100, seed=3)
    flat = np.concatenate([m.ravel() for m in maps_a]), np.concatenate([g.ravel() for g in gts])
    assert q.value_a == pytest.approx(auroc(*flat))
    assert q.p_value < 0.05 and q.ci_low > 0


def test_bootstrap_rejects_mismatched_images() -> None:
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(auroc, np.zeros(5), np.zeros(4), np.array([0, 1, 0, 1, 0]))
    with pytest.raises(MetricUndefinedError):
        paired_bootstrap(auroc, np.zeros(4), np.zeros(4), np.zeros(4))


# ------------------------------------------------------------------------- Holm
def test_holm_hand_computed() -> None:
    # p = (0.01, 0.04, 0.03, 0.005), m = 4; sorted: 0.005, 0.01, 0.03, 0.04
    # scaled: 4*0.005 = 0.02, 3*0.01 = 0.03, 2*0.03 = 0.06, 1*0.04 = 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], atol=1e-15)
    # capped at 1: 2*0.6 = 1.2 -> 1, then max(1, 0.7) = 1
    np.testing.assert_allclose(holm([0.7, 0.6]), [1.0, 1.0])
    # NaN stays NaN and does not count: m = 2
    np.testing.assert_allclose(holm([0.02, np.nan, 0.04]), [0.04, np.nan, 0.04])
    assert holm([]).size == 0
    with pytest.raises(ValueError):
        holm([1.5])


# ------------------------------------------------------------------------- Friedman / Nemenyi
def test_friedman_nemenyi_hand_computed() -> None:
    # 6 data sets x 3 methods; ranks per row (1 = best):
    #   A: 1 1 1 2 1 1 -> R_A = 7/6;  B: 2 2 2 1 2 2 -> R_B = 11/6;  C: 3 everywhere -> R_C = 3
    # chi2_F = 12 N / (k (k+1)) [sum R^2 - k (k+1)^2 / 4] = 6 [(49 + 121)/36 + 9 - 12] = 6 * 62/36 = 31/3
    # p = chi2 sf with 2 dof = exp(-chi2 / 2) = exp(-31/6)
    # Iman-Davenport: F = (N-1) chi2 / (N (k-1) - chi2) = 5 (31/3) / (12 - 31/3) = 31, dof (2, 10)
    # Nemenyi: q_0.05(k=3) = 2.343 (Demsar 2006, Table 5a); CD = 2.343 sqrt(3*4 / (6*6)) = 1.3532
    #   A-C = 11/6 = 1.83 >= CD -> differ; B-C = 7/6 = 1.17 < CD; A-B = 2/3 < CD
    table = np.array([[0.90, 0.80, 0.70],
                      [0.85, 0.80, 0.60],
                      [0.95, 0.90, 0.50],
                      [0.70, 0.75, 0.60],
                      [0.88, 0.86, 0.80],
                      [0.99, 0.97, 0.90]])
    r = friedman_nemenyi(table, methods=["A", "B", "C"])
    np.testing.assert_allclose(r.avg_ranks, [7 / 6, 11 / 6, 3.0], atol=1e-15)
    assert r.statistic == pytest.approx(31 / 3, abs=1e-12)
    assert r.p_value == pytest.approx(math.exp(-31 / 6), abs=1e-12)
    assert r.iman_davenport == pytest.approx(31.0, abs=1e-9)
    assert r.iman_davenport_p == pytest.approx(stats.f.sf(31.0, 2, 10), abs=1e-12)
    assert r.q_alpha == pytest.approx(2.343, abs=1e-3)
    assert r.cd == pytest.approx(2.3437 * math.sqrt(12 / 36), abs=1e-3)
    assert r.differ == (("A", "C"),)
    assert r.rank_of("B") == pytest.approx(11 / 6)
    ref = stats.friedmanchisquare(*table.T)
    assert r.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, abs=1e-12)


def test_friedman_ties_and_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    # ties within rows: the tie correction as scipy's
    table = pd.DataFrame({"w": [0.9, 0.8, 0.7, 0.9], "x": [0.9, 0.7, 0.6, 0.8], "y": [0.5, 0.7, 0.6, 0.8],
                          "z": [0.4, 0.2, 0.65, 0.1]}, index=["d1", "d2", "d3", "d4"])
    r = friedman_nemenyi(table)
    assert r.methods == ("w", "x", "y", "z")
    ref = stats.friedmanchisquare(*table.to_numpy().T)
    assert r.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, abs=1e-12)
    assert r.avg_ranks[0] == pytest.approx((1.5 + 1 + 1 + 1) / 4)
    # q_alpha of Demsar's Table 5a for k = 4 and 5
    assert r.q_alpha == pytest.approx(2.569, abs=1e-3)
    lower = friedman_nemenyi(-table, higher_is_better=False)
    assert lower.avg_ranks == pytest.approx(r.avg_ranks)


def test_friedman_input_errors() -> None:
    with pytest.raises(ValueError, match="at least 3 data sets"):
        friedman_nemenyi(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        friedman_nemenyi(np.array([[1, 2, 3], [1, np.nan, 2], [3, 2, 1.0]]))
