"""Frozen CLIP text tower that also accepts learnable context embeddings (spec §2).

Shapes: ``T`` number of prompts, ``C`` context length (77), ``E`` text width, ``D`` joint width.
"""

from __future__ import annotations

import torch
from torch import nn

NORMAL_STATES: tuple[str, ...] = (
    "{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
    "{} without damage",
)
ANOMALOUS_STATES: tuple[str, ...] = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")
# 21 templates; the jpeg one appears twice in the release and its features include both copies.
TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.", "a close-up photo of a {}.", "a close-up photo of the {}.",
    "a bright photo of a {}.", "a bright photo of the {}.", "a dark photo of the {}.",
    "a dark photo of a {}.", "a jpeg corrupted photo of the {}.", "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.", "a blurry photo of a {}.", "a photo of a {}.", "a photo of the {}.",
    "a photo of a small {}.", "a photo of the small {}.", "a photo of a large {}.",
    "a photo of the large {}.", "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.", "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)


def static_prompts(object_word: str = "object") -> tuple[list[str], list[str]]:
    """The static prompt ensemble: states × templates, state-major (147 normal, 84 anomalous)."""
    normal = [t.format(s.format(object_word)) for s in NORMAL_STATES for t in TEMPLATES]
    anomalous = [t.format(s.format(object_word)) for s in ANOMALOUS_STATES for t in TEMPLATES]
    return normal, anomalous


class FrozenTextEncoder(nn.Module):
    """The open_clip text tower, frozen; encodes token ids or token embeddings.

    Args:
        clip: an open_clip ``CLIP`` (built-in text tower) or ``CustomTextCLIP`` whose ``.text`` is
            an open_clip ``TextTransformer``.
    """

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        tower = getattr(clip, "text", clip)
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
        missing = [name for name in needed if not hasattr(tower, name)]
        if missing:
            msg = f"text tower {type(tower).__name__} lacks {missing}; only CLIP-style text towers are supported"
            raise ValueError(msg)
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        context = self.positional_embedding.shape[0]
        mask = torch.full((context, context), float("-inf")).triu_(1)
        self.register_buffer("causal_mask", mask, persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        """The text tower always stays in eval mode (it is frozen)."""
        return super().train(False)

    @property
    def width(self) -> int:
        """Text width ``E``."""
        return int(self.token_embedding.weight.shape[1])

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(T, C)`` token ids → ``(T, C, E)`` frozen token embeddings."""
        return self.token_embedding(tokens)

    def encode_embeddings(self, embeddings: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """Run the causal transformer on token embeddings.

        Args:
            embeddings: ``(T, C, E)`` token embeddings (positions are added here); positions after
                the last end-of-text token are not computed (they cannot affect the result).
            eot_index: ``(T,)`` position of the end-of-text token of each prompt.

        Returns:
            ``(T, D)`` projected features at the end-of-text positions (not normalised).
        """
        # Causal attention: nothing after the last end-of-text token can change the pooled features,
        # so the padding is cut off (77 → ~16 positions for the static prompts: ~5× less work).
        length = int(eot_index.max()) + 1
        x = embeddings[:, :length] + self.positional_embedding[:length].to(embeddings.dtype)
        x = self.transformer(x, attn_mask=self.causal_mask[:length, :length].to(x.dtype))
        x = self.ln_final(x)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot_index]
        projection = self.text_projection
        return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(T, C)`` token ids → ``(T, D)`` features (EOT = the largest id, as in CLIP)."""
        return self.encode_embeddings(self.embed_tokens(tokens), tokens.argmax(dim=-1))

    @torch.no_grad()
    def zero_shot_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(T, C)`` token ids of free prompts → ``(T, D)`` unit-norm float32 features on the CPU (the
        applicability gate's ``prompts`` rule compares them with images' global embeddings)."""
        device = self.token_embedding.weight.device
        feats = self.encode_tokens(tokens.to(device)).float()
        return torch.nn.functional.normalize(feats, dim=-1).cpu()
