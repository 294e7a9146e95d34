"""Pure metric functions: numpy arrays in, one float out (exact, all samples in memory).

Definitions (``../shared/docs/adaptclip-method.md`` §6): AUROC; AUPR = trapezoidal area under the
precision-recall curve; AP = step-wise average precision (labelled separately); F1max = max over
thresholds of 2PR / (P + R); AUPRO = area under the per-region-overlap curve for FPR in [0, 0.3],
divided by 0.3. A metric that is undefined for the data raises :class:`MetricUndefinedError` with the
reason (the accumulators turn it into an N/A value).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from adaptclip_med.metrics.curves import (
    aupr_from_counts,
    average_precision_from_counts,
    cumulative_at_distinct,
    f1_max_from_counts,
    pro_auc_from_counts,
    roc_auc_from_counts,
)
from adaptclip_med.metrics.result import MetricUndefinedError

#: 8-connectivity for ground-truth regions (as the MVTec AD evaluation code).
REGION_STRUCTURE = np.ones((3, 3), dtype=int)


def _check_binary(scores: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        msg = f"{what}: got {s.size} scores and {y.size} labels; expected the same number of each"
        raise ValueError(msg)
    if not np.all(np.isfinite(s)):
        msg = f"{what}: scores contain NaN or inf; expected finite values (check the model output)"
        raise ValueError(msg)
    y = y.astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise MetricUndefinedError(f"{what}: no anomalous (positive) samples")
    if n_pos == y.size:
        raise MetricUndefinedError(f"{what}: no normal (negative) samples")
    return s, y


def binary_counts(scores: np.ndarray, labels: np.ndarray, what: str = "metric") -> tuple[np.ndarray, ...]:
    """Cumulative ``(thresholds, tps, fps)`` at each distinct score, descending.

    Args:
        scores: ``(M,)`` (or any shape) scores.
        labels: same shape, 0/1 or bool.
        what: name used in error messages.

    Raises:
        MetricUndefinedError: only one label present.
    """
    s, y = _check_binary(scores, labels, what)
    return cumulative_at_distinct(s, y.astype(np.float64), (~y).astype(np.float64))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (equals ``sklearn.metrics.roc_auc_score``)."""
    _, tps, fps = binary_counts(scores, labels, "AUROC")
    return roc_auc_from_counts(tps, fps)


def aupr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Trapezoidal area under the PR curve (equals sklearn ``auc(recall, precision)``)."""
    _, tps, fps = binary_counts(scores, labels, "AUPR")
    return aupr_from_counts(tps, fps)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Step-wise average precision (equals ``sklearn.metrics.average_precision_score``)."""
    _, tps, fps = binary_counts(scores, labels, "AP")
    return average_precision_from_counts(tps, fps)


def f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """Maximum F1 score over all thresholds."""
    _, tps, fps = binary_counts(scores, labels, "F1max")
    return f1_max_from_counts(tps, fps)[0]


def positive_region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Overlap weight ``1/|region|`` of each ground-truth pixel (connected regions, 8-connectivity).

    Args:
        masks: ``(B, H, W)`` (or ``(H, W)``) binary ground truth.

    Returns:
        ``(weights (P,) float64 in the order of masks[masks != 0], number of regions)``.
    """
    m = np.asarray(masks).astype(bool)
    if m.ndim == 2:
        m = m[None]
    parts = [np.zeros(0)]
    n_regions = 0
    for i in np.flatnonzero(m.any(axis=(1, 2))):  # maps without a region add nothing
        labelled, n = ndimage.label(m[i], structure=REGION_STRUCTURE)
        sizes = np.bincount(labelled.ravel())
        inv = np.zeros(sizes.size, dtype=np.float64)
        inv[1:] = 1.0 / sizes[1:]
        parts.append(inv[labelled[m[i]]])
        n_regions += n
    return np.concatenate(parts), n_regions


def region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-pixel overlap weights: ``1/|region|`` inside each connected GT region, 0 elsewhere.

    Args:
        masks: ``(B, H, W)`` (or ``(H, W)``) binary ground truth.

    Returns:
        ``(weights (B, H, W) float64, number of regions)``.
    """
    m = np.asarray(masks).astype(bool)
    if m.ndim == 2:
        m = m[None]
    weights = np.zeros(m.shape, dtype=np.float64)
    positive, n_regions = positive_region_weights(m)
    weights[m] = positive
    return weights, n_regions


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to ``fpr_limit``.

    FPR is over all normal pixels of all images; PRO at a threshold is the mean over all connected GT
    regions (8-connectivity) of the fraction of the region's pixels at or above the threshold.

    Args:
        maps: ``(B, H, W)`` anomaly maps.
        masks: ``(B, H, W)`` binary ground truth.
        fpr_limit: integration limit (0.3 in the paper); the result is divided by it.

    Raises:
        MetricUndefinedError: no GT region, or no normal pixel.
    """
    a = np.asarray(maps, dtype=np.float64)
    m = np.asarray(masks).astype(bool)
    if a.shape != m.shape:
        msg = f"AUPRO: maps have shape {a.shape} and masks {m.shape}; expected equal shapes"
        raise ValueError(msg)
    weights, n_regions = region_weights(m)
    if n_regions == 0:
        raise MetricUndefinedError("AUPRO: no anomalous region in the masks")
    neg = (~m).ravel().astype(np.float64)
    if neg.sum() == 0:
        raise MetricUndefinedError("AUPRO: no normal pixel in the masks")
    _, fp_cum, pro_cum = cumulative_at_distinct(a.ravel(), neg, weights.ravel())
    return pro_auc_from_counts(fp_cum / fp_cum[-1], pro_cum / n_regions, fpr_limit)
