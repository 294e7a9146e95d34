"""Checks on image tensors handed to the model; each failure is a ``ValueError`` saying what was expected."""

from __future__ import annotations

import torch


def check_images(images: torch.Tensor, name: str, patch_size: int, min_grid: int) -> None:
    """Validate a ``(B, 3, S, S)`` batch of preprocessed images.

    Raises:
        ValueError: not a 4-D float tensor with 3 channels, empty, non-square, smaller than
            ``min_grid`` patches, not a multiple of the patch size, or holding NaN/inf.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        msg = f"{name}: got {shape}; expected a (B, 3, S, S) tensor from model.preprocess"
        raise ValueError(msg)
    b, c, h, w = images.shape
    if b == 0:
        msg = f"{name}: got an empty batch (0, {c}, {h}, {w}); pass at least one image"
        raise ValueError(msg)
    if c != 3:
        msg = f"{name}: got {c} channels; expected 3 (RGB; grey images are repeated by model.preprocess)"
        raise ValueError(msg)
    if h != w:
        msg = f"{name}: got {h}×{w}; expected square images (model.preprocess squashes to S×S)"
        raise ValueError(msg)
    if h % patch_size or h < min_grid * patch_size:
        msg = (f"{name}: got {h}×{w} px; expected a multiple of the patch size {patch_size} and at "
               f"least {min_grid * patch_size} px (use model.preprocess)")
        raise ValueError(msg)
    if not images.is_floating_point():
        msg = f"{name}: got dtype {images.dtype}; expected float CLIP-normalised pixels (model.preprocess)"
        raise ValueError(msg)
    if not bool(torch.isfinite(images).all()):
        msg = f"{name}: contains NaN or inf pixels; clean or window the image before preprocessing"
        raise ValueError(msg)


def check_prompts(prompts: torch.Tensor, patch_size: int, min_grid: int) -> None:
    """Validate ``(K, 3, S, S)`` prompt images, ``K ≥ 1``.

    Raises:
        ValueError: ``K = 0`` (use ``prompts=None`` for zero-shot) or any :func:`check_images` failure.
    """
    if isinstance(prompts, torch.Tensor) and prompts.ndim == 4 and prompts.shape[0] == 0:
        msg = "prompts: got 0 prompt images; pass prompts=None for zero-shot, or K ≥ 1 normal images"
        raise ValueError(msg)
    check_images(prompts, "prompts", patch_size, min_grid)
