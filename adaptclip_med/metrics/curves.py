"""Threshold curves from cumulative counts: the one core shared by the exact and the binned metrics.

Every metric here is computed from counts accumulated over thresholds in descending order: ``tps[i]`` /
``fps[i]`` are the (possibly fractional) numbers of positives / negatives scoring at or above the i-th
threshold. The exact metrics feed one entry per distinct score; the binned metrics one entry per
histogram bin, so both share the same formulas (and agree exactly on bin-quantised data).
The formulas follow scikit-learn's ``roc_auc_score``, ``precision_recall_curve`` + ``auc`` (trapezoidal
AUPR), ``average_precision_score`` (step-wise AP) and F1max = max 2PR / (P + R).
"""

from __future__ import annotations

import numpy as np


def cumulative_at_distinct(scores: np.ndarray, *weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort by descending score and accumulate weights at each distinct score.

    Args:
        scores: ``(M,)`` float scores.
        *weights: arrays of shape ``(M,)`` (counts or fractional weights per sample).

    Returns:
        ``(thresholds (T,), cum_w1 (T,), cum_w2 (T,), ...)`` with ``T`` distinct scores, descending.
    """
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    last = np.flatnonzero(np.diff(s) != 0)
    idx = np.concatenate([last, [s.size - 1]]) if s.size else np.zeros(0, dtype=int)
    out = [s[idx]]
    for w in weights:
        out.append(np.cumsum(w[order], dtype=np.float64)[idx])
    return tuple(out)


def roc_auc_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """Trapezoidal area under the ROC curve through (0, 0) and every cumulative point.

    Args:
        tps: ``(T,)`` cumulative positives at or above each threshold (descending thresholds).
        fps: ``(T,)`` cumulative negatives.
    """
    tpr = np.concatenate([[0.0], tps / tps[-1]])
    fpr = np.concatenate([[0.0], fps / fps[-1]])
    return float(np.trapezoid(tpr, fpr))


def pr_curve_from_counts(tps: np.ndarray, fps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall points as scikit-learn's ``precision_recall_curve`` returns them.

    Stops at the first threshold reaching full recall, orders by decreasing threshold reversed
    (recall decreasing) and appends the point (recall 0, precision 1).

    Returns:
        ``(precision (T',), recall (T',))``.
    """
    total = tps + fps
    precision = np.divide(tps, total, out=np.zeros_like(tps, dtype=np.float64), where=total > 0)
    recall = tps / tps[-1]
    last = int(np.searchsorted(tps, tps[-1]))
    sl = slice(last, None, -1)
    return np.concatenate([precision[sl], [1.0]]), np.concatenate([recall[sl], [0.0]])


def aupr_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """Trapezoidal area under the PR curve (sklearn ``auc(recall, precision)``)."""
    precision, recall = pr_curve_from_counts(tps, fps)
    return float(np.trapezoid(precision[::-1], recall[::-1]))


def average_precision_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """Step-wise average precision, sum over thresholds of (R_n - R_{n-1}) P_n."""
    precision, recall = pr_curve_from_counts(tps, fps)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def f1_max_from_counts(tps: np.ndarray, fps: np.ndarray) -> tuple[float, int]:
    """Maximum F1 over thresholds and the index (into ``tps``) where it is reached."""
    positives = tps[-1]
    denom = tps + fps + positives  # 2PR/(P+R) == 2TP / (TP + FP + P)
    f1 = np.divide(2.0 * tps, denom, out=np.zeros_like(tps, dtype=np.float64), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), best


def pro_auc_from_counts(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, divided by ``fpr_limit``.

    Args:
        fpr: ``(T,)`` false-positive rate at each descending threshold (non-decreasing, ends at 1).
        pro: ``(T,)`` mean per-region overlap at the same thresholds.
        fpr_limit: integration limit; the curve is linearly interpolated at the limit.

    Returns:
        Normalised AUPRO in [0, 1].
    """
    f = np.concatenate([[0.0], fpr])
    p = np.concatenate([[0.0], pro])
    inside = int(np.searchsorted(f, fpr_limit, side="right"))  # points with f <= limit
    f_in, p_in = f[:inside], p[:inside]
    if inside < f.size and f_in[-1] < fpr_limit:
        f0, f1_, p0, p1 = f[inside - 1], f[inside], p[inside - 1], p[inside]
        p_lim = p0 + (p1 - p0) * (fpr_limit - f0) / (f1_ - f0)
        f_in = np.concatenate([f_in, [fpr_limit]])
        p_in = np.concatenate([p_in, [p_lim]])
    return float(np.trapezoid(p_in, f_in) / fpr_limit)
