"""Each loss term against a hand computation on a tiny fixed batch."""

from __future__ import annotations

import math

import pytest
import torch

from adaptclip_med.training.losses import branch_loss, dice_loss, focal_loss

# One 2×2 map: anomalous-channel probabilities and the mask (1 = anomalous pixel).
P_ANOM = [[0.9, 0.2], [0.5, 0.1]]
MASK = [[1, 0], [0, 1]]


def _probs(p_anom: list[list[float]]) -> torch.Tensor:
    a = torch.tensor(p_anom, dtype=torch.float64)
    return torch.stack([1 - a, a])[None]  # (1, 2, 2, 2)


EPS = 1e-5  # the release's focal smoothing (spec §5)


def _p_t(p_true: float, p_other: float) -> float:
    """Spec §5 by hand: targets smoothed to (1 − ε, ε) on (true, other) class, plus ε."""
    return (1 - EPS) * p_true + EPS * p_other + EPS


def test_focal_matches_hand_computation() -> None:
    # True-class probabilities 0.9 (anomalous pixel), 0.8, 0.5 (normal pixels), 0.1 (anomalous).
    pts = [_p_t(0.9, 0.1), _p_t(0.8, 0.2), _p_t(0.5, 0.5), _p_t(0.1, 0.9)]
    by_hand = sum(-(1 - p) ** 2 * math.log(p) for p in pts) / 4
    got = focal_loss(_probs(P_ANOM), torch.tensor([MASK]))
    assert got.item() == pytest.approx(by_hand, rel=1e-12)
    # p_t = 0.900002, 0.800004, 0.50001, 0.100018 → 0.5120318 (a plain clamp gave 0.5120904).
    assert by_hand == pytest.approx(0.5120318, abs=1e-7)


def test_focal_gradient_matches_hand_derivation_and_never_vanishes() -> None:
    # d/dp_t [−(1 − p_t)² log p_t] = 2 (1 − p_t) log p_t − (1 − p_t)² / p_t; ∂p_t/∂p_c = t_c; mean over 2 pixels.
    # Pixel 0 is anomalous with p_anomalous = 0 exactly (a plain clamp of p_t had zero gradient there).
    a = torch.tensor([[[0.0, 0.3]]], dtype=torch.float64, requires_grad=True)
    n = torch.tensor([[[1.0, 0.7]]], dtype=torch.float64, requires_grad=True)
    focal_loss(torch.stack([n, a], 1), torch.tensor([[[1, 0]]])).backward()

    def slope(p: float) -> float:
        return 2 * (1 - p) * math.log(p) - (1 - p) ** 2 / p

    s0, s1 = slope(_p_t(0.0, 1.0)), slope(_p_t(0.7, 0.3))  # p_t = 2e-5 and 0.700006
    assert a.grad[0, 0].tolist() == pytest.approx([(1 - EPS) * s0 / 2, EPS * s1 / 2], rel=1e-10)
    assert n.grad[0, 0].tolist() == pytest.approx([EPS * s0 / 2, (1 - EPS) * s1 / 2], rel=1e-10)
    assert a.grad[0, 0, 0].item() == pytest.approx(-25009.57, rel=1e-6)  # large and pushing p up


def test_focal_gamma_zero_is_cross_entropy_of_the_smoothed_probabilities() -> None:
    probs = _probs(P_ANOM)
    mask = torch.tensor([MASK])
    target = torch.stack([1 - mask, mask], 1).double().clamp(EPS, 1 - EPS)
    nll = -torch.log((target * probs).sum(1) + EPS).mean()
    assert focal_loss(probs, mask, gamma=0.0).item() == pytest.approx(nll.item(), rel=1e-12)


def test_dice_matches_hand_computation_and_averages_over_images() -> None:
    # Image 1: Σp·t = 0.9 + 0.1 = 1.0, Σp = 1.7, Σt = 2 → ratio (2·1 + 1) / (1.7 + 2 + 1) = 3 / 4.7.
    # Image 2 (all normal, p = 0.5 everywhere): Σp·t = 0, Σp = 2, Σt = 0 → ratio 1 / 3.
    pred = torch.tensor([P_ANOM, [[0.5, 0.5], [0.5, 0.5]]], dtype=torch.float64)
    target = torch.tensor([MASK, [[0, 0], [0, 0]]])
    by_hand = 1 - (3 / 4.7 + 1 / 3) / 2
    assert dice_loss(pred, target).item() == pytest.approx(by_hand, rel=1e-12)


def test_branch_loss_terms_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    terms = branch_loss(logits, _probs(P_ANOM), torch.tensor([1]), torch.tensor([MASK]))
    assert set(terms) == {"ce", "focal", "dice_anomalous", "dice_normal"}
    # CE with label 1: −log(e⁰ / (e² + e⁰)) = log(1 + e²).
    assert terms["ce"].item() == pytest.approx(math.log(1 + math.e**2), rel=1e-12)
    assert terms["focal"].item() == pytest.approx(0.5120318, abs=1e-7)
    assert terms["dice_anomalous"].item() == pytest.approx(1 - 3 / 4.7, rel=1e-12)
    # Normal channel 1 − p = [.1, .8, .5, .9] against 1 − mask = [0, 1, 1, 0]:
    # Σp·t = 1.3, Σp = 2.3, Σt = 2 → 1 − (2.6 + 1) / (2.3 + 2 + 1).
    assert terms["dice_normal"].item() == pytest.approx(1 - 3.6 / 5.3, rel=1e-12)


def test_losses_give_gradients_and_stay_finite_at_saturation() -> None:
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    probs = torch.stack([1 - a, a], 1)
    loss = focal_loss(probs, torch.tensor([[[0, 1], [1, 0]]])) + dice_loss(a, torch.zeros(1, 2, 2))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()
