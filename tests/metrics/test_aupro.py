"""AUPRO against a hand-derived value and an independent per-region, per-threshold computation."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label as sk_label

from adaptclip_med.metrics import MetricUndefinedError, aupro


def _reference_aupro(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """Brute force: every threshold, every region separately (skimage 8-connectivity), np.interp."""
    regions = []
    for a, m in zip(maps, masks, strict=True):
        lab = sk_label(m.astype(int), connectivity=2)
        regions += [a[lab == r] for r in range(1, lab.max() + 1)]
    normal = maps[masks == 0]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fprs.append(float(np.mean(normal >= t)))
        pros.append(float(np.mean([np.mean(r >= t) for r in regions])))
    fprs, pros = np.array(fprs), np.array(pros)
    grid_f = np.concatenate([fprs[fprs <= limit], [limit]])
    # the curve may be vertical at one FPR: take the last point at each FPR before interpolating
    last_at = {f: p for f, p in zip(fprs, pros, strict=True)}
    uniq = np.array(sorted(last_at))
    grid_p = np.concatenate([pros[fprs <= limit], [np.interp(limit, uniq, [last_at[f] for f in uniq])]])
    return float(np.trapezoid(grid_p, grid_f) / limit)


def test_hand_derived() -> None:
    # region pixels 0.9, 0.5; normal pixels 0.8, 0.1, 0.1, 0.1
    # curve (0,0) (0,.5) (.25,.5) (.25,1) (1,1): area to 0.3 = .125 + .05 -> /0.3 = 7/12
    maps = np.array([[[0.9, 0.5, 0.8], [0.1, 0.1, 0.1]]])
    masks = np.array([[[1, 1, 0], [0, 0, 0]]])
    assert aupro(maps, masks) == pytest.approx(7 / 12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 16, 16), dtype=np.uint8)
    masks[0, 2:5, 2:6] = 1          # two regions in image 0 (different sizes)
    masks[0, 10:15, 9:11] = 1
    masks[1, 6:12, 6:12] = 1        # one large region in image 1; image 2 is normal
    masks[1, 13, 1] = 1             # a one-pixel region touching nothing
    maps = np.round(rng.random((3, 16, 16)) + 0.6 * masks, 2)  # rounding makes ties
    assert aupro(maps, masks) == pytest.approx(_reference_aupro(maps, masks), abs=1e-12)


def test_diagonal_touching_pixels_are_one_region() -> None:
    # region A = diagonal pair (0,0)+(1,1) (one region with 8-connectivity), region B = pixel (3,3)
    maps = np.zeros((1, 4, 4))
    masks = np.zeros((1, 4, 4), dtype=int)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 3, 3] = 1
    maps[0, 3, 3], maps[0, 0, 2], maps[0, 0, 0], maps[0, 1, 1] = 0.9, 0.85, 0.8, 0.1
    # thresholds: .9 -> (0, 1/2); .85 -> (1/13, 1/2); .8 -> (1/13, 3/4); .1 -> (1/13, 1); 0 -> (1, 1)
    expected = (0.5 / 13 + (0.3 - 1 / 13)) / 0.3
    assert aupro(maps, masks) == pytest.approx(expected)
    assert _reference_aupro(maps, masks) == pytest.approx(expected)


def test_undefined() -> None:
    with pytest.raises(MetricUndefinedError, match="no anomalous region"):
        aupro(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="equal shapes"):
        aupro(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))
