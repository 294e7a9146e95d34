"""The text-similarity head shared by the visual and text adapters (spec §3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.07


def patch_grid_to_map(values: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, G²)`` per-patch values → ``(B, C, S, S)`` bilinear (``align_corners=False``)."""
    b, c, n = values.shape
    grid = round(n**0.5)
    return F.interpolate(values.reshape(b, c, grid, grid), size=(size, size), mode="bilinear",
                         align_corners=False)


def text_similarity(
    global_: torch.Tensor, patches: torch.Tensor, text: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score image features against (normal, anomalous) text features.

    Args:
        global_: ``(B, D)`` image embeddings.
        patches: ``(B, N, D)`` patch tokens, CLS at index 0 (dropped for the map).
        text: ``(2, D)`` text features, row 0 normal, row 1 anomalous (not necessarily normalised).
        size: output map side ``S``.

    Returns:
        ``logits`` ``(B, 2)`` = cos / 0.07 and ``map`` ``(B, 2, S, S)``: per-patch softmax over the
        two classes, resized bilinearly after the softmax.
    """
    text_n = F.normalize(text, dim=-1)
    logits = F.normalize(global_, dim=-1) @ text_n.t() / TEMPERATURE
    patch_logits = F.normalize(patches, dim=-1) @ text_n.t() / TEMPERATURE
    probs = patch_logits.softmax(dim=-1)[:, 1:, :].transpose(1, 2)
    return logits, patch_grid_to_map(probs, size)
