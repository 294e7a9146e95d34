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

:class:`PerImagePixelCounts` keeps the same counts *per image* on one shared grid (2^12 bins by default),
so that any draw of images — a bootstrap replicate — pools into a :class:`BinnedPixelHistogram` by a
weighted sum of rows (:meth:`PerImagePixelCounts.pooled`, :meth:`PerImagePixelCounts.pooled_many`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adaptclip_med.metrics.curves import (
    aupr_from_counts,
    average_precision_from_counts,
    f1_max_from_counts,
    pro_auc_from_counts,
    roc_auc_from_counts,
)
from adaptclip_med.metrics.functional import region_weights
from adaptclip_med.metrics.result import MetricValue

DEFAULT_BINS = 1 << 16
#: Bins of :class:`PerImagePixelCounts` (one row of ``3 × (n_bins + 1)`` numbers per image).
PER_IMAGE_BINS = 1 << 12


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

    @classmethod
    def from_counts(cls, low: float, width: float, pos: np.ndarray, neg: np.ndarray, pro: np.ndarray,
                    n_regions: int) -> BinnedPixelHistogram:
        """A histogram on the dyadic grid ``[low, low + width]`` holding the given ``(n_bins + 1,)`` counts."""
        hist = cls(pos.size - 1, (low, low + width))
        hist.low, hist.width = low, width
        hist.pos, hist.neg, hist.pro = (np.asarray(x, dtype=np.float64) for x in (pos, neg, pro))
        hist.n_regions = int(n_regions)
        return hist

    @property
    def high(self) -> float:
        """Upper end (inclusive: its own slot) of the current range."""
        return self.low + self.width

    def _double(self, downward: bool) -> None:
        """Double the range: merge bin pairs, add ``n_bins / 2`` empty bins below or above.

        Growing upwards, the scores that sat exactly at the old upper end open the first new bin.
        """
        for name in ("pos", "neg", "pro"):
            setattr(self, name, _doubled(getattr(self, name), downward))
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
        pos, neg, pro = _bin_counts(self.bin_index(maps), masks, weights, self.n_bins + 1)
        self.pos += pos
        self.neg += neg
        self.pro += pro
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


class PerImagePixelCounts:
    """Each image's positive / negative pixel counts and PRO weights on one shared dyadic bin grid.

    The grid is a :class:`BinnedPixelHistogram`'s: it starts at ``value_range`` and doubles whenever an
    image holds a score outside it, folding every stored row with it. Summing the rows of any multiset of
    images gives exactly the histogram of those images' pooled pixels, so a bootstrap replicate costs one
    weighted sum, and its metrics carry the binning bound of :meth:`BinnedPixelHistogram.compute`.

    Args:
        n_bins: bins of the grid (a power of two).
        value_range: initial score range.

    Attributes:
        ids: the images' ids, in the order added.
    """

    def __init__(self, n_bins: int = PER_IMAGE_BINS, value_range: tuple[float, float] = (0.0, 1.0)) -> None:
        self._grid = _RowsGrid(self, n_bins, value_range)
        self.ids: list[int] = []
        self._rows: list[np.ndarray] = []  # per image (3, n_bins + 1): positives, negatives, PRO weights
        self._regions: list[int] = []
        self._stacked: np.ndarray | None = None

    @property
    def n_bins(self) -> int:
        return self._grid.n_bins

    @property
    def low(self) -> float:
        return self._grid.low

    @property
    def width(self) -> float:
        return self._grid.width

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, image_id: int, amap: np.ndarray, mask: np.ndarray) -> None:
        """Count one image's map ``(H, W)`` against its binary mask ``(H, W)`` (all False for a normal image).

        Raises:
            ValueError: NaN or infinite scores.
        """
        idx = self._grid.bin_index(amap)  # widens the grid (and folds the rows) to cover the map
        weights, n_regions = region_weights(mask)
        self._rows.append(np.stack(_bin_counts(idx, mask, weights, self.n_bins + 1)))
        self._regions.append(int(n_regions))
        self.ids.append(int(image_id))
        self._stacked = None

    def fold(self, downward: bool) -> None:
        """Fold every row onto the doubled grid (called by the grid when it doubles)."""
        self._rows = [_doubled(r, downward) for r in self._rows]
        self._stacked = None

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(counts (M, 3, n_bins + 1), regions (M,))``: positives, negatives, PRO weights; region counts."""
        if self._stacked is None:
            self._stacked = np.stack(self._rows) if self._rows else np.zeros((0, 3, self.n_bins + 1))
        return self._stacked, np.asarray(self._regions, dtype=np.int64)

    def pooled(self, times: np.ndarray | None = None) -> BinnedPixelHistogram:
        """The histogram of every image taken ``times[i]`` times ``(M,)`` (each once: None)."""
        return self.pooled_many(np.ones((1, len(self))) if times is None else np.asarray(times)[None])[0]

    def pooled_many(self, times: np.ndarray) -> list[BinnedPixelHistogram]:
        """One pooled histogram per row of ``times (R, M)`` (one matrix product for all ``R`` draws)."""
        counts, regions = self.rows()
        w = np.asarray(times, dtype=np.float64)
        sums = (w @ counts.reshape(len(self), -1)).reshape(len(w), 3, -1)
        n_regions = w @ regions.astype(np.float64)
        return [BinnedPixelHistogram.from_counts(self.low, self.width, *c, round(n)) for c, n in zip(sums, n_regions,
                                                                                                    strict=True)]

    def save(self, path: Any) -> None:
        """Write ``ids``, ``counts``, ``regions`` and the grid to an ``.npz`` (compressed) at ``path``."""
        counts, regions = self.rows()
        np.savez_compressed(path, ids=np.asarray(self.ids, dtype=np.int64), counts=counts, regions=regions,
                            grid=np.array([self.low, self.width, self.n_bins], dtype=np.float64))

    @classmethod
    def load(cls, path: Any) -> PerImagePixelCounts:
        """Read what :meth:`save` wrote."""
        with np.load(path) as z:
            low, width, n_bins = (float(x) for x in z["grid"])
            return cls._on_grid(int(n_bins), low, width, z["ids"].tolist(), list(z["counts"]),
                                z["regions"].tolist())

    def select(self, ids: list[int]) -> PerImagePixelCounts:
        """The images with these ids, in this order (same grid).

        Raises:
            KeyError: an id that was not added.
        """
        at = {i: j for j, i in enumerate(self.ids)}
        return self._on_grid(self.n_bins, self.low, self.width, list(ids), [self._rows[at[i]] for i in ids],
                             [self._regions[at[i]] for i in ids])

    @classmethod
    def _on_grid(cls, n_bins: int, low: float, width: float, ids: list[int], rows: list[np.ndarray],
                 regions: list[int]) -> PerImagePixelCounts:
        out = cls(n_bins)
        out._grid.low, out._grid.width = low, width
        out.ids, out._rows, out._regions = ids, rows, regions
        return out


class _RowsGrid(BinnedPixelHistogram):
    """The grid of a :class:`PerImagePixelCounts`: a histogram whose doublings also fold the owner's rows."""

    def __init__(self, owner: PerImagePixelCounts, n_bins: int, value_range: tuple[float, float]) -> None:
        super().__init__(n_bins, value_range)
        self.owner = owner

    def _double(self, downward: bool) -> None:
        self.owner.fold(downward)
        super()._double(downward)


def _bin_counts(idx: np.ndarray, masks: np.ndarray, weights: np.ndarray, size: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive and negative pixel counts and PRO weight per bin ``(size,)`` each, from the pixels' bin
    indices ``(P,)``, their masks and weights (any shape of ``P`` elements)."""
    m = np.asarray(masks).astype(bool).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    return (np.bincount(idx[m], minlength=size).astype(np.float64), np.bincount(idx[~m], minlength=size)
            .astype(np.float64), np.bincount(idx, weights=w, minlength=size))


def _doubled(counts: np.ndarray, downward: bool) -> np.ndarray:
    """Counts ``(..., n_bins + 1)`` on a range twice as wide: bin pairs merged, ``n_bins / 2`` empty bins added
    below (``downward``) or above; growing upwards, the old upper-end slot opens the first new bin."""
    half = (counts.shape[-1] - 1) // 2
    merged = counts[..., :-1].reshape(*counts.shape[:-1], half, 2).sum(-1)
    at_high = counts[..., -1:]
    empty = np.zeros((*counts.shape[:-1], half), dtype=counts.dtype)
    if downward:
        return np.concatenate([empty, merged, at_high], axis=-1)
    return np.concatenate([merged, at_high, empty], axis=-1)


def _pr_bound(tp0: np.ndarray, fp0: np.ndarray) -> float:
    """Σ_b ΔR_b (P_max,b − P_min,b) over bins, from cumulative counts with a leading 0."""
    positives = tp0[-1]
    ta, tb, fa, fb = tp0[:-1], tp0[1:], fp0[:-1], fp0[1:]
    p_min = np.divide(ta, ta + fb, out=np.zeros_like(ta), where=(ta + fb) > 0)
    p_max = np.divide(tb, tb + fa, out=np.ones_like(tb), where=(tb + fa) > 0)
    p_max = np.where(ta == 0, 1.0, p_max)  # the curve starts at precision 1, recall 0
    return float(np.sum((tb - ta) / positives * (p_max - p_min)))
