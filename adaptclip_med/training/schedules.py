"""Which branches are trained in an epoch, and their losses on one batch.

Schedules (method spec §3, §5):

- ``simultaneous`` (default, the released run): every epoch, one optimiser step on the sum of the
  VA loss (adapted image features against the *static* text features), the TA loss (*learned* text
  features against the *frozen, un-adapted* image features) and the PQA losses. The branches share no
  parameters, so each adapter gets exactly the gradient of its own loss.
- ``alternate-epoch``: a literal alternation. Odd epochs (1, 3, ...) train TA with VA frozen (VA in
  eval mode, not run); even epochs train VA with TA frozen. PQA trains every epoch.
- ``joint``: the paper's weaker ablation: the learned text features are scored against the *adapted*
  image features, one coupled loss through both VA and TA (logged as branch ``joint``), plus PQA.

A branch's loss is the sum of its four terms (:func:`~adaptclip_med.training.losses.branch_loss`);
PQA contributes one such loss per feature layer (branches ``pqa6``, ``pqa12``, ... by block number).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from adaptclip_med.model.heads import text_similarity
from adaptclip_med.training.config import TrainConfig
from adaptclip_med.training.losses import branch_loss

MODULE_OF = {"va": "visual_adapter", "ta": "text_adapter", "pqa": "prompt_query_adapter"}


@dataclass(frozen=True)
class EpochPlan:
    """What one epoch computes: the loss branches and the adapters that learn (the rest are frozen)."""

    losses: tuple[str, ...]
    trained: tuple[str, ...]


def epoch_plan(config: TrainConfig, epoch: int) -> EpochPlan:
    """The plan of 1-indexed ``epoch`` under ``config.schedule`` and ``config.branches``."""
    chosen = config.branches
    pqa = ("pqa",) if "pqa" in chosen else ()
    if config.schedule == "alternate-epoch":
        side = "ta" if epoch % 2 == 1 else "va"
        return EpochPlan(losses=(side, *pqa), trained=(side, *pqa))
    if config.schedule == "joint":
        return EpochPlan(losses=("joint", *pqa), trained=("va", "ta", *pqa))
    return EpochPlan(losses=chosen, trained=chosen)


def set_modes(model: torch.nn.Module, plan: EpochPlan) -> None:
    """Backbone in eval mode; trained adapters in train mode (batch statistics), frozen ones in eval."""
    model.eval()
    for branch, name in MODULE_OF.items():
        getattr(model, name).train(branch in plan.trained)


def trainable_parameters(model: torch.nn.Module, branches: Sequence[str]) -> list[torch.nn.Parameter]:
    """Parameters of the adapters of ``branches`` (in a fixed order, for the optimiser)."""
    params: list[torch.nn.Parameter] = []
    for branch in ("va", "ta", "pqa"):
        if branch in branches:
            params.extend(p for p in getattr(model, MODULE_OF[branch]).parameters() if p.requires_grad)
    return params


def batch_losses(
    model: torch.nn.Module,
    plan: EpochPlan,
    global_: torch.Tensor,
    patches: Sequence[torch.Tensor],
    prompt_patches: Sequence[torch.Tensor] | None,
    label: torch.Tensor,
    mask: torch.Tensor,
) -> dict[str, dict[str, torch.Tensor]]:
    """Loss terms of every branch in ``plan.losses`` on one batch.

    Args:
        model: an ``AdaptCLIP``.
        plan: the epoch's plan.
        global_: (B, D) frozen global features.
        patches: L tensors (B, N, D) frozen layer tokens (CLS at index 0).
        prompt_patches: L tensors (B, G², D) of each query's prompt (CLS removed); needed for PQA.
        label: (B,) 0/1 image labels.
        mask: (B, S, S) 0/1 pixel masks at the model resolution.

    Returns:
        ``{branch: {term: scalar}}``.
    """
    size = mask.shape[-1]
    out: dict[str, dict[str, torch.Tensor]] = {}
    last = patches[-1]
    if "va" in plan.losses or "joint" in plan.losses:
        adapted_global, adapted_local = model.visual_adapter(global_, last)
    if "va" in plan.losses:
        out["va"] = branch_loss(*text_similarity(adapted_global, adapted_local, model.static_text_features,
                                                 size), label, mask)
    if "ta" in plan.losses or "joint" in plan.losses:
        learned = model.learned_text_features()
    if "ta" in plan.losses:
        out["ta"] = branch_loss(*text_similarity(global_, last, learned, size), label, mask)
    if "joint" in plan.losses:
        joint = text_similarity(adapted_global, adapted_local, learned, size)
        out["joint"] = branch_loss(*joint, label, mask)
    if "pqa" in plan.losses:
        if prompt_patches is None:
            msg = "the PQA branch needs prompt features; got none. Train with prompts or drop 'pqa'."
            raise ValueError(msg)
        layer_ids = model.backbone.feature_layers
        for index, (query, memory) in enumerate(zip(patches, prompt_patches, strict=True)):
            logits, probs, _ = model.prompt_query_adapter.forward_layer(index, query, memory, size)
            out[f"pqa{layer_ids[index]}"] = branch_loss(logits, probs, label, mask)
    return out
