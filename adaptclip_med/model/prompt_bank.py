"""Encoded normal prompts: one bank (:class:`PromptBank`) or several banks over shared images (:class:`PromptSet`).

Shapes: ``K`` shots of one bank, ``P`` distinct prompt images of a set, ``G²`` patches per image,
``D`` joint width, ``L`` feature layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PromptBank:
    """Cached features of one set of ``K`` normal prompt images (compute once, reuse per query).

    Attributes:
        patches: ``L`` tensors ``(1, K·G², D)``: raw prompt patch tokens without CLS, shot-major.
        shots: ``K``.
        image_size: ``S`` the prompts were encoded at (queries must match).
    """

    patches: list[torch.Tensor]
    shots: int
    image_size: int


@dataclass
class PromptSet:
    """Several banks drawn from one set of ``P`` distinct prompt images (the shots × seeds of a class).

    Scored with :meth:`AdaptCLIP.predict_parts`, which computes each query's distances to each of the
    ``P`` images once for all banks and gives, per bank, the numbers of :meth:`AdaptCLIP.predict_features`
    with that bank alone.

    Attributes:
        patches: ``L`` tensors ``(1, P·G², D)``: L2-normalised prompt patch tokens without CLS,
            image-major (empty tensors when ``P = 0``).
        banks: per bank, its images as indices into ``P`` in bank (shot) order; ``()`` is a zero-shot part.
        block: ``G²``, patches per prompt image.
        image_size: ``S`` the prompts were encoded at (queries must match).
    """

    patches: list[torch.Tensor]
    banks: list[tuple[int, ...]]
    block: int
    image_size: int

    def __post_init__(self) -> None:
        n_images = self.patches[0].shape[1] // self.block if self.patches and self.block else 0
        for bank in self.banks:
            if any(not 0 <= i < n_images for i in bank):
                msg = f"prompt set: a bank refers to image(s) {list(bank)} but the set holds {n_images}"
                raise ValueError(msg)
