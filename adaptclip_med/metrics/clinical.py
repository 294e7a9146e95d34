"""Clinical operating-point metrics with bootstrap confidence intervals.

``sensitivity_at_specificity``: the highest sensitivity of any threshold whose specificity is at least
the target (default 95 %). ``specificity_at_sensitivity``: the reverse. ``bootstrap_ci`` resamples
patients (groups) with replacement when group ids are known (unit ``"patient"``: every image of a
drawn patient comes along, so correlated images of one patient do not narrow the interval), images
otherwise (unit ``"image-level"``), and returns the percentile interval; replicates that miss one of
the two labels are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from adaptclip_med.metrics.functional import binary_counts
from adaptclip_med.metrics.result import MetricUndefinedError

_EPS = 1e-12


def sensitivity_at_specificity(scores: np.ndarray, labels: np.ndarray, target: float = 0.95) -> float:
    """Highest sensitivity with specificity >= ``target`` over the points of the ROC curve.

    Args:
        scores: ``(M,)`` image scores.
        labels: ``(M,)`` 0/1 labels.
        target: minimal specificity in (0, 1].

    Raises:
        MetricUndefinedError: only one label present.
    """
    _, tps, fps = binary_counts(scores, labels, "sensitivity@specificity")
    tpr = np.concatenate([[0.0], tps / tps[-1]])
    fpr = np.concatenate([[0.0], fps / fps[-1]])
    return float(np.max(tpr[fpr <= 1.0 - target + _EPS]))


def specificity_at_sensitivity(scores: np.ndarray, labels: np.ndarray, target: float = 0.95) -> float:
    """Highest specificity with sensitivity >= ``target``.

    Raises:
        MetricUndefinedError: only one label present.
    """
    _, tps, fps = binary_counts(scores, labels, "specificity@sensitivity")
    tpr = tps / tps[-1]
    spec = 1.0 - fps / fps[-1]
    return float(np.max(spec[tpr >= target - _EPS]))


@dataclass(frozen=True)
class BootstrapResult:
    """A point estimate with a percentile bootstrap interval.

    Attributes:
        value: the estimate on the full data.
        low / high: the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the replicates.
        level: confidence level (0.95).
        n_boot: replicates used (those with both labels).
        unit: ``"patient"`` when groups were resampled, ``"image-level"`` when no group id was known
            (every image resampled on its own; tables print the unit).
    """

    value: float
    low: float
    high: float
    level: float
    n_boot: int
    unit: str


def bootstrap_ci(
    stat: Callable[[np.ndarray, np.ndarray], float], scores: np.ndarray, labels: np.ndarray,
    groups: np.ndarray | None = None, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
) -> BootstrapResult:
    """Percentile bootstrap CI of ``stat(scores, labels)``, resampling groups when given.

    Args:
        stat: metric function ``(scores (M,), labels (M,)) -> float``.
        scores: ``(M,)`` image scores.
        labels: ``(M,)`` 0/1.
        groups: ``(M,)`` patient/study ids; ``None``/empty ids make an image its own group (all
            missing: image-level resampling).
        n_boot: number of replicates.
        level: confidence level.
        seed: RNG seed (deterministic results).

    Raises:
        MetricUndefinedError: the full data has one label only, or no replicate has both labels.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(np.int64).ravel()
    value = float(stat(s, y))
    ids = ["" if g is None else str(g) for g in (groups if groups is not None else [None] * s.size)]
    unit = "patient" if any(ids) else "image-level"
    # images without a group id are their own group
    ids = [g if g else f"\0image{i}" for i, g in enumerate(ids)]
    _, inverse = np.unique(np.asarray(ids), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)]
    rng = np.random.default_rng(seed)
    reps: list[float] = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[g] for g in pick])
        if y[idx].min() == y[idx].max():
            continue
        reps.append(float(stat(s[idx], y[idx])))
    if not reps:
        raise MetricUndefinedError("bootstrap: no replicate contained both normal and anomalous images")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return BootstrapResult(value, float(low), float(high), level, len(reps), unit)
