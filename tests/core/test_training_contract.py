"""Contract: only adapter parameters learn; the frozen CLIP is bit-identical after an optimiser step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adaptclip_med import load_model


def test_only_adapters_receive_gradients_and_backbone_stays_frozen():
    model = load_model("adaptclip-tiny", None, image_size=224, allow_random_backbone=True, seed=0)
    model.train()
    assert not model.backbone.training and not model.text_encoder.training  # frozen towers stay in eval
    frozen_before = {k: v.clone() for k, v in model.state_dict().items()
                     if k.startswith(("backbone.", "text_encoder."))}
    gen = torch.Generator().manual_seed(0)
    images, prompts = torch.randn(2, 3, 224, 224, generator=gen), torch.randn(2, 3, 224, 224, generator=gen)
    with torch.no_grad():
        feats, prompt_feats = model.encode_images(images), model.encode_images(prompts)
    memory = [p[:, 1:] for p in prompt_feats.patches]  # per-query prompt (B, G², D)
    branches = model.branch_outputs(feats, memory)
    labels = torch.tensor([0, 1])
    loss = F.cross_entropy(branches.va_logits, labels) + F.cross_entropy(branches.ta_logits, labels)
    loss = loss + sum(F.cross_entropy(lg, labels) for lg in branches.pqa_logits)
    loss = loss + branches.va_map[:, 1].mean() + sum(m[:, 1].mean() for m in branches.pqa_map)
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapters = ("text_adapter.", "visual_adapter.", "prompt_query_adapter.")
    assert trainable and all(n.startswith(adapters) for n in trainable)
    for name, param in model.named_parameters():
        if name in trainable:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
    for key, value in model.state_dict().items():
        if key in frozen_before:
            assert torch.equal(value, frozen_before[key]), key


def test_bf16_mode_runs_close_to_fp32():
    model = load_model("adaptclip-tiny", None, image_size=224, allow_random_backbone=True, precision="bf16")
    ref = load_model("adaptclip-tiny", None, image_size=224, allow_random_backbone=True)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    a, b = model.predict(images), ref.predict(images)
    assert a.anomaly_map.dtype == torch.float32
    assert (a.pred_score - b.pred_score).abs().max() < 0.05
    assert not torch.equal(a.anomaly_map, b.anomaly_map)  # it really ran in reduced precision
