"""Prompt-query adapter (PQA): align each query patch to its nearest normal-prompt patch (spec §3).

Shapes: ``B`` queries, ``G²`` patches per image, ``M = K·G²`` pooled prompt patches (shot-major, then
row-major), ``D`` width, ``L`` feature layers, ``P`` distinct prompt images shared by several banks.

The nearest-patch search is done per prompt image (:func:`block_distances`: one ``(G², G²)`` distance
matrix per query and prompt image) and then reduced over a bank's images (:func:`reduce_blocks`).
A bank of ``K`` images and a shared set of ``P ⊇ K`` images therefore compute every distance the same
way: scoring several banks against one set (the evaluation's shots × seeds parts) reuses the distance
matrices and gives the numbers of scoring each bank on its own, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from adaptclip_med.model.heads import patch_grid_to_map

TOP_K_POOL = 10


def top_k_mean(values: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the ``k`` largest of ``(B, C, N)`` values along ``N`` → ``(B, C)`` (``topk`` order, exact).

    PyTorch's CPU ``topk`` selects by partial sort when ``N ≥ 64·k`` and by ``nth_element`` below; for
    ``256 ≤ N < 64·k`` (e.g. the 576 patches of ViT-L/14 at 336 px) the latter is up to 2× slower, so
    such rows are padded with ``-inf`` up to ``64·k``: the same values in the same order, faster.
    """
    n = values.shape[-1]
    if values.device.type == "cpu" and 256 <= n < 64 * k:
        pad = values.new_full((*values.shape[:-1], 64 * k - n), float("-inf"))
        values = torch.cat([values, pad], dim=-1)
    return values.topk(k, dim=-1).values.mean(dim=-1)


def block_distances(query_n: torch.Tensor, memory_n: torch.Tensor, block: int, chunk: int = 4
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest ``1 − cos`` of every query patch within each prompt image.

    Args:
        query_n: ``(B, G², D)`` L2-normalised query patches.
        memory_n: ``(B or 1, K·block, D)`` L2-normalised prompt patches, image-major.
        block: patches per prompt image (``G²``; ``M`` when the memory is one block).
        chunk: queries per distance matrix (bounds memory at ``chunk·G²·block`` floats).

    Returns:
        ``distance`` ``(B, G², K)`` and ``index`` ``(B, G², K)``: the within-image position of the
        nearest patch (ties → the lowest, as ``torch.min``).
    """
    n_blocks = memory_n.shape[1] // block
    dist_chunks, idx_chunks = [], []
    for start in range(0, query_n.shape[0], chunk):
        qc = query_n[start:start + chunk]
        mc = memory_n if memory_n.shape[0] == 1 else memory_n[start:start + chunk]
        mc = mc.expand(qc.shape[0], -1, -1)
        per_image = [(1.0 - torch.bmm(qc, mc[:, k * block:(k + 1) * block].transpose(1, 2))).min(dim=-1)
                     for k in range(n_blocks)]
        dist_chunks.append(torch.stack([d for d, _ in per_image], dim=-1))
        idx_chunks.append(torch.stack([i for _, i in per_image], dim=-1))
    return torch.cat(dist_chunks), torch.cat(idx_chunks)


def reduce_blocks(distance: torch.Tensor, index: torch.Tensor, members: Sequence[int], block: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest patch over the prompt images ``members`` of :func:`block_distances`' output.

    Args:
        distance / index: ``(B, G², P)`` per-image minima and their within-image positions.
        members: the bank's images (indices into ``P``), in bank order.
        block: patches per prompt image.

    Returns:
        ``distance`` ``(B, G²)``; ``index`` ``(B, G²)`` into the bank's pooled patches
        (``position·block + within``, ties → the lowest, as ``torch.min`` over the pooled bank);
        ``row`` ``(B, G²)``: the same patch's row in the shared memory (``member·block + within``).
    """
    chosen = torch.as_tensor(list(members), dtype=torch.long, device=distance.device)
    best, position = distance.index_select(-1, chosen).min(dim=-1)
    within = index.index_select(-1, chosen).gather(-1, position.unsqueeze(-1)).squeeze(-1)
    return best, position * block + within, chosen[position] * block + within


def _gather_rows(memory_n: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``(B, G², D)`` rows ``rows (B, G²)`` of ``memory_n (B or 1, M, D)``."""
    memory_n = memory_n.expand(rows.shape[0], -1, -1)
    return torch.gather(memory_n, 1, rows.unsqueeze(-1).expand(-1, -1, memory_n.shape[-1]))


def _block_size(query: torch.Tensor, memory: torch.Tensor) -> int:
    """Patches per prompt image: ``G²`` of the queries when the memory is whole images of that size."""
    n, m = query.shape[1], memory.shape[1]
    return n if m % n == 0 else m


def nearest_prompt_patch(
    query: torch.Tensor, memory: torch.Tensor, chunk: int = 4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Find, for every query patch, the prompt patch with the smallest ``1 − cos``.

    Args:
        query: ``(B, G², D)`` query patches (CLS removed), any scale.
        memory: ``(B, M, D)`` or ``(1, M, D)`` prompt patches (CLS removed), any scale.
        chunk: queries per distance matrix (bounds memory at ``chunk·G²·G²`` floats).

    Returns:
        ``distance`` ``(B, G²)``, ``index`` ``(B, G²)`` (ties → the lowest index, as ``torch.min``),
        and the normalised matched prompt features ``(B, G², D)``.
    """
    q = F.normalize(query, dim=-1)
    m = F.normalize(memory, dim=-1)
    block = _block_size(query, memory)
    dist, idx = block_distances(q, m, block, chunk)
    distance, index, rows = reduce_blocks(dist, idx, range(m.shape[1] // block), block)
    return distance, index, _gather_rows(m, rows)


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
        return self.heads(layer, F.normalize(patches, dim=-1), matched, distance, size)

    @staticmethod
    def prompt_distances(query: torch.Tensor, memory_n: torch.Tensor, block: int
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One layer's distances from every query patch to each of ``P`` prompt images (for :meth:`forward_bank`).

        Args:
            query: ``(B, N, D)`` query tokens, CLS at index 0.
            memory_n: ``(1, P·block, D)`` L2-normalised prompt patches without CLS, image-major.
            block: patches per prompt image (``G²``).

        Returns:
            the normalised query patches ``(B, G², D)`` and :func:`block_distances`' ``(B, G², P)`` pair.
        """
        q = F.normalize(query[:, 1:], dim=-1)
        return (q, *block_distances(q, memory_n, block))

    def forward_bank(self, layer: int, distances: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                     memory_n: torch.Tensor, block: int, members: Sequence[int], size: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score one layer against the bank ``members`` of a shared prompt set, from :meth:`prompt_distances`.

        Gives what :meth:`forward_layer` gives with that bank alone, bit for bit (same distances, and
        the heads run on the same ``B`` queries).

        Returns:
            ``logits (B, 2)``, ``map (B, 2, S, S)``, ``align (B, S, S)``.
        """
        q, dist, idx = distances
        distance, _, rows = reduce_blocks(dist, idx, members, block)
        return self.heads(layer, q, _gather_rows(memory_n, rows), distance, size)

    def heads(self, layer: int, query_n: torch.Tensor, matched: torch.Tensor, distance: torch.Tensor, size: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The joint feature of queries and their matched prompt patches through the map and score heads.

        Args:
            layer: feature-layer position (selects the BatchNorm).
            query_n: ``(B, G², D)`` L2-normalised query patches.
            matched: ``(B, G², D)`` their nearest normalised prompt patches.
            distance: ``(B, G²)`` the ``1 − cos`` of each match.
            size: output map side ``S``.

        Returns:
            ``logits`` ``(B, 2)``, ``map`` ``(B, 2, S, S)`` and ``align`` ``(B, S, S)``.
        """
        joint = (query_n + (query_n - matched).abs()) if self.context else (query_n - matched).abs()
        b, n, d = joint.shape
        grid = round(n**0.5)
        fused = self.layer_norms[layer](joint.transpose(1, 2).reshape(b, d, grid, grid))
        # channels-last: the head's convolutions ran ~1.5x faster on the CPU (72 maps of 14 x 14, ViT-B-16)
        maps = self.map_head(fused.contiguous(memory_format=torch.channels_last)).softmax(dim=1)
        maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
        flat = fused.flatten(2)
        pooled = 0.5 * (flat.mean(dim=-1) + top_k_mean(flat, min(TOP_K_POOL, n)))
        logits = self.score_head(pooled)
        # 1 − cos is ≥ 0; rounding makes it about ±1e-7 where a query patch equals a prompt patch (a query
        # that is also a prompt, a duplicate image), and the harmonic mean over the layers (n / Σ 1/x) of
        # such mixed-sign values is unbounded (it reached 4.0 and image scores moved by 0.28 between torch
        # and an exported engine); clamped, it is 0 there, as with exact zeros
        align = patch_grid_to_map(distance.clamp_min(0.0).unsqueeze(1), size)[:, 0]
        return logits, maps, align
