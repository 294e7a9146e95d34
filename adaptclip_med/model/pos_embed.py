"""Positional-embedding resizing, bilinear as in the authors' release (not open_clip's bicubic)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resize_positional_embedding(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Resize a ViT positional table to a ``grid×grid`` patch grid; the CLS row is kept.

    The patch part is resized with ``bilinear`` interpolation, ``align_corners=False`` and no
    antialiasing (spec §1). The input is not modified; the result is float32.

    Args:
        pos_embed: ``(1 + g², W)`` table, CLS row first, any float dtype (OpenAI weights are fp16).
        grid: target grid side ``G``.

    Returns:
        ``(1 + G², W)`` float32 table.

    Raises:
        ValueError: if the table's patch rows do not form a square grid.
    """
    table = pos_embed.detach().float()
    n_patch = table.shape[0] - 1
    side = math.isqrt(n_patch)
    if side * side != n_patch:
        msg = f"positional table has {n_patch} patch rows; expected a square number (g×g)"
        raise ValueError(msg)
    if side == grid:
        return table.clone()
    cls_row, patch_rows = table[:1], table[1:]
    width = table.shape[1]
    patch_grid = patch_rows.reshape(1, side, side, width).permute(0, 3, 1, 2)
    resized = F.interpolate(patch_grid, size=(grid, grid), mode="bilinear", align_corners=False)
    resized = resized.permute(0, 2, 3, 1).reshape(grid * grid, width)
    return torch.cat([cls_row, resized], dim=0)
