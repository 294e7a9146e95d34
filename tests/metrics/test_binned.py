"""Streaming (binned) pixel metrics: exact on bin-quantised data, within the stated bound otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from adaptclip_med.metrics import PIXEL_METRICS, PixelAccumulator


def _maps(seed: int, n: int = 6, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(0, n, 2):
        r, c = rng.integers(2, size - 10, 2)
        masks[i, r:r + rng.integers(2, 8), c:c + rng.integers(2, 8)] = 1
    maps = np.clip(rng.normal(0.35, 0.15, masks.shape) + 0.25 * masks, 0, 1)
    return maps, masks


def _run(mode: str, maps: np.ndarray, masks: np.ndarray, **kw: object) -> dict:
    acc = PixelAccumulator(mode=mode, **kw)
    for i in range(0, len(maps), 2):  # two maps per batch
        acc.update(maps[i:i + 2], masks[i:i + 2])
    return acc.compute()


def test_binned_equals_exact_on_quantised_maps() -> None:
    maps, masks = _maps(0)
    n_bins = 64
    quantised = (np.floor(maps * n_bins).clip(0, n_bins - 1) + 0.5) / n_bins
    exact = _run("exact", quantised, masks)
    binned = _run("binned", quantised, masks, n_bins=n_bins)
    for k in PIXEL_METRICS:
        assert binned[k].value == pytest.approx(exact[k].value, abs=1e-12), k


@pytest.mark.parametrize("n_bins", [32, 256, 1 << 14])
def test_binned_within_bound(n_bins: int) -> None:
    maps, masks = _maps(1)
    exact = _run("exact", maps, masks)
    binned = _run("binned", maps, masks, n_bins=n_bins)
    for k in PIXEL_METRICS:
        assert exact[k].bound == 0.0
        assert abs(binned[k].value - exact[k].value) <= binned[k].bound + 1e-12, k
    if n_bins == 1 << 14:  # the ROC/PRO bounds shrink with the bin width; the PR bound is conservative
        assert max(binned[k].bound for k in ("P-AUROC", "AUPRO")) < 2e-4


def test_auto_switches_to_binned_and_stays_within_bound() -> None:
    maps, masks = _maps(2)
    acc = PixelAccumulator(mode="auto", exact_max_pixels=3 * 32 * 32)
    exact = _run("exact", maps, masks)
    for i in range(len(maps)):
        acc.update(maps[i:i + 1], masks[i:i + 1])
        assert acc.binned == (i + 1 > 3)
    out = acc.compute()
    for k in PIXEL_METRICS:
        assert abs(out[k].value - exact[k].value) <= out[k].bound + 1e-12


def _sklearn(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """The exact reference: scikit-learn on every pixel (AUPR = trapezoidal area, F1max from the PR curve)."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

    s, y = maps.ravel().astype(np.float64), masks.ravel().astype(int)
    precision, recall, _ = precision_recall_curve(y, s)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=(precision + recall) > 0)
    return {"P-AUROC": roc_auc_score(y, s), "P-AUPR": auc(recall, precision),
            "P-AP": average_precision_score(y, s), "P-F1max": float(f1.max())}


@pytest.mark.parametrize("mode", ["binned", "auto"])
def test_maps_outside_the_range_are_never_clipped_and_stay_within_the_bound(mode: str) -> None:
    """Few-shot fused maps exceed 1 (and may go below 0): every pixel counts, the bound holds vs sklearn."""
    maps, masks = _maps(5, n=8)
    # The anomalous pixels of the later maps score 1.2 .. 3.4 (outside [0, 1]), some normal ones go negative:
    # clipping them into the end bins would tie them all and move P-AUROC/P-AUPR far beyond any bound.
    maps = maps * np.linspace(0.5, 3.4, len(maps))[:, None, None] - 0.3 * (1 - masks) * (maps < 0.2)
    assert maps.max() > 2.5 and maps.min() < 0
    acc = PixelAccumulator(mode=mode, value_range=(0.0, 1.0), exact_max_pixels=2 * 32 * 32)
    for i in range(0, len(maps), 2):
        acc.update(maps[i:i + 2], masks[i:i + 2])
    assert acc.binned and acc.hist.low <= maps.min() and acc.hist.high > maps.max()
    assert acc.hist.pos.sum() + acc.hist.neg.sum() == maps.size
    out, exact, reference = acc.compute(), _run("exact", maps, masks), _sklearn(maps, masks)
    for k in PIXEL_METRICS:
        assert abs(out[k].value - exact[k].value) <= out[k].bound + 1e-12, k
    assert max(out[k].bound for k in ("P-AUROC", "AUPRO", "P-F1max")) < 2e-3  # the PR bound is conservative
    for k, v in reference.items():
        assert exact[k].value == pytest.approx(v, abs=1e-12), k
        assert abs(out[k].value - v) <= out[k].bound + 1e-12, k


def test_widening_merges_bins_exactly() -> None:
    """Doubling the range folds bin pairs: the same counts as binning every score at the final range."""
    maps, masks = _maps(6, n=4)
    maps = maps * np.array([1.0, 1.0, 2.5, -1.5])[:, None, None]
    maps[1, 0, :4] = 1.0  # exactly the initial upper end: its own slot, then the first bin above it
    n = 256
    grown = PixelAccumulator(mode="binned", n_bins=n)
    for i in range(len(maps)):
        grown.update(maps[i:i + 1], masks[i:i + 1])
    hist = grown.hist
    assert hist.doublings == 3 and (hist.low, hist.high) == (-4.0, 4.0)  # [0,1] → [0,2] → [0,4] → [-4,4]
    v, m = maps.astype(np.float32).astype(np.float64).ravel(), masks.ravel().astype(bool)
    idx = np.floor((v - hist.low) * (n / hist.width)).astype(np.int64)  # last slot: v == high
    np.testing.assert_array_equal(hist.pos, np.bincount(idx[m], minlength=n + 1))
    np.testing.assert_array_equal(hist.neg, np.bincount(idx[~m], minlength=n + 1))


def test_non_finite_maps_are_refused() -> None:
    for mode in ("exact", "binned"):
        with pytest.raises(ValueError, match="NaN or inf"):
            PixelAccumulator(mode=mode).update(np.array([[[np.nan, 0.1]]]), np.array([[[1, 0]]]))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        PixelAccumulator(mode="fast")
    with pytest.raises(ValueError, match="power of two"):
        PixelAccumulator(mode="binned", n_bins=1000)
    with pytest.raises(ValueError, match="low < high"):
        PixelAccumulator(mode="binned", value_range=(1.0, 0.0))


def test_exact_accumulator_equals_functional_metrics() -> None:
    from adaptclip_med.metrics import aupr, aupro, auroc, average_precision, f1_max

    maps, masks = _maps(4)
    out = _run("exact", maps, masks)
    s, y = maps.ravel(), masks.ravel()
    expected = {"P-AUROC": auroc(s, y), "P-AUPR": aupr(s, y), "P-AP": average_precision(s, y),
                "P-F1max": f1_max(s, y), "AUPRO": aupro(maps, masks)}
    for k, v in expected.items():
        assert out[k].value == pytest.approx(v, abs=1e-12), k
