"""Streaming (binned) pixel metrics with a computed error bound that covers every pixel.

Scores are counted into ``n_bins`` equal-width bins whose range is taken from the data: it starts at
``value_range`` (a hint) and widens, by doubling, whenever a batch holds a score outside it (e.g. few-shot
fused maps above 1). Widening merges neighbouring bin pairs and adds empty bins on the side that grew,
so no count is ever re-read, moved out of order or clipped. The range stays dyadic (width a power of two,
edges exact binary fractions), so folding old bins and binning new scores give the same partition.
Memory is ``O(n_bins)`` whatever the number of maps. Each bin is treated as one threshold, so the result
is exactly the metric of the bin-quantised maps; the true (exact) value differs from it by at most a
bound computed from the same histograms (every pixel is in its true-order bin, so the bound includes all):

* AUROC: ``0.5 · Σ_b ΔTPR_b · ΔFPR_b`` (pairs of one positive and one negative tied in a bin);
* AUPRO: ``Σ_b ΔFPR_b · ΔPRO_b / (2 · fpr_limit)`` over the bins inside the FPR limit (the exact curve is
  monotone, so inside a bin it stays in the box spanned by the bin's end points);
* AUPR / AP: ``Σ_b ΔR_b · (P_max,b − P_min,b)`` with the precision range reachable inside each bin;
* F1max: the largest F1 any threshold inside a bin could reach, minus the binned F1max.

With the default 2^16 bins the bounds are typically < 1e-4 on 518×518 maps in [0, 1] (each doubling of
the range halves the resolution); they are reported next to each value (``MetricValue.bound``).
"""

from __future__ import annotations

import math

import numpy as np

from adaptclip_med.metrics.curves import (
    aupr_from_counts,
    average_precision_from_counts,
    f1_max_from_counts,
    pro_auc_from_counts,
    roc_auc_from_counts,
)
from adaptclip_med.metrics.result import MetricValue

DEFAULT_BINS = 1 << 16


def _dyadic_range(low: float, high: float, n_bins: int) -> tuple[float, float]:
    """The smallest ``(low', width)`` covering ``[low, high]`` with ``width`` a power of two and ``low'``
    a multiple of the bin width ``width / n_bins`` (so every bin edge is an exact binary fraction)."""
    width = 2.0 ** math.ceil(math.log2(high - low))
    while True:
        step = width / n_bins
        start = math.floor(low / step) * step
        if start + width >= high:
            return start, width
        width *= 2.0


class BinnedPixelHistogram:
    """Histograms of positive / negative pixel counts and PRO weights per score bin, range from the data.

    Args:
        n_bins: number of equal-width bins (a power of two, so the range can double by merging pairs).
        value_range: ``(low, high)`` initial score range (widened to a dyadic range and, as scores
            arrive, to cover every score; nothing is clipped).

    Attributes:
        low, width: current range ``[low, low + width]``: bins ``[e_i, e_i+1)`` plus one last slot for
            scores exactly equal to ``low + width`` (e.g. saturated probabilities of 1.0).
        pos, neg, pro: ``(n_bins + 1,)`` positive / negative counts and PRO weights per bin.
        seen: the smallest and largest score added.
    """

    def __init__(self, n_bins: int = DEFAULT_BINS, value_range: tuple[float, float] = (0.0, 1.0)) -> None:
        low, high = float(value_range[0]), float(value_range[1])
        if not (math.isfinite(low) and math.isfinite(high) and high > low) or n_bins < 2 or n_bins & (n_bins - 1):
            msg = (f"binned metrics: got value_range={value_range}, n_bins={n_bins}; "
                   "expected finite low < high and n_bins a power of two >= 2")
            raise ValueError(msg)
        self.n_bins = int(n_bins)
        self.low, self.width = _dyadic_range(low, high, self.n_bins)
        self.pos = np.zeros(self.n_bins + 1, dtype=np.float64)
        self.neg = np.zeros(self.n_bins + 1, dtype=np.float64)
        self.pro = np.zeros(self.n_bins + 1, dtype=np.float64)
        self.n_regions = 0
        self.seen: tuple[float, float] | None = None
        self.doublings = 0

    @property
    def high(self) -> float:
        """Upper end (inclusive: its own slot) of the current range."""
        return self.low + self.width

    def _double(self, downward: bool) -> None:
        """Double the range: merge bin pairs, add ``n_bins / 2`` empty bins below or above.

        Growing upwards, the scores that sat exactly at the old upper end open the first new bin.
        """
        half = self.n_bins // 2
        for name in ("pos", "neg", "pro"):
            counts = getattr(self, name)
            merged, at_high = counts[:-1].reshape(half, 2).sum(1), counts[-1:]
            empty = np.zeros(half, dtype=np.float64)
            if downward:
                grown = np.concatenate([empty, merged, at_high])
            else:
                grown = np.concatenate([merged, at_high, empty[1:], [0.0]])
            setattr(self, name, grown)
        if downward:
            self.low -= self.width
        self.width *= 2.0
        self.doublings += 1

    def cover(self, vmin: float, vmax: float) -> None:
        """Widen the range until ``low <= vmin`` and ``vmax <= high`` (finite values only)."""
        while vmax > self.high:
            self._double(downward=False)
        while vmin < self.low:
            self._double(downward=True)
        lo, hi = self.seen or (vmin, vmax)
        self.seen = (min(lo, vmin), max(hi, vmax))

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each value, ``(M,)`` int64, after widening the range to cover them all.

        Raises:
            ValueError: NaN or infinite scores (they have no place in any ranking).
        """
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return np.zeros(0, dtype=np.int64)
        vmin, vmax = float(v.min()), float(v.max())
        if not (math.isfinite(vmin) and math.isfinite(vmax)):
            msg = "pixel metrics: anomaly maps contain NaN or inf; expected finite values (check the model output)"
            raise ValueError(msg)
        self.cover(vmin, vmax)
        idx = np.floor((v - self.low) * (self.n_bins / self.width)).astype(np.int64)
        return np.clip(idx, 0, self.n_bins)  # a no-op: every value is inside the range

    def update(self, maps: np.ndarray, masks: np.ndarray, weights: np.ndarray, n_regions: int) -> None:
        """Add maps ``(B, H, W)``, binary masks and PRO weights ``(B, H, W)`` (see ``region_weights``)."""
        idx = self.bin_index(maps)
        m = np.asarray(masks).astype(bool).ravel()
        self.pos += np.bincount(idx[m], minlength=self.n_bins + 1)
        self.neg += np.bincount(idx[~m], minlength=self.n_bins + 1)
        w = np.asarray(weights, dtype=np.float64).ravel()
        self.pro += np.bincount(idx, weights=w, minlength=self.n_bins + 1)
        self.n_regions += int(n_regions)

    def _descending(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keep = (self.pos + self.neg) > 0
        pos, neg, pro = self.pos[keep][::-1], self.neg[keep][::-1], self.pro[keep][::-1]
        return np.cumsum(pos), np.cumsum(neg), np.cumsum(pro)

    def compute(self, fpr_limit: float = 0.3) -> dict[str, MetricValue]:
        """P-AUROC, P-AUPR, P-AP, P-F1max and AUPRO with their error bounds."""
        out: dict[str, MetricValue] = {}
        tps, fps, pro = self._descending()
        if tps.size == 0 or tps[-1] == 0:
            reason = "no anomalous pixel in the ground-truth masks"
            return {k: MetricValue.na(reason) for k in ("P-AUROC", "P-AUPR", "P-AP", "P-F1max", "AUPRO")}
        if fps[-1] == 0:
            reason = "no normal pixel in the ground-truth masks"
            return {k: MetricValue.na(reason) for k in ("P-AUROC", "P-AUPR", "P-AP", "P-F1max", "AUPRO")}
        tp0, fp0 = np.concatenate([[0.0], tps]), np.concatenate([[0.0], fps])
        tpr, fpr = tp0 / tps[-1], fp0 / fps[-1]
        roc_bound = float(0.5 * np.sum(np.diff(tpr) * np.diff(fpr)))
        out["P-AUROC"] = MetricValue(roc_auc_from_counts(tps, fps), bound=roc_bound)
        pr_bound = _pr_bound(tp0, fp0)
        out["P-AUPR"] = MetricValue(aupr_from_counts(tps, fps), bound=pr_bound)
        out["P-AP"] = MetricValue(average_precision_from_counts(tps, fps), bound=pr_bound)
        f1, _ = f1_max_from_counts(tps, fps)
        denom = tp0[1:] + fp0[:-1] + tps[-1]
        f1_hi = float(np.max(2.0 * tp0[1:] / denom))
        out["P-F1max"] = MetricValue(f1, bound=max(0.0, f1_hi - f1))
        if self.n_regions == 0:
            out["AUPRO"] = MetricValue.na("no anomalous region in the ground-truth masks")
        else:
            pro_rate = np.concatenate([[0.0], pro / self.n_regions])
            inside = fpr[:-1] < fpr_limit
            box = np.sum(np.diff(fpr)[inside] * np.diff(pro_rate)[inside]) / (2.0 * fpr_limit)
            value = pro_auc_from_counts(fpr[1:], pro_rate[1:], fpr_limit)
            out["AUPRO"] = MetricValue(value, bound=float(box))
        return out


def _pr_bound(tp0: np.ndarray, fp0: np.ndarray) -> float:
    """Σ_b ΔR_b (P_max,b − P_min,b) over bins, from cumulative counts with a leading 0."""
    positives = tp0[-1]
    ta, tb, fa, fb = tp0[:-1], tp0[1:], fp0[:-1], fp0[1:]
    p_min = np.divide(ta, ta + fb, out=np.zeros_like(ta), where=(ta + fb) > 0)
    p_max = np.divide(tb, tb + fa, out=np.ones_like(tb), where=(tb + fa) > 0)
    p_max = np.where(ta == 0, 1.0, p_max)  # the curve starts at precision 1, recall 0
    return float(np.sum((tb - ta) / positives * (p_max - p_min)))
