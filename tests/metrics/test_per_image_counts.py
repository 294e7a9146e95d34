"""Per-image pixel histograms (``PerImagePixelCounts``) and the paired pixel bootstrap built on them:
pooled rows equal the streaming histogram on the same grid, exact metrics lie within the bound, and the
widened bootstrap interval holds the interval of the exact bootstrap on the same draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adaptclip_med.metrics import (
    BinnedPixelHistogram,
    Evaluator,
    PerImagePixelCounts,
    auroc,
    paired_bootstrap,
    paired_bootstrap_pixels,
    pooled_pixels,
    region_weights,
)
from adaptclip_med.metrics.compare import COMPARED_PIXEL_METRICS


def _maps(seed: int, n: int = 16, size: int = 32, shift: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    masks[n // 2:, 6:14, 8:18] = True
    masks[-1, 20:24, 2:6] = True  # a second region
    return rng.random(masks.shape) + shift * masks, masks


def _counts(maps: np.ndarray, masks: np.ndarray, n_bins: int = 1024) -> PerImagePixelCounts:
    c = PerImagePixelCounts(n_bins)
    for i, (a, m) in enumerate(zip(maps, masks, strict=True)):
        c.add(i, a, m)
    return c


def test_pooled_rows_equal_the_streaming_histogram_and_bound_the_exact_values() -> None:
    maps, masks = _maps(0)
    maps[3] += 1.6  # above the initial range: the grid doubles upwards and folds the rows already kept
    maps[12] -= 0.9  # below it: doubles downwards
    counts = _counts(maps, masks)
    stream = BinnedPixelHistogram(1024)
    weights, n_regions = region_weights(masks)
    stream.update(maps, masks, weights, n_regions)
    assert (counts.low, counts.width) == (stream.low, stream.width) == (-4.0, 8.0)
    pooled = counts.pooled()
    np.testing.assert_array_equal(pooled.pos, stream.pos)
    np.testing.assert_array_equal(pooled.neg, stream.neg)
    np.testing.assert_allclose(pooled.pro, stream.pro, rtol=1e-12)
    exact = Evaluator(pixel_mode="exact")
    exact.update(np.zeros(len(maps)), masks.any(axis=(1, 2)).astype(int), maps, masks)
    truth = exact.compute()
    for name, value in pooled.compute().items():
        assert value.value == pytest.approx(stream.compute()[name].value, abs=1e-12)
        assert abs(value.value - truth[name].value) <= value.bound + 1e-12, name


def test_weighted_draw_equals_the_repeated_images() -> None:
    maps, masks = _maps(1, n=6)
    counts = _counts(maps, masks)
    times = np.array([2, 0, 1, 0, 3, 1])
    idx = np.repeat(np.arange(6), times)
    direct = _counts(maps[idx], masks[idx]).pooled().compute()
    drawn = counts.pooled(times).compute()
    for name in direct:
        assert drawn[name].value == pytest.approx(direct[name].value, abs=1e-12)


def test_save_load_and_select(tmp_path: Path) -> None:
    maps, masks = _maps(2, n=5)
    counts = _counts(maps, masks)
    counts.save(tmp_path / "c.npz")
    back = PerImagePixelCounts.load(tmp_path / "c.npz")
    assert back.ids == counts.ids and (back.low, back.width, back.n_bins) == (counts.low, counts.width, 1024)
    np.testing.assert_array_equal(back.rows()[0], counts.rows()[0])
    part = back.select([4, 1])
    assert part.ids == [4, 1]
    np.testing.assert_array_equal(part.rows()[0], counts.rows()[0][[4, 1]])
    with pytest.raises(KeyError):
        back.select([9])


def test_pixel_bootstrap_interval_holds_the_exact_one() -> None:
    """Same seed, same draws: the exact pooled P-AUROC bootstrap's percentile interval lies inside the
    binned one widened by the bound, and both agree on the direction."""
    maps_a, masks = _maps(3, shift=0.5)
    maps_b, _ = _maps(4, shift=0.25)
    ca, cb = _counts(maps_a, masks, 256), _counts(maps_b, masks, 256)
    res = paired_bootstrap_pixels(ca, cb, n_boot=200, seed=5)
    assert set(res) == set(COMPARED_PIXEL_METRICS)
    exact = paired_bootstrap(pooled_pixels(auroc), list(maps_a), list(maps_b), list(masks), n_boot=200, seed=5)
    roc = res["P-AUROC"]
    assert roc is not None and roc.n_boot == 200 and (roc.n_normal, roc.n_abnormal) == (8, 8)
    assert roc.ci_low <= exact.ci_low and exact.ci_high <= roc.ci_high
    assert roc.ci_low > 0 and roc.p_value < 0.05
    assert abs(roc.value_a - exact.value_a) <= ca.pooled().compute()["P-AUROC"].bound + 1e-12
    # identical methods: no difference, p = 1
    same = paired_bootstrap_pixels(ca, ca, n_boot=50, seed=0)["P-AUROC"]
    assert same is not None and same.delta == 0 and same.p_value == 1.0


def test_pixel_bootstrap_by_patient_and_undefined() -> None:
    maps, masks = _maps(6)
    ca, cb = _counts(maps, masks), _counts(maps[::-1].copy(), masks)
    by_patient = paired_bootstrap_pixels(ca, cb, groups=[f"p{i // 2}" for i in range(16)], n_boot=50)
    assert by_patient["AUPRO"] is not None and by_patient["AUPRO"].unit == "patient"
    normals = _counts(maps[:8], masks[:8])
    assert all(v is None for v in paired_bootstrap_pixels(normals, normals, n_boot=20).values())
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap_pixels(ca, normals, n_boot=5)
