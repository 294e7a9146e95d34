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


def test_focal_matches_hand_computation() -> None:
    # True-class probabilities p_t: 0.9 (anomalous pixel), 0.8, 0.5 (normal pixels), 0.1 (anomalous).
    by_hand = (
        0.1**2 * -math.log(0.9) + 0.2**2 * -math.log(0.8) + 0.5**2 * -math.log(0.5) + 0.9**2 * -math.log(0.1)
    ) / 4
    got = focal_loss(_probs(P_ANOM), torch.tensor([MASK]))
    assert got.item() == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(0.512090, abs=1e-6)


def test_focal_gamma_zero_is_cross_entropy_of_the_map() -> None:
    probs = _probs(P_ANOM)
    mask = torch.tensor([MASK])
    nll = torch.nn.functional.nll_loss(torch.log(probs), mask.long())
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
    assert terms["focal"].item() == pytest.approx(0.512090, abs=1e-6)
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
