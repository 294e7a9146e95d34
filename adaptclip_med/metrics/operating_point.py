"""Operating point: a decision threshold calibrated from normal prompts alone.

With ``k >= 2`` normal prompts, each prompt is scored with the other ``k - 1`` as its prompt set
(leave-one-out); the image threshold is the smallest LOO score with at least ``target_specificity`` of
the LOO scores at or below it (``numpy.quantile(..., method="higher")``), and the pixel threshold is the
same quantile of all LOO map pixels at ``pixel_specificity``. A score above the threshold is
called anomalous. With fewer than two prompts there is nothing to leave out: the operating point is
not available (the run records why).
"""

from __future__ import annotations

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
        n_normals: number of normal calibration images (the k prompts).
        method: how the calibration scores were obtained.
    """

    image_threshold: float
    pixel_threshold: float
    target_specificity: float
    pixel_specificity: float
    n_normals: int
    method: str = "leave-one-out over the k normal prompts"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


def calibrate_threshold(normal_values: np.ndarray, target_specificity: float = 0.95) -> float:
    """Threshold such that at least ``target_specificity`` of ``normal_values`` lie at or below it.

    Args:
        normal_values: ``(M,)`` (any shape) scores or map values of normal images only.
        target_specificity: in (0, 1].

    Raises:
        ValueError: empty input or a target outside (0, 1].
    """
    v = np.asarray(normal_values, dtype=np.float64).ravel()
    if v.size == 0:
        msg = "threshold calibration: got no normal scores; expected at least one"
        raise ValueError(msg)
    if not 0.0 < target_specificity <= 1.0:
        msg = f"threshold calibration: got target_specificity={target_specificity}; expected (0, 1]"
        raise ValueError(msg)
    return float(np.quantile(v, target_specificity, method="higher"))


def decision_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Confusion counts and rates of the rule ``score > threshold`` ⇒ anomalous.

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
    pred = s > threshold
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
