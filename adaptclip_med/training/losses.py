"""Training losses of AdaptCLIP (method spec §5), written out so each term can be checked by hand.

Per branch (VA, TA, and PQA once per feature layer) the loss is

    CE(global logits, label) + Focal(2-channel map, mask; γ = 2)
    + Dice(anomalous channel, mask) + Dice(normal channel, 1 − mask)

with all weights 1. Maps are the branch's softmax probabilities at the model resolution ``S``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_SMOOTH = 1e-5
"""The release's focal smoothing (spec §5): the one-hot target is clamped to ``[1e-5, 1 − 1e-5]`` and
``1e-5`` is added to ``p_t``, so ``log p_t`` stays finite and the gradient never vanishes."""

DICE_SMOOTH = 1.0
"""Additive smoothing of the Dice ratio (numerator and denominator), so empty masks give finite loss."""

TERMS = ("ce", "focal", "dice_anomalous", "dice_normal")
"""Names of the four loss terms of one branch, in the order they are logged."""


def focal_loss(probs: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss on a 2-channel probability map, averaged over every pixel of the batch.

    ``FL = mean over (b, y, x) of −(1 − p_t)^γ · log(p_t)`` with, exactly as the release computes it
    (spec §5), ``p_t = Σ_c t_c · p_c + ε``: ``t`` the two-class one-hot target (channel 1 where
    ``mask`` is 1) smoothed to ``[ε, 1 − ε]``, ``p`` the probabilities, ``ε = FOCAL_SMOOTH = 1e-5``.

    Args:
        probs: (B, 2, S, S) softmax probabilities, channel 0 normal, channel 1 anomalous.
        mask: (B, S, S) binary ground truth (0/1, any dtype).
        gamma: focusing exponent (2 in the method).

    Returns:
        Scalar tensor.
    """
    normal, anomalous = probs.unbind(1)
    return _focal(normal, anomalous, mask > 0.5, gamma)


def _focal(normal: torch.Tensor, anomalous: torch.Tensor, is_anomalous: torch.Tensor,
           gamma: float = 2.0) -> torch.Tensor:
    """Focal loss from the two ``(B, S, S)`` channels and a boolean ``(B, S, S)`` mask."""
    t_anomalous = is_anomalous.to(anomalous.dtype).clamp(FOCAL_SMOOTH, 1.0 - FOCAL_SMOOTH)  # smoothed one-hot
    t_normal = (~is_anomalous).to(normal.dtype).clamp(FOCAL_SMOOTH, 1.0 - FOCAL_SMOOTH)
    p_t = t_normal * normal + t_anomalous * anomalous + FOCAL_SMOOTH
    return (-((1.0 - p_t) ** gamma) * torch.log(p_t)).mean()


def dice_loss(pred: torch.Tensor, target: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Soft Dice loss per image, averaged over the batch.

    ``1 − mean_b (2·Σ p·t + smooth) / (Σ p + Σ t + smooth)``, sums over the pixels of image ``b``.

    Args:
        pred: (B, S, S) probabilities of one channel.
        target: (B, S, S) binary target of that channel.
        smooth: additive smoothing (1 in the method).

    Returns:
        Scalar tensor.
    """
    p = pred.reshape(pred.shape[0], -1)
    t = target.to(pred.dtype).reshape(target.shape[0], -1)
    ratio = (2.0 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return 1.0 - ratio.mean()


def branch_loss(
    logits: torch.Tensor, prob_map: torch.Tensor, label: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The four loss terms of one branch.

    Args:
        logits: (B, 2) image logits (before softmax), column 1 anomalous.
        prob_map: (B, 2, S, S) softmax probability map.
        label: (B,) int64 image labels (0 normal, 1 anomalous).
        mask: (B, S, S) binary pixel mask.

    Returns:
        ``{"ce", "focal", "dice_anomalous", "dice_normal"}`` → scalar tensors (their sum is the loss).
    """
    target = mask.to(prob_map.dtype)
    normal, anomalous = prob_map.unbind(1)  # one backward node for both channels
    return {
        "ce": F.cross_entropy(logits, label.long()),
        "focal": _focal(normal, anomalous, target > 0.5),
        "dice_anomalous": dice_loss(anomalous, target),
        "dice_normal": dice_loss(normal, 1.0 - target),
    }
