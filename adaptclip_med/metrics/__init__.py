"""Anomaly-detection metrics: pure functions, accumulators, clinical operating points.

Canonical names: I-AUROC, I-AUPR, I-F1max, P-AUROC, P-AUPR, P-F1max, AUPRO (paper), I-AP, P-AP (extra).
"""

from __future__ import annotations

from adaptclip_med.metrics.accumulators import ROI_METRICS, Evaluator, ImageAccumulator, PixelAccumulator
from adaptclip_med.metrics.binned import BinnedPixelHistogram, PerImagePixelCounts
from adaptclip_med.metrics.clinical import (
    BootstrapResult,
    bootstrap_ci,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)
from adaptclip_med.metrics.compare import (
    FriedmanNemenyi,
    PairedComparison,
    delong_test,
    friedman_nemenyi,
    holm,
    paired_bootstrap,
    paired_bootstrap_pixels,
    placements,
    pooled_pixels,
)
from adaptclip_med.metrics.functional import (
    aupr,
    aupro,
    auroc,
    average_precision,
    f1_max,
    positive_region_weights,
    region_weights,
)
from adaptclip_med.metrics.operating_point import (
    DECISION_RULE,
    ConformalThreshold,
    OperatingPoint,
    calibrate_threshold,
    conformal_threshold,
    decision_metrics,
    is_anomalous,
)
from adaptclip_med.metrics.result import (
    ALL_METRICS,
    EXTRA_METRICS,
    IMAGE_METRICS,
    PAPER_METRICS,
    PIXEL_METRICS,
    MetricUndefinedError,
    MetricValue,
    canonical_metric,
)

__all__ = [
    "ALL_METRICS",
    "DECISION_RULE",
    "EXTRA_METRICS",
    "IMAGE_METRICS",
    "PAPER_METRICS",
    "PIXEL_METRICS",
    "ROI_METRICS",
    "BinnedPixelHistogram",
    "BootstrapResult",
    "ConformalThreshold",
    "Evaluator",
    "FriedmanNemenyi",
    "ImageAccumulator",
    "MetricUndefinedError",
    "MetricValue",
    "OperatingPoint",
    "PairedComparison",
    "PerImagePixelCounts",
    "PixelAccumulator",
    "aupr",
    "aupro",
    "auroc",
    "average_precision",
    "bootstrap_ci",
    "calibrate_threshold",
    "canonical_metric",
    "conformal_threshold",
    "decision_metrics",
    "delong_test",
    "f1_max",
    "friedman_nemenyi",
    "holm",
    "is_anomalous",
    "paired_bootstrap",
    "paired_bootstrap_pixels",
    "placements",
    "pooled_pixels",
    "positive_region_weights",
    "region_weights",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
]
