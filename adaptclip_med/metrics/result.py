"""Metric values that can be "not applicable", and the canonical metric names.

A metric that is undefined for a set (no masks, only one image label, ...) is never a number: it is a
:class:`MetricValue` with ``value=None`` and a human-readable ``reason``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from adaptclip_med.runtime.errors import AdaptCLIPError

#: The paper's metrics, in table order (AUPR = trapezoidal area under the PR curve).
PAPER_METRICS: tuple[str, ...] = ("I-AUROC", "I-AUPR", "I-F1max", "P-AUROC", "P-AUPR", "P-F1max", "AUPRO")
#: Extra metrics: step-wise average precision (sklearn ``average_precision_score``), labelled as AP.
EXTRA_METRICS: tuple[str, ...] = ("I-AP", "P-AP")
ALL_METRICS: tuple[str, ...] = PAPER_METRICS + EXTRA_METRICS
IMAGE_METRICS: tuple[str, ...] = ("I-AUROC", "I-AUPR", "I-F1max", "I-AP")
PIXEL_METRICS: tuple[str, ...] = ("P-AUROC", "P-AUPR", "P-F1max", "AUPRO", "P-AP")

#: Aliases users know from anomalib / other papers -> our canonical names.
METRIC_ALIASES: dict[str, str] = {
    "image_AUROC": "I-AUROC", "image_AUPR": "I-AUPR", "image_F1Max": "I-F1max",
    "pixel_AUROC": "P-AUROC", "pixel_AUPR": "P-AUPR", "pixel_F1Max": "P-F1max",
    "P-AUPRO": "AUPRO", "pixel_AUPRO": "AUPRO",
}


class MetricUndefinedError(AdaptCLIPError, ValueError):
    """A metric cannot be computed for the given data (e.g. only one label present)."""


@dataclass(frozen=True)
class MetricValue:
    """One metric result.

    Attributes:
        value: the metric in [0, 1], or ``None`` when not applicable.
        reason: why the metric is not applicable (``None`` when it has a value).
        bound: upper bound of the absolute error of an approximate (binned) value; 0.0 when exact.
    """

    value: float | None
    reason: str | None = None
    bound: float = 0.0

    @classmethod
    def na(cls, reason: str) -> MetricValue:
        """A not-applicable result with its reason."""
        return cls(value=None, reason=reason)

    @property
    def is_na(self) -> bool:
        """True when the metric is not applicable."""
        return self.value is None

    def as_float(self) -> float:
        """The value, or NaN when not applicable (for pandas columns)."""
        return math.nan if self.value is None else float(self.value)


def canonical_metric(name: str) -> str:
    """Map an alias (``image_AUROC``, ``P-AUPRO``, ...) to the canonical metric name.

    Raises:
        ValueError: the name is neither canonical nor a known alias.
    """
    if name in ALL_METRICS:
        return name
    if name in METRIC_ALIASES:
        return METRIC_ALIASES[name]
    msg = (f"unknown metric name {name!r}; expected one of {', '.join(ALL_METRICS)} "
           f"or an alias {sorted(METRIC_ALIASES)}")
    raise ValueError(msg)
