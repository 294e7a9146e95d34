"""``pixel_counts`` (the exact pixel metrics' counts) equals ``cumulative_at_distinct`` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from adaptclip_med.metrics import PixelAccumulator, positive_region_weights, region_weights
from adaptclip_med.metrics import functional as F
from adaptclip_med.metrics.curves import cumulative_at_distinct, pixel_counts


def _masks(rng: np.random.Generator, n: int = 6, size: int = 24) -> np.ndarray:
    """``(n, size, size)`` bool masks: a few rectangles (some touching diagonally), some maps empty."""
    m = np.zeros((n, size, size), dtype=bool)
    for i in range(0, n, 2):
        for _ in range(int(rng.integers(1, 4))):
            r, c = rng.integers(0, size - 6, 2)
            m[i, r:r + rng.integers(1, 6), c:c + rng.integers(1, 6)] = True
    m[1, 0, 0] = m[1, 1, 1] = True  # one region through a diagonal contact
    return m


def _reference(scores: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Today's path: a stable argsort of every score in float64, weights 0 on the negatives."""
    weights, _ = region_weights(masks)
    y = masks.ravel()
    _, tps, fps, pro = cumulative_at_distinct(np.asarray(scores).ravel().astype(np.float64), y.astype(np.float64),
                                              (~y).astype(np.float64), weights.ravel())
    return tps, fps, pro


def _assert_bitwise(scores: np.ndarray, masks: np.ndarray) -> None:
    got = pixel_counts(scores, masks, positive_region_weights(masks)[0])
    for name, r, g in zip(("tps", "fps", "pro"), _reference(scores, masks), got, strict=True):
        np.testing.assert_array_equal(g, r, err_msg=name)
        assert g.dtype == r.dtype == np.float64, name
        assert g.tobytes() == r.tobytes(), name  # also the sign of every zero


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels", [3, 16, 256, 0])
def test_equals_cumulative_at_distinct_on_quantised_maps(seed: int, levels: int) -> None:
    rng = np.random.default_rng(seed)
    masks = _masks(rng)
    maps = (rng.normal(0.3, 0.2, masks.shape) + 0.3 * masks).astype(np.float32)
    if levels:  # ties within and across positives and negatives
        maps = (np.round(maps * levels) / levels).astype(np.float32)
    assert levels == 0 or np.intersect1d(maps[masks], maps[~masks]).size > 0
    _assert_bitwise(maps, masks)


def test_signed_zeros_are_one_threshold() -> None:
    rng = np.random.default_rng(3)
    masks = _masks(rng)
    maps = np.round(rng.normal(0.0, 1.0, masks.shape)).astype(np.float32)
    zeros = maps == 0
    maps[zeros] = np.where(rng.random(int(zeros.sum())) < 0.5, np.float32(-0.0), np.float32(0.0))
    assert np.signbit(maps[masks & zeros]).any() and not np.signbit(maps[masks & zeros]).all()
    assert np.signbit(maps[~masks & zeros]).any() and not np.signbit(maps[~masks & zeros]).all()
    _assert_bitwise(maps, masks)
    tps, _, _ = pixel_counts(maps, masks, positive_region_weights(masks)[0])
    assert tps.size == np.unique(maps).size


@pytest.mark.parametrize("value", [0.0, -0.0, 0.7])
def test_single_distinct_value(value: float) -> None:
    masks = _masks(np.random.default_rng(4))
    maps = np.full(masks.shape, value, dtype=np.float32)
    _assert_bitwise(maps, masks)
    tps, fps, pro = pixel_counts(maps, masks, positive_region_weights(masks)[0])
    assert tps.tolist() == [masks.sum()] and fps.tolist() == [(~masks).sum()]
    assert pro[0] == pytest.approx(positive_region_weights(masks)[1])  # every region fully covered


def test_only_negatives_only_positives_and_no_scores() -> None:
    rng = np.random.default_rng(5)
    maps = np.round(rng.random((2, 8, 8)) * 4).astype(np.float32) / 4
    _assert_bitwise(maps, np.zeros(maps.shape, dtype=bool))
    _assert_bitwise(maps, np.ones(maps.shape, dtype=bool))
    empty = pixel_counts(np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0))
    assert [x.shape for x in empty] == [(0,), (0,), (0,)]
    assert all(r.size == 0 for r in cumulative_at_distinct(np.zeros(0), np.zeros(0)))


def test_float64_scores_keep_their_precision() -> None:
    rng = np.random.default_rng(6)
    masks = _masks(rng)
    maps = 0.5 + rng.integers(-3, 4, masks.shape) * 1e-12  # ties only in float64, not after float32
    _assert_bitwise(maps, masks)
    _assert_bitwise(rng.integers(0, 5, masks.shape), masks)  # integer scores count as float64


def test_positive_region_weights_are_the_region_weights_of_the_mask_pixels() -> None:
    masks = _masks(np.random.default_rng(7))
    full, n_full = region_weights(masks)
    pos, n_pos = positive_region_weights(masks)
    assert n_pos == n_full > 0
    assert pos.tobytes() == full[masks].tobytes()
    assert np.all(full[~masks] == 0)
    assert positive_region_weights(np.zeros((0, 4, 4)))[0].shape == (0,)


def test_bad_input() -> None:
    maps = np.zeros((1, 4, 4), np.float32)
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 0, 0] = True
    with pytest.raises(ValueError, match="1 positive samples"):
        pixel_counts(maps, masks, np.ones(2))
    with pytest.raises(ValueError, match="same number"):
        pixel_counts(maps, masks[:, :2], np.ones(1))


@pytest.mark.parametrize("levels", [8, 0])
def test_exact_accumulator_equals_the_functional_metrics_exactly(levels: int) -> None:
    rng = np.random.default_rng(8)
    masks = _masks(rng, n=8)
    maps = np.clip(rng.normal(0.35, 0.15, masks.shape) + 0.25 * masks, 0, 1).astype(np.float32)
    if levels:
        maps = (np.round(maps * levels) / levels).astype(np.float32)
    acc = PixelAccumulator(mode="exact")
    for i in range(0, len(maps), 3):  # batches of 3, 3, 2
        acc.update(maps[i:i + 3], masks[i:i + 3])
    out = acc.compute()
    s, y = maps.ravel(), masks.ravel()
    # the same counts feed the same formulas: equal, not just close
    assert out["P-AUROC"].value == F.auroc(s, y)
    assert out["P-AUPR"].value == F.aupr(s, y)
    assert out["P-AP"].value == F.average_precision(s, y)
    assert out["P-F1max"].value == F.f1_max(s, y)
    assert out["AUPRO"].value == F.aupro(maps, masks)
    assert out["P-AUROC"].value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
