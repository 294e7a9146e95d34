"""Visual adapter (VA): residual MLPs on the global embedding and the last layer's tokens (spec §3)."""

from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    """``y = x + W₂·ReLU(BN(W₁·x))``, no biases, residual weight 1.

    Args:
        dim: feature width ``D``.
        reduction: hidden width is ``D / reduction``.
    """

    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = dim // reduction
        self.net = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dim, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` → ``(..., D)``; every leading position is one BatchNorm row."""
        flat = x.reshape(-1, x.shape[-1])
        return x + self.net(flat).reshape(x.shape)


class VisualAdapter(nn.Module):
    """Global and local residual MLPs.

    Args:
        dim: joint embedding width ``D``.
        reduction: MLP reduction factor (4 in the release).
    """

    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.global_mlp = ResidualMLP(dim, reduction)
        self.local_mlp = ResidualMLP(dim, reduction)

    def forward(self, global_: torch.Tensor, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapt ``(B, D)`` global and ``(B, N, D)`` patch features (CLS token included)."""
        return self.global_mlp(global_), self.local_mlp(patches)
