"""Operating point: a decision threshold calibrated from normal prompts alone.

With ``k >= 2`` normal prompts, each prompt is scored with the other ``k - 1`` as its prompt set
(leave-one-out, LOO). The image threshold follows the split-conformal rule (:func:`conformal_threshold`):
with ``n`` LOO normal scores and a false-positive target ``α = 1 − target_specificity``, the threshold
is the order statistic ``j = ⌈(n + 1)(1 − α)⌉`` of the sorted scores, which bounds the false-positive
rate of a new normal image by ``α`` when the scores are exchangeable. That needs ``j <= n``, i.e.
``n >= 1/α − 1`` (19 normals for α = 0.05); with fewer, the largest LOO score is the best one can do and
the rate it bounds is ``α = 1 − n / (n + 1)`` (0.2 with 4 normals): the operating point records that
achieved ``α``, ``n`` and a plain rule ("max leave-one-out normal score, k = 4", α = 0.2). (LOO
scores use ``k − 1`` prompts and the queries ``k``, so exchangeability is approximate.) The pixel
threshold is the ``pixel_specificity`` quantile (``method="higher"``) of all LOO map pixels (pixels of
one image are not exchangeable: no guarantee is claimed). A score above the threshold is called
anomalous. With fewer than two prompts there is nothing to leave out: the operating point is not
available (the run records why).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class OperatingPoint:
    """A saved decision rule.

    Attributes:
        image_threshold: image score above which an image is called anomalous.
        pixel_threshold: map value above which a pixel is called anomalous (drawn as a contour).
        target_specificity: specificity targeted on the normal calibration scores.
        pixel_specificity: pixel-level specificity targeted on the calibration maps.
        n_normals: number of normal calibration scores (the k prompts, one LOO score each).
        alpha: the false-positive rate the image threshold bounds (conformal), ``>= 1 − target``.
        order_statistic: ``j``: the threshold is the ``j``-th smallest of the ``n_normals`` scores.
        rule: plain words for the threshold ("max leave-one-out normal score, k = 4"); the report adds
            ``alpha`` and ``n_normals``.
        method: how the calibration scores were obtained.
    """

    image_threshold: float
    pixel_threshold: float
    target_specificity: float
    pixel_specificity: float
    n_normals: int
    alpha: float = float("nan")
    order_statistic: int = 0
    rule: str = ""
    method: str = "leave-one-out over the k normal prompts; conformal order statistic"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


def _checked(values: np.ndarray, target_specificity: float) -> np.ndarray:
    """``values`` flattened to float64; raises ValueError when empty or the target is outside (0, 1]."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        msg = "threshold calibration: got no normal scores; expected at least one"
        raise ValueError(msg)
    if not 0.0 < target_specificity <= 1.0:
        msg = f"threshold calibration: got target_specificity={target_specificity}; expected (0, 1]"
        raise ValueError(msg)
    return v


def calibrate_threshold(normal_values: np.ndarray, target_specificity: float = 0.95) -> float:
    """Threshold such that at least ``target_specificity`` of ``normal_values`` lie at or below it.

    Args:
        normal_values: ``(M,)`` (any shape) scores or map values of normal images only.
        target_specificity: in (0, 1].

    Raises:
        ValueError: empty input or a target outside (0, 1].
    """
    v = _checked(normal_values, target_specificity)
    return float(np.quantile(v, target_specificity, method="higher"))


@dataclass(frozen=True)
class ConformalThreshold:
    """The split-conformal image threshold of :func:`conformal_threshold`.

    Attributes:
        value: the threshold (``score > value`` ⇒ anomalous).
        n: number of normal calibration scores.
        order_statistic: ``j`` (1-indexed) of the sorted scores.
        alpha: the false-positive rate bounded: ``1 − j / (n + 1)``.
        valid_for_target: True when ``alpha`` meets the requested target (``n >= 1/α − 1``).
        rule: plain words, e.g. ``"max leave-one-out normal score, k = 4"`` (α and n are fields).
    """

    value: float
    n: int
    order_statistic: int
    alpha: float
    valid_for_target: bool
    rule: str

    @property
    def description(self) -> str:
        """``rule`` with the α it achieves: ``"max leave-one-out normal score, k = 4 (α = 0.2)"``."""
        return f"{self.rule} (α = {self.alpha:.3g})"


def conformal_threshold(normal_scores: np.ndarray, target_specificity: float = 0.95) -> ConformalThreshold:
    """Order statistic ``⌈(n + 1)(1 − α)⌉`` of ``n`` normal scores, ``α = 1 − target_specificity``.

    Args:
        normal_scores: ``(n,)`` leave-one-out scores of normal images.
        target_specificity: in (0, 1); 1 asks for α = 0, which no finite sample bounds (the maximum is used).

    Raises:
        ValueError: empty input or a target outside (0, 1].
    """
    v = np.sort(_checked(normal_scores, target_specificity))
    n = int(v.size)
    target_alpha = 1.0 - target_specificity
    wanted = math.ceil(round((n + 1) * target_specificity, 9))
    j = min(max(wanted, 1), n)
    alpha = 1.0 - j / (n + 1)
    if j == n:
        rule = f"max leave-one-out normal score, k = {n}"
    else:
        rule = f"leave-one-out normal score {j} of {n} (conformal order statistic)"
    return ConformalThreshold(float(v[j - 1]), n, j, alpha, alpha <= target_alpha + 1e-12, rule)


#: The one decision rule of the toolkit: a score (or map value) strictly above the threshold is anomalous;
#: one equal to it is normal. The conformal bound needs ``>``: a new normal's leave-one-out rank exceeds
#: ``j`` with probability at most ``1 - j / (n + 1)``.
DECISION_RULE = "score > threshold"


def conformal_p_value(normal_scores: np.ndarray, score: float) -> float:
    """Conformal p-value of ``score`` among ``n`` leave-one-out normal scores (higher = more unusual).

    ``(1 + #{normal >= score}) / (n + 1)``: under exchangeability with the normals, the chance that a
    normal image scores at least as high. Its smallest value is ``1 / (n + 1)``, so a level ``α`` can only
    be reached with ``n >= 1/α − 1`` normals (19 for 0.05).

    Raises:
        ValueError: no normal score, or a non-finite one.
    """
    v = np.asarray(normal_scores, dtype=np.float64).ravel()
    if v.size == 0 or not np.isfinite(v).all() or not np.isfinite(score):
        msg = f"conformal p-value: got {v.size} normal score(s) (finite expected) and score {score!r}"
        raise ValueError(msg)
    return float((1 + np.count_nonzero(v >= score)) / (v.size + 1))


def is_anomalous(score: np.ndarray | float, threshold: float) -> np.ndarray | bool:
    """:data:`DECISION_RULE` applied to a score, or elementwise to an array of scores / map values."""
    out = np.asarray(score) > threshold
    return bool(out) if out.ndim == 0 else out


def decision_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Confusion counts and rates of :data:`DECISION_RULE` (``score > threshold`` ⇒ anomalous).

    Args:
        scores: ``(M,)`` image scores.
        labels: ``(M,)`` 0/1 ground truth.
        threshold: the operating point.

    Returns:
        ``tp, fp, tn, fn, sensitivity, specificity, ppv, npv, accuracy, f1`` (a rate is ``None`` when
        its denominator is 0).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    pred = is_anomalous(s, threshold)
    tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
    tn, fn = int(np.sum(~pred & ~y)), int(np.sum(~pred & y))

    def rate(num: int, den: int) -> float | None:
        return None if den == 0 else num / den

    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "sensitivity": rate(tp, tp + fn), "specificity": rate(tn, tn + fp),
        "ppv": rate(tp, tp + fp), "npv": rate(tn, tn + fn),
        "accuracy": rate(tp + tn, s.size), "f1": rate(2 * tp, 2 * tp + fp + fn),
    }
