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


def test_clipping_outside_range_is_counted() -> None:
    acc = PixelAccumulator(mode="binned", value_range=(0.0, 1.0))
    acc.update(np.array([[[1.5, -0.2], [0.5, 0.7]]]), np.array([[[1, 0], [0, 1]]]))
    assert acc.hist is not None and acc.hist.n_clipped == 2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        PixelAccumulator(mode="fast")
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
