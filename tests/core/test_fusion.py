"""Fusion: the Gaussian matches scipy, harmonic-mean edge cases, zero/few-shot formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import hmean

from adaptclip_med.model.fusion import fuse_few_shot, fuse_zero_shot, gaussian_blur, harmonic_mean


@pytest.mark.parametrize("shape", [(518, 518), (37, 53)])
def test_gaussian_matches_scipy_reflect(shape):
    rng = np.random.default_rng(0)
    maps = rng.random((2, *shape), dtype=np.float32)
    ours = gaussian_blur(torch.from_numpy(maps)).numpy()
    ref = np.stack([gaussian_filter(m, sigma=4) for m in maps])
    assert np.abs(ours - ref).max() < 1e-6  # a few float32 ulps (scipy accumulates in float64)


def test_gaussian_preserves_constant_maps_at_the_border():
    """scipy 'reflect' repeats the edge sample, so a constant map stays constant (zero padding would not)."""
    out = gaussian_blur(torch.full((1, 40, 40), 0.7))
    assert torch.allclose(out, torch.full_like(out, 0.7), atol=1e-6)


def test_harmonic_mean_matches_scipy_and_handles_edges():
    a, b = torch.tensor([0.2, 0.5, 0.9]), torch.tensor([0.4, 0.5, 0.1])
    assert torch.allclose(harmonic_mean([a, b]), torch.from_numpy(hmean(np.stack([a, b]), axis=0)).float())
    zero = harmonic_mean([torch.tensor([0.0, 0.3]), torch.tensor([0.5, 0.3])])
    assert zero.tolist() == pytest.approx([0.0, 0.3])
    nan = harmonic_mean([torch.tensor([float("nan")]), torch.tensor([0.5])])
    assert nan.item() == 0.0
    inf = harmonic_mean([torch.tensor([float("inf")]), torch.tensor([float("inf")])])
    assert inf.item() == 0.0
    neg = harmonic_mean([torch.tensor([-0.5]), torch.tensor([0.5])])  # 1/x sums to 0 → inf → 0
    assert neg.item() == 0.0


def test_zero_shot_formula():
    va, ta = torch.full((1, 8, 8), 0.2), torch.full((1, 8, 8), 0.6)
    out = fuse_zero_shot(va, ta, torch.tensor([0.3]), torch.tensor([0.9]))
    assert torch.allclose(out["anomaly_map"], torch.full((1, 8, 8), 0.4))
    assert out["pred_score"].item() == pytest.approx((0.3 + 0.9 + 0.4) / 3)


def test_few_shot_formula():
    va, ta = torch.full((1, 8, 8), 0.3), torch.full((1, 8, 8), 0.6)
    pqa = [torch.full((1, 8, 8), v) for v in (0.1, 0.2, 0.3, 0.6)]
    align = [torch.full((1, 8, 8), v) for v in (0.5, 0.25, 0.5, 0.25)]
    out = fuse_few_shot(va, ta, pqa, align, torch.tensor([0.4]), torch.tensor([0.6]), torch.tensor([0.8]), sigma=0)
    m_a = (0.3 + 0.6 + 0.3) / 3
    a = 4 / (2 / 0.5 + 2 / 0.25)
    expected = 2 / (1 / m_a + 1 / a)
    assert out["anomaly_map"][0, 0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert out["pred_score"].item() == pytest.approx(2 / (1 / 0.6 + 1 / expected), rel=1e-6)
