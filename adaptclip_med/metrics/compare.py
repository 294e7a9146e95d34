"""Paired statistics that say whether the difference between two methods on the same images is real.

* :func:`delong_test`: two correlated ROC curves (the same images scored by two methods): both AUROCs,
  the difference ``a - b``, its normal-approximation CI with DeLong's covariance, the two-sided p-value
  (DeLong, DeLong & Clarke-Pearson 1988). Images are assumed independent.
* :func:`paired_bootstrap`: any metric (AUPR, pixel metrics): the images (or, with ``groups``, the
  patients) are resampled with replacement, the same draw for both methods; percentile CI of the
  difference and the p-value of the test that inverts it.
* :func:`paired_bootstrap_pixels`: the same draws for pixel metrics from per-image histograms
  (:class:`~adaptclip_med.metrics.binned.PerImagePixelCounts`), the CI widened by the binning bound.
* :func:`holm`: Holm–Bonferroni step-down adjustment of a family of p-values.
* :func:`friedman_nemenyi`: several methods (or settings) over several data sets (Demšar 2006): the
  Friedman test on the per-data-set ranks, the average ranks, the Nemenyi critical difference and the
  pairs whose average ranks differ by at least it.

Every function takes numpy arrays and returns plain numbers (pure numpy/scipy; the tables and the
critical-difference figure are in :mod:`adaptclip_med.reporting.comparison`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from adaptclip_med.metrics.binned import PerImagePixelCounts
from adaptclip_med.metrics.result import MetricUndefinedError


@dataclass(frozen=True)
class PairedComparison:
    """Method ``a`` against method ``b`` on the same images, one metric.

    Attributes:
        value_a / value_b: the metric of each method on all images.
        delta: ``value_a - value_b``.
        ci_low / ci_high: the ``level`` confidence interval of ``delta``.
        p_value: two-sided p-value of "no difference".
        level: confidence level of the interval (0.95).
        test: ``"delong"`` or ``"paired-bootstrap"``.
        n_normal / n_abnormal: images without / with an anomaly.
        se: standard error of ``delta`` (DeLong: the square root of its variance; bootstrap: the
            standard deviation of the replicates).
        n_boot: bootstrap replicates used (0 for DeLong).
        unit: what was treated as independent: ``"image"``, or ``"patient"`` when groups were resampled.
    """

    value_a: float
    value_b: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    level: float
    test: str
    n_normal: int
    n_abnormal: int
    se: float
    n_boot: int = 0
    unit: str = "image"


def _binary_inputs(scores_a: Any, scores_b: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(scores_a, dtype=np.float64).ravel()
    b = np.asarray(scores_b, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if not (a.shape == b.shape == y.shape):
        msg = (f"{what}: got {a.size} scores of method a, {b.size} of method b and {y.size} labels; "
               "expected one score of each method per labelled image")
        raise ValueError(msg)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        msg = f"{what}: scores contain NaN or inf; expected finite values (check the model output)"
        raise ValueError(msg)
    return a, b, y.astype(bool)


def placements(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components (placement values) of one method.

    ``V10[i]`` (one per abnormal image ``X_i``): the fraction of normal images it out-scores, a tie
    counting 1/2; ``V01[j]`` (one per normal image ``Y_j``): the fraction of abnormal images that
    out-score it, a tie counting 1/2. Both average to the AUROC.

    Args:
        scores: ``(M,)`` scores.
        labels: ``(M,)`` bool (True = abnormal).

    Returns:
        ``(V10 (m,), V01 (n,))`` with ``m`` abnormal and ``n`` normal images.
    """
    x = scores[labels]
    z = scores[~labels]
    xs, zs = np.sort(x), np.sort(z)
    below = np.searchsorted(zs, x, side="left")
    tied = np.searchsorted(zs, x, side="right") - below
    v10 = (below + 0.5 * tied) / z.size
    at_or_below = np.searchsorted(xs, z, side="right")
    tied = at_or_below - np.searchsorted(xs, z, side="left")
    v01 = (x.size - at_or_below + 0.5 * tied) / x.size
    return v10, v01


def delong_test(scores_a: Any, scores_b: Any, labels: Any, level: float = 0.95) -> PairedComparison:
    """DeLong's test of two correlated AUROCs (two methods, the same images).

    With ``m`` abnormal and ``n`` normal images and the placement values of :func:`placements` for
    each method, ``S10`` / ``S01`` are the 2×2 sample covariances (denominator ``m - 1`` / ``n - 1``) of
    the abnormal / normal components and ``S = S10 / m + S01 / n`` the covariance of the two AUROCs.
    ``Var(a - b) = S_aa + S_bb - 2 S_ab``; ``z = (a - b) / sqrt(Var)``; p = 2 (1 - Φ(|z|)); the CI is
    ``(a - b) ± Φ⁻¹((1 + level) / 2) sqrt(Var)`` (not clipped to [-1, 1]). A zero variance (e.g. the
    same scores, or two perfect separations) gives p = 1 when the AUROCs are equal and p = 0 otherwise,
    with the CI collapsed onto the difference.

    Args:
        scores_a / scores_b: ``(M,)`` image scores of the two methods, image ``i`` the same in both.
        labels: ``(M,)`` 0/1 (1 = abnormal).
        level: confidence level of the interval.

    Raises:
        ValueError: mismatched lengths or non-finite scores.
        MetricUndefinedError: fewer than 2 normal or 2 abnormal images (no covariance).
    """
    a, b, y = _binary_inputs(scores_a, scores_b, labels, "DeLong test")
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise MetricUndefinedError(f"DeLong test: needs at least 2 normal and 2 abnormal images; got {n} normal "
                                   f"and {m} abnormal")
    v10_a, v01_a = placements(a, y)
    v10_b, v01_b = placements(b, y)
    auc_a, auc_b = float(v10_a.mean()), float(v10_b.mean())
    s10 = np.cov(np.vstack([v10_a, v10_b]), ddof=1)
    s01 = np.cov(np.vstack([v01_a, v01_b]), ddof=1)
    s = s10 / m + s01 / n
    var = float(s[0, 0] + s[1, 1] - 2.0 * s[0, 1])
    delta = auc_a - auc_b
    if var <= 0.0:
        p = 1.0 if delta == 0.0 else 0.0
        return PairedComparison(auc_a, auc_b, delta, delta, delta, p, level, "delong", n, m, 0.0)
    se = math.sqrt(var)
    half = float(stats.norm.ppf(0.5 + level / 2.0)) * se
    p = float(min(1.0, 2.0 * stats.norm.sf(abs(delta) / se)))
    return PairedComparison(auc_a, auc_b, delta, delta - half, delta + half, p, level, "delong", n, m, se)


def _take(values: Any, idx: np.ndarray) -> Any:
    if isinstance(values, np.ndarray):
        return values[idx]
    return [values[i] for i in idx]


def _as_units(values: Any, what: str) -> Any:
    """A numpy array (leading image axis) as is; a list/tuple of per-image arrays (any sizes) as a list."""
    if isinstance(values, (list, tuple)):
        arrays = [np.asarray(v) for v in values]
        return np.asarray(values) if all(v.ndim == 0 for v in arrays) else arrays
    arr = np.asarray(values)
    if arr.ndim == 0:
        raise ValueError(f"paired bootstrap: {what} is a scalar; expected one entry per image")
    return arr


def image_labels(labels: Any) -> np.ndarray:
    """Per-image abnormal flags: the label itself for image labels, ``mask.any()`` for per-image masks."""
    if isinstance(labels, np.ndarray):
        return labels.reshape(len(labels), -1).astype(bool).any(axis=1)
    return np.asarray([bool(np.any(np.asarray(v))) for v in labels])


def pooled_pixels(metric_fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[Any, Any], float]:
    """Wrap a pixel metric ``(scores, labels) -> float`` to take a list of per-image maps and masks.

    The maps and masks of the drawn images (sizes may differ) are flattened and concatenated, so
    ``paired_bootstrap(pooled_pixels(auroc), maps_a, maps_b, masks)`` is the bootstrap of P-AUROC.
    """

    def pooled(maps: Any, masks: Any) -> float:
        return metric_fn(np.concatenate([np.ravel(v) for v in maps]), np.concatenate([np.ravel(v) for v in masks]))

    pooled.__name__ = f"pooled_{getattr(metric_fn, '__name__', 'metric')}"
    return pooled


def _group_members(n_units: int, groups: Sequence[Any] | np.ndarray | None) -> tuple[list[np.ndarray], str]:
    if groups is None:
        return [np.array([i]) for i in range(n_units)], "image"
    ids = ["" if g is None or (isinstance(g, float) and math.isnan(g)) else str(g) for g in groups]
    if len(ids) != n_units:
        raise ValueError(f"paired bootstrap: got {len(ids)} group ids for {n_units} images; expected one per image")
    if not any(ids):
        return [np.array([i]) for i in range(n_units)], "image"
    # an image without a group id is its own group
    keys = [g if g else f"\0image{i}" for i, g in enumerate(ids)]
    _, inverse = np.unique(np.asarray(keys), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds), "patient"


def paired_bootstrap(
    metric_fn: Callable[[Any, Any], float], scores_a: Any, scores_b: Any, labels: Any,
    groups: Sequence[Any] | np.ndarray | None = None, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
) -> PairedComparison:
    """Paired bootstrap of ``metric_fn(a) - metric_fn(b)`` over images, or over patients with ``groups``.

    Each replicate draws the resampling units with replacement (the images; with ``groups``, the
    patients/groups, every image of a drawn group coming along) and evaluates the metric of *both*
    methods on the same draw, so the correlation between the methods is kept. Replicates on which the
    metric is undefined (e.g. no abnormal image drawn: :class:`MetricUndefinedError`) are skipped.

    CI: the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the replicate differences
    ``d*``. p-value: the test that inverts this percentile interval,
    ``p = min(1, 2 · min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (B + 1))`` over the ``B`` replicates used —
    the smallest ``α`` for which the ``1 - α`` percentile interval excludes 0 (the ``+1`` keeps p > 0;
    ties at 0 count on both sides, so identical methods get p = 1). ``p < 1 - level`` goes with an
    interval that excludes 0, up to the ``+1`` and interpolation of the percentiles.

    Args:
        metric_fn: ``(scores, labels) -> float`` on the drawn images: e.g. ``aupr`` for image scores,
            ``aupro`` for stacked ``(B, H, W)`` maps, :func:`pooled_pixels` of ``auroc`` for a list of
            per-image maps of any sizes.
        scores_a / scores_b: per image, method a / b: a numpy array whose first axis is the image
            (``(M,)`` scores or ``(M, H, W)`` maps; drawn images are passed as ``x[idx]``), or a list of
            per-image arrays (passed as a list).
        labels: per image, the same kind: ``(M,)`` 0/1, ``(M, H, W)`` masks or a list of masks.
        groups: ``(M,)`` patient/study ids (``None``/empty id: the image is its own group); None
            resamples images.
        n_boot: replicates drawn.
        seed: RNG seed (deterministic results).
        level: confidence level.

    Raises:
        ValueError: the three inputs (and ``groups``) do not have one entry per image.
        MetricUndefinedError: the metric is undefined on the full data, or on every replicate.
    """
    a = _as_units(scores_a, "scores_a")
    b = _as_units(scores_b, "scores_b")
    y = _as_units(labels, "labels")
    n_units = len(y)
    if not (len(a) == len(b) == n_units):
        msg = (f"paired bootstrap: got {len(a)} images of method a, {len(b)} of method b and {n_units} labels; "
               "expected the same images for both methods")
        raise ValueError(msg)
    value_a, value_b = float(metric_fn(a, y)), float(metric_fn(b, y))
    members, unit = _group_members(n_units, groups)
    reps: list[float] = []
    for idx in _draws(members, n_boot, seed):
        ys = _take(y, idx)
        try:
            reps.append(float(metric_fn(_take(a, idx), ys)) - float(metric_fn(_take(b, idx), ys)))
        except MetricUndefinedError:
            continue
    return _percentile_result(value_a, value_b, reps, image_labels(y), level, unit)


def _draws(members: list[np.ndarray], n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``n_boot`` bootstrap draws: the image indices of ``len(members)`` groups drawn with replacement."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        yield np.concatenate([members[g] for g in pick])


def _percentile_result(value_a: float, value_b: float, reps: Sequence[float], flags: np.ndarray, level: float,
                       unit: str, widen: float = 0.0) -> PairedComparison:
    """The percentile CI of the replicate differences (widened by ``widen`` each side) and the p-value of the
    test that inverts it: replicates within ``widen`` of 0 count on both sides, so ``p < 1 - level`` goes
    with a widened interval that excludes 0.

    Raises:
        MetricUndefinedError: no replicate.
    """
    if not len(reps):
        raise MetricUndefinedError("paired bootstrap: the metric was undefined on every replicate")
    d = np.asarray(reps, dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(d, [alpha, 1.0 - alpha])
    tail = min(1 + int(np.sum(d <= widen)), 1 + int(np.sum(d >= -widen)))
    p = min(1.0, 2.0 * tail / (d.size + 1))
    n_abnormal = int(flags.sum())
    return PairedComparison(value_a, value_b, value_a - value_b, float(low) - widen, float(high) + widen, p, level,
                            "paired-bootstrap", int(flags.size - n_abnormal), n_abnormal,
                            float(d.std(ddof=1)) if d.size > 1 else 0.0, int(d.size), unit)


#: The pixel metrics :func:`paired_bootstrap_pixels` compares (standard names, as the tables).
COMPARED_PIXEL_METRICS = ("P-AUROC", "P-AUPR", "AUPRO")


def paired_bootstrap_pixels(
    counts_a: PerImagePixelCounts, counts_b: PerImagePixelCounts, groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000, seed: int = 0, level: float = 0.95, metrics: Sequence[str] = COMPARED_PIXEL_METRICS,
    fpr_limit: float = 0.3, chunk: int = 256,
) -> dict[str, PairedComparison | None]:
    """Paired bootstrap of pixel metrics over images (or patients): the draws of :func:`paired_bootstrap`
    with the same ``seed``, each replicate pooling the drawn images' per-image histograms.

    Every metric of a replicate is the binned one (:class:`~adaptclip_med.metrics.binned.PerImagePixelCounts`
    grid); the CI is the percentile interval of the binned differences widened on each side by the largest
    binning bound of ``a`` plus that of ``b`` over the replicates, so it covers the exact differences'
    interval. ``value_a`` / ``value_b`` are the binned values on all images (callers with exact values
    replace them). The images of ``counts_a`` and ``counts_b`` must be the same, in the same order.

    Args:
        counts_a / counts_b: per-image counts of the two methods ``(M images)``.
        groups: ``(M,)`` patient ids, or None (images are the units).
        metrics: names from :data:`COMPARED_PIXEL_METRICS` (any of ``P-AUROC, P-AUPR, P-AP, P-F1max, AUPRO``).
        chunk: replicates pooled per matrix product.

    Returns:
        ``{metric: PairedComparison, or None where the metric is undefined (no anomalous or no normal pixel)}``.

    Raises:
        ValueError: the two counts hold different images.
    """
    if counts_a.ids != counts_b.ids:
        msg = (f"paired bootstrap: method a counted {len(counts_a)} images and method b {len(counts_b)} "
               "(or in another order); expected the same images")
        raise ValueError(msg)
    n = len(counts_a)
    full = {name: c.pooled().compute(fpr_limit) for name, c in (("a", counts_a), ("b", counts_b))}
    members, unit = _group_members(n, groups)
    reps: dict[str, list[float]] = {m: [] for m in metrics}
    widen = dict.fromkeys(metrics, 0.0)
    draws = list(_draws(members, n_boot, seed))
    for start in range(0, len(draws), chunk):
        times = np.stack([np.bincount(idx, minlength=n) for idx in draws[start:start + chunk]]).astype(np.float64)
        for ha, hb in zip(counts_a.pooled_many(times), counts_b.pooled_many(times), strict=True):
            va, vb = ha.compute(fpr_limit), hb.compute(fpr_limit)
            for m in metrics:
                if va[m].value is not None and vb[m].value is not None:
                    reps[m].append(va[m].value - vb[m].value)
                    widen[m] = max(widen[m], va[m].bound + vb[m].bound)
    flags = counts_a.rows()[0][:, 0, :].sum(axis=1) > 0
    out: dict[str, PairedComparison | None] = {}
    for m in metrics:
        a, b = full["a"][m].value, full["b"][m].value
        out[m] = (None if a is None or b is None or not reps[m]
                  else _percentile_result(a, b, reps[m], flags, level, unit, widen[m]))
    return out


def holm(p_values: Any) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (same order as the input).

    Sort the ``m`` finite p-values ascending, ``p_(1) <= ... <= p_(m)``; the adjusted value of
    ``p_(i)`` is ``max_{j <= i} min(1, (m - j + 1) p_(j))`` (monotone in the sorted order, capped at 1).
    Rejecting where the adjusted p < α controls the family-wise error rate at α. NaN entries (tests
    that could not be run) stay NaN and do not count in ``m``.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    if finite.size == 0:
        return out
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("holm: p-values must lie in [0, 1]")
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


@dataclass(frozen=True)
class FriedmanNemenyi:
    """Friedman test and Nemenyi post-hoc test of ``k`` methods over ``N`` data sets (Demšar 2006).

    Attributes:
        methods: column names, in the input order.
        avg_ranks: average rank of each method (1 = best), same order.
        statistic: Friedman's χ²_F (with the tie correction), ``k - 1`` degrees of freedom.
        p_value: its p-value.
        iman_davenport: Iman–Davenport ``F_F = (N - 1) χ²_F / (N (k - 1) - χ²_F)`` (inf when every data
            set ranks the methods the same).
        iman_davenport_p: its p-value, ``F`` with ``(k - 1, (k - 1)(N - 1))`` degrees of freedom.
        q_alpha: ``studentized_range.ppf(1 - alpha, k, inf) / sqrt(2)``.
        cd: Nemenyi critical difference ``q_alpha sqrt(k (k + 1) / (6 N))``.
        alpha: significance level of ``cd``.
        n_datasets: ``N``.
        differ: pairs ``(better, worse)`` whose average ranks differ by at least ``cd``.
    """

    methods: tuple[str, ...]
    avg_ranks: tuple[float, ...]
    statistic: float
    p_value: float
    iman_davenport: float
    iman_davenport_p: float
    q_alpha: float
    cd: float
    alpha: float
    n_datasets: int
    differ: tuple[tuple[str, str], ...]

    def rank_of(self, method: str) -> float:
        """Average rank of ``method``."""
        return self.avg_ranks[self.methods.index(method)]


def friedman_nemenyi(table: Any, methods: Sequence[str] | None = None, alpha: float = 0.05,
                     higher_is_better: bool = True) -> FriedmanNemenyi:
    """Friedman test over data sets, average ranks, Nemenyi critical difference (Demšar 2006).

    In each data set (row) the methods (columns) are ranked, 1 = best, ties sharing the mean rank.
    ``χ²_F = 12 N / (k (k + 1)) [Σ_j R_j² - k (k + 1)² / 4]`` with ``R_j`` the average ranks, divided by
    the tie correction ``1 - Σ (t³ - t) / (N k (k² - 1))`` over the tied groups (what
    ``scipy.stats.friedmanchisquare`` computes). Two methods differ (Nemenyi, at ``alpha``) when their
    average ranks differ by at least ``CD = q_alpha sqrt(k (k + 1) / (6 N))``.

    Args:
        table: ``(N, k)`` metric values, a 2-D array or a pandas DataFrame (data sets as rows, its columns
            naming the methods).
        methods: column names (default: the DataFrame's columns, else ``m0, m1, ...``).
        alpha: significance level of the critical difference.
        higher_is_better: False for a metric where lower is better (an error rate).

    Raises:
        ValueError: fewer than 3 data sets or 2 methods, or a missing (NaN) value.
    """
    values = np.asarray(table, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"friedman_nemenyi: expected a 2-D table (data sets × methods); got shape {values.shape}")
    n, k = values.shape
    if n < 3 or k < 2:
        raise ValueError(f"friedman_nemenyi: needs at least 3 data sets (rows) and 2 methods (columns); got {n} × {k}")
    if not np.all(np.isfinite(values)):
        raise ValueError("friedman_nemenyi: the table holds NaN/inf; drop the data sets where a method has no value")
    if methods is None:
        columns = getattr(table, "columns", None)
        methods = [str(c) for c in columns] if columns is not None else [f"m{j}" for j in range(k)]
    names = tuple(str(m) for m in methods)
    if len(names) != k:
        raise ValueError(f"friedman_nemenyi: {len(names)} method names for {k} columns")
    ranks = np.vstack([stats.rankdata(-row if higher_is_better else row) for row in values])
    avg = ranks.mean(axis=0)
    chi2 = 12.0 * n / (k * (k + 1)) * (float(np.sum(avg**2)) - k * (k + 1) ** 2 / 4.0)
    ties = 0.0
    for row in values:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    correction = 1.0 - ties / (n * k * (k * k - 1))
    if correction > 0:
        chi2 /= correction
        p = float(stats.chi2.sf(chi2, k - 1))
    else:  # every data set ties all methods
        chi2, p = 0.0, 1.0
    denom = n * (k - 1) - chi2
    if denom <= 1e-12:
        f_stat, f_p = math.inf, 0.0
    else:
        f_stat = (n - 1) * chi2 / denom
        f_p = float(stats.f.sf(f_stat, k - 1, (k - 1) * (n - 1)))
    q = float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    cd = q * math.sqrt(k * (k + 1) / (6.0 * n))
    differ = []
    for i in range(k):
        for j in range(k):
            if avg[i] < avg[j] and avg[j] - avg[i] >= cd:
                differ.append((names[i], names[j]))
    differ.sort(key=lambda pair: (avg[names.index(pair[0])], avg[names.index(pair[1])]))
    return FriedmanNemenyi(names, tuple(float(r) for r in avg), float(chi2), p, float(f_stat), f_p, q, cd, alpha, n,
                           tuple(differ))


__all__ = ["FriedmanNemenyi", "PairedComparison", "delong_test", "friedman_nemenyi", "holm", "image_labels",
           "paired_bootstrap", "placements", "pooled_pixels"]
