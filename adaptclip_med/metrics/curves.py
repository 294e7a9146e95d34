"""Threshold curves from cumulative counts: the one core shared by the exact and the binned metrics.

Every metric here is computed from counts accumulated over thresholds in descending order: ``tps[i]`` /
``fps[i]`` are the (possibly fractional) numbers of positives / negatives scoring at or above the i-th
threshold. The exact metrics feed one entry per distinct score; the binned metrics one entry per
histogram bin, so both share the same formulas (and agree exactly on bin-quantised data).
``pixel_counts`` gives the exact pixel counts of ``cumulative_at_distinct`` without its full argsort.
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


def pixel_counts(
    scores: np.ndarray, positive: np.ndarray, positive_weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative positives, negatives and positive weight at each distinct score, without a full argsort.

    Bit for bit the counts of ``cumulative_at_distinct(scores.astype(float64), positive, ~positive, w)``
    where ``w`` is ``positive_weights`` on the positive samples and 0 elsewhere (the PRO region weights),
    at a fraction of its cost on millions of pixels: only the positives get a stable argsort (their
    order in it is their order in the full stable order, so the running weight sum is the same
    sequence of additions, the full one only adding 0.0 for each negative), every score gets a plain
    value sort that yields the distinct thresholds and how many scores reach each, and the negatives
    follow as that count minus the positives. Equal scores are one threshold, -0.0 and 0.0 included.

    Args:
        scores: ``(M,)`` (or any shape) finite float scores (float32 maps stay float32: the sort is exact
            in any float dtype).
        positive: same shape, bool (or 0/1) ground truth.
        positive_weights: ``(P,)`` weight of each positive sample, in the order of ``scores[positive]``.

    Returns:
        ``(tps (T,), fps (T,), pro (T,))`` float64 at the ``T`` distinct scores, descending.
    """
    s = np.asarray(scores).ravel()
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    y = np.asarray(positive).astype(bool, copy=False).ravel()
    w = np.asarray(positive_weights, dtype=np.float64).ravel()
    if y.size != s.size:
        msg = f"pixel counts: got {s.size} scores and {y.size} labels; expected the same number of each"
        raise ValueError(msg)
    pos = s[y]
    if w.size != pos.size:
        msg = f"pixel counts: got {w.size} positive weights for {pos.size} positive samples; expected one each"
        raise ValueError(msg)
    if s.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    order = np.argsort(-pos, kind="stable")
    pro_at = np.concatenate([[0.0], np.cumsum(w[order], dtype=np.float64)])  # weight of the first k positives
    ascending = np.sort(s)
    starts = np.flatnonzero(np.concatenate([[True], ascending[1:] != ascending[:-1]]))  # (T,) run starts
    distinct = ascending[starts]  # (T,) ascending
    del ascending
    # each positive's threshold (queries ascending: searchsorted narrows from the previous hit)
    per_value = np.bincount(np.searchsorted(distinct, pos[order[::-1]]), minlength=distinct.size)
    tps = np.cumsum(per_value[::-1])  # positives at or above each descending threshold
    fps = s.size - starts[::-1]  # scores at or above it
    fps -= tps
    return tps.astype(np.float64), fps.astype(np.float64), pro_at[tps]  # whole numbers: exact in float64


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


def aupr_from_curve(precision: np.ndarray, recall: np.ndarray) -> float:
    """Trapezoidal area under the PR points ``(T',)`` of :func:`pr_curve_from_counts`."""
    return float(np.trapezoid(precision[::-1], recall[::-1]))


def average_precision_from_curve(precision: np.ndarray, recall: np.ndarray) -> float:
    """Step-wise average precision of the PR points ``(T',)`` of :func:`pr_curve_from_counts`."""
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def aupr_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """Trapezoidal area under the PR curve (sklearn ``auc(recall, precision)``)."""
    return aupr_from_curve(*pr_curve_from_counts(tps, fps))


def average_precision_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """Step-wise average precision, sum over thresholds of (R_n - R_{n-1}) P_n."""
    return average_precision_from_curve(*pr_curve_from_counts(tps, fps))


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
    keep = int(np.searchsorted(fpr, fpr_limit, side="right")) + 1  # up to the first point past the limit
    f = np.concatenate([[0.0], fpr[:keep]])
    p = np.concatenate([[0.0], pro[:keep]])
    inside = int(np.searchsorted(f, fpr_limit, side="right"))  # points with f <= limit
    f_in, p_in = f[:inside], p[:inside]
    if inside < f.size and f_in[-1] < fpr_limit:
        f0, f1_, p0, p1 = f[inside - 1], f[inside], p[inside - 1], p[inside]
        p_lim = p0 + (p1 - p0) * (fpr_limit - f0) / (f1_ - f0)
        f_in = np.concatenate([f_in, [fpr_limit]])
        p_in = np.concatenate([p_in, [p_lim]])
    return float(np.trapezoid(p_in, f_in) / fpr_limit)
