"""Prompt-query adapter (PQA): align each query patch to its nearest normal-prompt patch (spec §3).

Shapes: ``B`` queries, ``M = K·G²`` pooled prompt patches (shot-major, then row-major), ``D`` width,
``L`` feature layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .heads import patch_grid_to_map

TOP_K_POOL = 10


def nearest_prompt_patch(
    query: torch.Tensor, memory: torch.Tensor, chunk: int = 4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Find, for every query patch, the prompt patch with the smallest ``1 − cos``.

    Args:
        query: ``(B, G², D)`` query patches (CLS removed), any scale.
        memory: ``(B, M, D)`` or ``(1, M, D)`` prompt patches (CLS removed), any scale.
        chunk: queries per distance matrix (bounds memory at ``chunk·G²·M`` floats).

    Returns:
        ``distance`` ``(B, G²)``, ``index`` ``(B, G²)`` (ties → the lowest index, as ``torch.min``),
        and the normalised matched prompt features ``(B, G², D)``.
    """
    q = F.normalize(query, dim=-1)
    m = F.normalize(memory, dim=-1)
    distances, indices, matched = [], [], []
    for start in range(0, q.shape[0], chunk):
        qc = q[start:start + chunk]
        mc = m if m.shape[0] == 1 else m[start:start + chunk]
        mc = mc.expand(qc.shape[0], -1, -1)
        dist, idx = (1.0 - torch.bmm(qc, mc.transpose(1, 2))).min(dim=-1)
        distances.append(dist)
        indices.append(idx)
        matched.append(torch.gather(mc, 1, idx.unsqueeze(-1).expand(-1, -1, mc.shape[-1])))
    return torch.cat(distances), torch.cat(indices), torch.cat(matched)


class PromptQueryAdapter(nn.Module):
    """Per-layer BatchNorm on the joint feature, then a shared map head and a shared score head.

    Args:
        dim: joint embedding width ``D``.
        n_layers: number of feature layers ``L`` (one BatchNorm2d each).
        width: hidden width of the heads (128 in the release; the second stage uses ``width // 2``).
        context: use ``q̂ + |q̂ − p̂|`` (True, the release) or only the residual ``|q̂ − p̂|``.
    """

    def __init__(self, dim: int, n_layers: int = 4, width: int = 128, context: bool = True) -> None:
        super().__init__()
        half = width // 2
        self.context = context
        self.layer_norms = nn.ModuleList(nn.BatchNorm2d(dim) for _ in range(n_layers))
        self.map_head = nn.Sequential(
            nn.Conv2d(dim, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, width, 2, stride=2),
            nn.Conv2d(width, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(half, half, 2, stride=2),
            nn.Conv2d(half, 2, 1),
        )
        self.score_head = nn.Sequential(
            nn.Linear(dim, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
            nn.Linear(width, half, bias=False), nn.BatchNorm1d(half), nn.ReLU(inplace=True),
            nn.Linear(half, 2, bias=False),
        )

    def forward_layer(
        self, layer: int, query: torch.Tensor, memory: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score one feature layer.

        Args:
            layer: feature-layer position ``0..L-1`` (selects the BatchNorm).
            query: ``(B, N, D)`` query tokens, CLS at index 0.
            memory: ``(B or 1, M, D)`` prompt patches without CLS.
            size: output map side ``S``.

        Returns:
            ``logits`` ``(B, 2)``, ``map`` ``(B, 2, S, S)`` softmax probabilities and the alignment
            distance map ``(B, S, S)``.
        """
        patches = query[:, 1:]
        distance, _, matched = nearest_prompt_patch(patches, memory)
        q = F.normalize(patches, dim=-1)
        joint = (q + (q - matched).abs()) if self.context else (q - matched).abs()
        b, n, d = joint.shape
        grid = round(n**0.5)
        fused = self.layer_norms[layer](joint.transpose(1, 2).reshape(b, d, grid, grid))
        maps = self.map_head(fused).softmax(dim=1)
        maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
        flat = fused.flatten(2)
        pooled = 0.5 * (flat.mean(dim=-1) + flat.topk(min(TOP_K_POOL, n), dim=-1).values.mean(dim=-1))
        logits = self.score_head(pooled)
        align = patch_grid_to_map(distance.unsqueeze(1), size)[:, 0]
        return logits, maps, align
