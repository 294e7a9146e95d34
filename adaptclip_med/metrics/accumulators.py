"""Stateful accumulators: add batches, then ``compute()`` every metric as a :class:`MetricValue`.

``ImageAccumulator`` keeps the image scores (small). ``PixelAccumulator`` keeps maps exactly while they
fit a pixel budget (``mode="auto"``), then folds them into a :class:`BinnedPixelHistogram` (range taken
from the data, nothing clipped) and streams, reporting an error bound that covers every pixel;
``mode="exact"`` never bins, ``mode="binned"`` always does. ``Evaluator`` combines both and
returns the paper's keys (``I-AUROC`` ... ``AUPRO``) plus the labelled extras (``I-AP``, ``P-AP``) and,
with an ROI, the pixel metrics on the ROI's pixels only (``P-AUROC@roi`` ...: :data:`ROI_METRICS`).
"""

from __future__ import annotations

import numpy as np

from adaptclip_med.metrics import functional as F
from adaptclip_med.metrics.binned import DEFAULT_BINS, BinnedPixelHistogram
from adaptclip_med.metrics.curves import (
    aupr_from_curve,
    average_precision_from_curve,
    f1_max_from_counts,
    pixel_counts,
    pr_curve_from_counts,
    pro_auc_from_counts,
    roc_auc_from_counts,
)
from adaptclip_med.metrics.result import IMAGE_METRICS, PIXEL_METRICS, MetricUndefinedError, MetricValue

PIXEL_MODES = ("auto", "exact", "binned")
#: Pixels kept exactly in ``auto`` mode before switching to binning (~ 150 maps of 518 × 518).
DEFAULT_EXACT_MAX_PIXELS = 40_000_000
#: The pixel metrics computed on the pixels inside a per-image ROI only (``Evaluator(roi=True)``).
ROI_METRICS: tuple[str, ...] = tuple(f"{m}@roi" for m in PIXEL_METRICS)


def _safe(fn: object, *args: object) -> MetricValue:
    try:
        return MetricValue(float(fn(*args)))  # type: ignore[operator]
    except MetricUndefinedError as err:
        return MetricValue.na(str(err).split(": ", 1)[-1])


class ImageAccumulator:
    """Image-level scores and labels; computes I-AUROC, I-AUPR, I-AP, I-F1max."""

    def __init__(self) -> None:
        self.scores: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add ``scores (B,)`` and 0/1 ``labels (B,)``."""
        self.scores.append(np.asarray(scores, dtype=np.float64).ravel())
        self.labels.append(np.asarray(labels).astype(np.int64).ravel())

    def compute(self) -> dict[str, MetricValue]:
        """The image metrics; N/A with the reason when only one label is present."""
        s = np.concatenate(self.scores) if self.scores else np.zeros(0)
        y = np.concatenate(self.labels) if self.labels else np.zeros(0, dtype=np.int64)
        if y.size and not np.any(y == 0):
            return {k: MetricValue.na("no normal images in this set") for k in IMAGE_METRICS}
        if not np.any(y == 1):
            return {k: MetricValue.na("no anomalous images in this set") for k in IMAGE_METRICS}
        return {
            "I-AUROC": _safe(F.auroc, s, y), "I-AUPR": _safe(F.aupr, s, y),
            "I-F1max": _safe(F.f1_max, s, y), "I-AP": _safe(F.average_precision, s, y),
        }


class PixelAccumulator:
    """Pixel metrics over all maps of a class (pooled), exact or binned.

    Args:
        mode: ``"auto"`` (exact up to ``exact_max_pixels``, then binned), ``"exact"`` or ``"binned"``.
        n_bins: bins of the streaming histogram (a power of two).
        value_range: initial score range of the bins; it widens to cover every score (never clips).
        exact_max_pixels: pixel budget of the exact store in ``auto`` mode.
        fpr_limit: AUPRO integration limit.
    """

    def __init__(
        self, mode: str = "auto", n_bins: int = DEFAULT_BINS, value_range: tuple[float, float] = (0.0, 1.0),
        exact_max_pixels: int = DEFAULT_EXACT_MAX_PIXELS, fpr_limit: float = 0.3,
    ) -> None:
        if mode not in PIXEL_MODES:
            msg = f"pixel metric mode: got {mode!r}; expected one of {PIXEL_MODES}"
            raise ValueError(msg)
        self.mode, self.fpr_limit, self.exact_max_pixels = mode, fpr_limit, exact_max_pixels
        self.hist: BinnedPixelHistogram | None = None
        self._hist_args = (n_bins, value_range)
        self.maps: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        #: ROI mode (the first update had an ROI): per batch, the kept pixels' PRO weights and region count
        self.roi_weights: list[tuple[np.ndarray, int]] | None = None
        self.n_pixels = 0
        if mode == "binned":
            self.hist = BinnedPixelHistogram(*self._hist_args)

    @property
    def binned(self) -> bool:
        """True once the accumulator streams into histograms."""
        return self.hist is not None

    def update(self, maps: np.ndarray, masks: np.ndarray, roi: np.ndarray | None = None) -> None:
        """Add anomaly maps ``(B, H, W)`` and binary masks ``(B, H, W)``.

        ``roi``: optional ``(B, H, W)`` bool region per image; only its pixels enter the counts (a lesion is
        the part of its ground-truth region inside the ROI; one partly outside counts by that part, one wholly
        outside not at all). An accumulator given an ROI once takes one with every update (None = the
        whole image); one first given none refuses an ROI later.
        """
        a = np.asarray(maps, dtype=np.float32)
        m = np.asarray(masks).astype(bool)
        if a.shape != m.shape:
            msg = f"pixel metrics: maps have shape {a.shape} and masks {m.shape}; expected equal shapes"
            raise ValueError(msg)
        if not np.isfinite(a).all():
            msg = "pixel metrics: anomaly maps contain NaN or inf; expected finite values (check the model output)"
            raise ValueError(msg)
        if roi is not None or self.roi_weights is not None:
            self._update_roi(a, m, np.ones(a.shape, dtype=bool) if roi is None else np.asarray(roi).astype(bool))
            return
        if self.hist is not None:
            self._fold(a, m)
            return
        self.maps.append(a)
        self.masks.append(m)
        self.n_pixels += a.size
        if self.mode == "auto" and self.n_pixels > self.exact_max_pixels:
            self.hist = BinnedPixelHistogram(*self._hist_args)
            for a_i, m_i in zip(self.maps, self.masks, strict=True):
                self._fold(a_i, m_i)
            self.maps, self.masks = [], []

    def _update_roi(self, a: np.ndarray, m: np.ndarray, r: np.ndarray) -> None:
        """ROI mode: keep (exact) or bin only the ROI's pixels, with the PRO weights of the lesions inside it."""
        if r.shape != a.shape:
            msg = f"pixel metrics: maps have shape {a.shape} and the ROI {r.shape}; expected equal shapes"
            raise ValueError(msg)
        if self.roi_weights is None:
            if self.maps or (self.hist is not None and self.hist.seen is not None):
                msg = "pixel metrics: an ROI after updates without one; give every update its ROI (or none)"
                raise ValueError(msg)
            self.roi_weights = []
        m = m & r
        weights, n_regions = F.region_weights(m)
        a, m, w = a[r], m[r], weights[r]
        if self.hist is not None:
            self.hist.update(a, m, w, n_regions)
            return
        self.maps.append(a)
        self.masks.append(m)
        self.roi_weights.append((w, n_regions))
        self.n_pixels += a.size
        if self.mode == "auto" and self.n_pixels > self.exact_max_pixels:
            self.hist = BinnedPixelHistogram(*self._hist_args)
            for a_i, m_i, (w_i, n_i) in zip(self.maps, self.masks, self.roi_weights, strict=True):
                self.hist.update(a_i, m_i, w_i, n_i)
            self.maps, self.masks, self.roi_weights = [], [], []

    def _fold(self, a: np.ndarray, m: np.ndarray) -> None:
        weights, n_regions = F.region_weights(m)
        if self.hist is None:  # pragma: no cover - guarded by the callers
            self.hist = BinnedPixelHistogram(*self._hist_args)
        self.hist.update(a, m, weights, n_regions)

    def compute(self) -> dict[str, MetricValue]:
        """P-AUROC, P-AUPR, P-AP, P-F1max, AUPRO (``bound`` > 0 when binned)."""
        if self.hist is not None:
            return self.hist.compute(self.fpr_limit)
        if not self.maps:
            return {k: MetricValue.na("no maps were added") for k in PIXEL_METRICS}
        roi = self.roi_weights is not None
        flat = (lambda x: x.ravel()) if roi else (lambda x: x.reshape(-1, *x.shape[-2:]))
        a = np.concatenate([flat(x) for x in self.maps])
        m = np.concatenate([flat(x) for x in self.masks])
        where = " inside the ROI" if roi else ""
        if not m.any():
            return {k: MetricValue.na(f"no anomalous pixel{where} in the ground-truth masks") for k in PIXEL_METRICS}
        if m.all():
            return {k: MetricValue.na(f"no normal pixel{where} in the ground-truth masks") for k in PIXEL_METRICS}
        if roi:
            weights = np.concatenate([w for w, _ in self.roi_weights])[m]
            n_regions = sum(n for _, n in self.roi_weights)
        else:
            weights, n_regions = F.positive_region_weights(m)
        # one value sort serves every pixel metric (same formulas as the functional versions)
        return exact_pixel_metrics(*pixel_counts(a, m, weights), n_regions, self.fpr_limit)


def exact_pixel_metrics(tps: np.ndarray, fps: np.ndarray, pro: np.ndarray, n_regions: int,
                        fpr_limit: float = 0.3) -> dict[str, MetricValue]:
    """The exact pixel metrics from the counts ``(T,)`` of :func:`~adaptclip_med.metrics.curves.pixel_counts`.

    Args:
        tps / fps / pro: cumulative positives, negatives and region weight at each descending threshold
            (both classes present).
        n_regions: ground-truth regions (the weights' total); fpr_limit: AUPRO integration limit.
    """
    pr_curve = pr_curve_from_counts(tps, fps)  # one curve for P-AUPR and P-AP
    return {
        "P-AUROC": MetricValue(roc_auc_from_counts(tps, fps)),
        "P-AUPR": MetricValue(aupr_from_curve(*pr_curve)),
        "P-AP": MetricValue(average_precision_from_curve(*pr_curve)),
        "P-F1max": MetricValue(f1_max_from_counts(tps, fps)[0]),
        "AUPRO": MetricValue(pro_auc_from_counts(fps / fps[-1], pro / n_regions, fpr_limit)),
    }


class Evaluator:
    """Image and pixel metrics of one class (one prompt seed, one shot count).

    Args:
        has_masks: the set has ground-truth masks; when False the pixel metrics are N/A.
        roi: also compute :data:`ROI_METRICS` in :attr:`pixel_roi` (fed by the caller with each map's ROI).
        pixel_mode / n_bins / value_range / exact_max_pixels / fpr_limit: see :class:`PixelAccumulator`.
    """

    def __init__(self, has_masks: bool = True, pixel_mode: str = "auto", n_bins: int = DEFAULT_BINS,
                 value_range: tuple[float, float] = (0.0, 1.0),
                 exact_max_pixels: int = DEFAULT_EXACT_MAX_PIXELS, fpr_limit: float = 0.3, roi: bool = False) -> None:
        self.has_masks, self.roi = has_masks, roi
        self.image = ImageAccumulator()
        self.pixel: PixelAccumulator | None = None
        self.pixel_roi: PixelAccumulator | None = None
        if has_masks:
            self.pixel = PixelAccumulator(pixel_mode, n_bins, value_range, exact_max_pixels, fpr_limit)
            if roi:
                self.pixel_roi = PixelAccumulator(pixel_mode, n_bins, value_range, exact_max_pixels, fpr_limit)

    def update(self, scores: np.ndarray, labels: np.ndarray, maps: np.ndarray | None = None,
               masks: np.ndarray | None = None) -> None:
        """Add ``scores (B,)``, ``labels (B,)`` and, for sets with masks, ``maps``/``masks (B, H, W)``."""
        self.image.update(scores, labels)
        if self.pixel is not None and maps is not None and masks is not None:
            self.pixel.update(maps, masks)

    def compute(self) -> dict[str, MetricValue]:
        """Every metric of :data:`ALL_METRICS` (and :data:`ROI_METRICS` with ``roi``), N/A with the reason
        where undefined."""
        out = self.image.compute()
        if self.pixel is None:
            reason = "no ground-truth masks (classification-only set)"
            out.update({k: MetricValue.na(reason) for k in (*PIXEL_METRICS, *(ROI_METRICS if self.roi else ()))})
        else:
            out.update(self.pixel.compute())
        if self.pixel_roi is not None:
            out.update({f"{k}@roi": v for k, v in self.pixel_roi.compute().items()})
        return out
