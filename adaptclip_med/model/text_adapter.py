"""Text adapter (TA): learnable normal/anomalous context vectors through the frozen text tower (spec §2)."""

from __future__ import annotations

import torch
from torch import nn

from adaptclip_med.model.text_encoder import FrozenTextEncoder


class TextAdapter(nn.Module):
    """Two learnable contexts of ``n_ctx`` token embeddings, one per class.

    The prompt is the tokenisation of ``"X X … X."`` (``n_ctx`` placeholders): start token, the
    placeholders, ``"."``, end token, padding. The placeholders' embeddings are replaced by the
    learnable vectors; everything else stays the frozen token embedding.

    Args:
        template_tokens: ``(C,)`` token ids of the placeholder prompt.
        width: text width ``E``.
        n_ctx: number of learnable vectors per class (12 in the release).
    """

    def __init__(self, template_tokens: torch.Tensor, width: int, n_ctx: int = 12) -> None:
        super().__init__()
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(torch.empty(2, n_ctx, width).normal_(0.0, 0.02))
        self.register_buffer("template_tokens", template_tokens.long().clone(), persistent=False)

    def forward(self, encoder: FrozenTextEncoder) -> torch.Tensor:
        """Return the learned text features ``(2, D)`` (row 0 normal, row 1 anomalous), unnormalised."""
        tokens = self.template_tokens.unsqueeze(0).expand(2, -1)
        frozen = encoder.embed_tokens(tokens).to(self.ctx.dtype)
        embeddings = torch.cat([frozen[:, :1], self.ctx, frozen[:, 1 + self.n_ctx:]], dim=1)
        return encoder.encode_embeddings(embeddings, tokens.argmax(dim=-1))
