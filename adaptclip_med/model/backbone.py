"""Frozen CLIP vision tower with the V-V (value-value attention) path (spec §1).

Shapes: ``B`` batch, ``G`` grid side, ``N = 1 + G²`` tokens (CLS first), ``W`` vision width,
``D`` joint embedding width, ``L`` feature layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adaptclip_med.model.pos_embed import resize_positional_embedding


@dataclass
class ImageFeatures:
    """What the frozen backbone gives the adapters.

    Attributes:
        global_: ``(B, D)`` original-path CLS token after the last block times the visual
            projection, **without** ``ln_post`` (spec §1).
        patches: ``L`` tensors ``(B, N, D)``: V-V-path tokens at each feature layer after
            ``ln_post`` and the projection; index 0 of ``N`` is the CLS token.
    """

    global_: torch.Tensor
    patches: list[torch.Tensor]

    @property
    def grid(self) -> int:
        """Patch grid side ``G``."""
        return round((self.patches[0].shape[1] - 1) ** 0.5)

    def __len__(self) -> int:
        return int(self.global_.shape[0])

    def select(self, index: slice | list[int]) -> ImageFeatures:
        """The features of some images: ``index`` along ``B``."""
        return ImageFeatures(self.global_[index], [p[index] for p in self.patches])

    def to(self, device: torch.device | str) -> ImageFeatures:
        """The same features on another device."""
        return ImageFeatures(self.global_.to(device), [p.to(device) for p in self.patches])

    @staticmethod
    def concatenate(parts: list[ImageFeatures]) -> ImageFeatures:
        """Join features of consecutive batches along ``B``."""
        return ImageFeatures(torch.cat([p.global_ for p in parts]),
                             [torch.cat(layer) for layer in zip(*(p.patches for p in parts), strict=True)])


def default_layers(depth: int) -> tuple[int, ...]:
    """Feature layers (1-indexed) derived from the depth: 24 → (6, 12, 18, 24); 12 → (3, 6, 9, 12)."""
    if depth % 4:
        msg = f"cannot derive 4 evenly spaced feature layers from {depth} blocks; pass feature_layers"
        raise ValueError(msg)
    step = depth // 4
    return tuple(step * i for i in range(1, 5))


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, N, W)`` → ``(B, heads, N, W / heads)``."""
    b, n, w = x.shape
    return x.view(b, n, heads, w // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, heads, N, d)`` → ``(B, N, heads·d)``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Fused scaled-dot-product attention over ``heads`` heads: ``(B, N, W)`` ×3 → ``(B, N, W)``."""
    return _merge_heads(F.scaled_dot_product_attention(*(_split_heads(t, heads) for t in (q, k, v))))


#: An attention kernel with :func:`attend`'s signature (an exporter may swap in one that it writes as one node).
Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


class FrozenCLIPVision(nn.Module):
    """The open_clip ViT image tower, frozen, with the AdaptCLIP V-V path.

    The block weights are the open_clip modules themselves (shared, never copied or mutated).
    Both paths use fused scaled-dot-product attention; the V-V path reuses the value projection
    computed for the original path, so it adds only its attention and output projection.

    Args:
        visual: an open_clip ``VisionTransformer`` with plain ``ResidualAttentionBlock`` blocks.
        feature_layers: 1-indexed blocks whose V-V tokens are returned (default: from the depth).
        vv_start: first 1-indexed block of the V-V path (default: the first feature layer).
    """

    def __init__(
        self,
        visual: nn.Module,
        feature_layers: Sequence[int] | None = None,
        vv_start: int | None = None,
    ) -> None:
        super().__init__()
        self.visual = visual
        blocks = visual.transformer.resblocks
        depth = len(blocks)
        self.feature_layers = tuple(feature_layers) if feature_layers else default_layers(depth)
        self.vv_start = int(vv_start) if vv_start is not None else self.feature_layers[0]
        if not 1 <= self.vv_start <= depth or any(not 1 <= f <= depth for f in self.feature_layers):
            msg = f"feature layers {self.feature_layers} / V-V start {self.vv_start} outside 1..{depth}"
            raise ValueError(msg)
        if min(self.feature_layers) < self.vv_start:
            msg = (f"feature layer {min(self.feature_layers)} precedes the V-V start block {self.vv_start}; "
                   "patch features come from the V-V path, so start it at or before the first feature layer")
            raise ValueError(msg)
        if not all(isinstance(getattr(b, "attn", None), nn.MultiheadAttention) for b in blocks):
            msg = "only open_clip ViTs with standard attention blocks are supported (no custom/timm towers)"
            raise ValueError(msg)
        self.patch_size = int(visual.conv1.kernel_size[0])
        self.width = int(visual.conv1.out_channels)
        self.heads = int(blocks[0].attn.num_heads)
        self.embed_dim = int(visual.proj.shape[1])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenCLIPVision:
        """The backbone always stays in eval mode (it is frozen)."""
        return super().train(False)

    def positional_embedding(self, grid: int) -> torch.Tensor:
        """``(1 + G², W)`` float32 positional table for a ``G×G`` grid (stored parameter untouched)."""
        return resize_positional_embedding(self.visual.positional_embedding, grid)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` → ``(B, N, W)`` after conv, CLS, positions and ``ln_pre``."""
        v = self.visual
        x = v.conv1(images.to(v.conv1.weight.dtype))
        grid = x.shape[-1]
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + self.positional_embedding(grid).to(device=x.device, dtype=x.dtype)
        return v.ln_pre(x)

    def _block(
        self, block: nn.Module, x: torch.Tensor, vv: torch.Tensor | None, attention: Attention = attend
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One block of both paths: returns the original path's output and the updated V-V state."""
        attn: nn.MultiheadAttention = block.attn
        h = block.ln_1(x)
        qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.chunk(3, dim=-1)
        x_next = x + block.ls_1(attn.out_proj(attention(q, k, v, self.heads)))
        x_next = x_next + block.ls_2(block.mlp(block.ln_2(x_next)))
        if vv is not None:
            vv = vv + attn.out_proj(attention(v, v, v, self.heads))
        return x_next, vv

    def encode_image(self, images: torch.Tensor, attention: Attention = attend) -> ImageFeatures:
        """Run both paths.

        Args:
            images: ``(B, 3, S, S)`` CLIP-normalised, ``S`` a multiple of the patch size.
            attention: the attention kernel (:func:`attend`; the ONNX Runtime export passes one that it
                writes as a single fused node).

        Returns:
            :class:`ImageFeatures` with ``global_`` ``(B, D)`` and ``L`` patch tensors ``(B, N, D)``.
        """
        v = self.visual
        x = self._embed(images)
        vv: torch.Tensor | None = None
        taps: dict[int, torch.Tensor] = {}
        for index, block in enumerate(v.transformer.resblocks, start=1):
            if index == self.vv_start:
                vv = x
            x, vv = self._block(block, x, vv, attention)
            if index in self.feature_layers:
                taps[index] = v.ln_post(vv) @ v.proj
        global_ = x[:, 0] @ v.proj
        return ImageFeatures(global_=global_, patches=[taps[i] for i in self.feature_layers])
