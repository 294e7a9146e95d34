"""Typed outputs of the model (anomalib-style field names)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Branches:
    """Differentiable per-branch outputs for one batch (training and analysis).

    Attributes:
        va_logits, ta_logits: ``(B, 2)`` cos/0.07 against (normal, anomalous) text.
        va_map, ta_map: ``(B, 2, S, S)`` softmax probability maps.
        pqa_logits: ``L`` tensors ``(B, 2)`` (empty without prompts).
        pqa_map: ``L`` tensors ``(B, 2, S, S)`` softmax probability maps.
        align: ``L`` alignment-distance maps ``(B, S, S)`` (1 − cos to the nearest prompt patch).
    """

    va_logits: torch.Tensor
    va_map: torch.Tensor
    ta_logits: torch.Tensor
    ta_map: torch.Tensor
    pqa_logits: list[torch.Tensor] = field(default_factory=list)
    pqa_map: list[torch.Tensor] = field(default_factory=list)
    align: list[torch.Tensor] = field(default_factory=list)


@dataclass
class AnomalyOutput:
    """What :meth:`AdaptCLIP.predict` returns (on the CPU, float32).

    Attributes:
        anomaly_map: ``(B, S, S)`` fused map after the σ=4 Gaussian: the pixel output.
        pred_score: ``(B,)`` image anomaly score in [0, 1].
        maps: per-branch ``(B, S, S)`` maps: ``"va"``, ``"ta"`` (anomalous channel),
            ``"pre_blur"`` (fused, before the Gaussian) and, with prompts, ``"pqa"`` (mean over
            layers) and ``"align"`` (harmonic mean of the alignment distances).
        scores: per-branch ``(B,)`` scores: ``"va"``, ``"ta"``, ``"map_max"`` and, with prompts,
            ``"pqa"`` (mean over layers) and ``"image_prob_mean"``.
        shots: number of normal prompt images used (0 = zero-shot).
    """

    anomaly_map: torch.Tensor
    pred_score: torch.Tensor
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    shots: int = 0

    def __len__(self) -> int:
        return int(self.pred_score.shape[0])

    @staticmethod
    def concatenate(parts: list[AnomalyOutput]) -> AnomalyOutput:
        """Join outputs of consecutive batches along ``B``."""
        first = parts[0]
        return AnomalyOutput(
            anomaly_map=torch.cat([p.anomaly_map for p in parts]),
            pred_score=torch.cat([p.pred_score for p in parts]),
            maps={k: torch.cat([p.maps[k] for p in parts]) for k in first.maps},
            scores={k: torch.cat([p.scores[k] for p in parts]) for k in first.scores},
            shots=first.shots,
        )
