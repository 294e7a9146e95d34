"""Component level: our modules fed with the authors' stored intermediates (README §8.B)."""

from __future__ import annotations

import pytest
import torch

from adaptclip_med.model.backbone import ImageFeatures
from adaptclip_med.model.fusion import fuse_few_shot, fuse_zero_shot
from adaptclip_med.model.prompt_query import nearest_prompt_patch

from .conftest import SAMPLE

pytestmark = pytest.mark.conformance
LAYERS = (2, 4, 6, 8)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def absdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def stored_features(ref, who: str = "query") -> ImageFeatures:
    return ImageFeatures(ref[f"{who}.image_embedding"], [ref[f"{who}.patch_tokens.layer{i}"] for i in LAYERS])


def test_text_features(conf_model, ref):
    assert rel(conf_model.static_text_features, ref["text.static_features"]) < 1e-4
    with torch.no_grad():
        assert rel(conf_model.learned_text_features(), ref["text.learned_features"]) < 1e-4


def test_positional_embedding_resize(conf_model, ref):
    stored = conf_model.backbone.visual.positional_embedding.detach().clone()
    table = conf_model.backbone.positional_embedding(37)
    assert absdiff(table, ref["visual.positional_embedding_37x37"]) < 1e-6
    assert torch.equal(conf_model.backbone.visual.positional_embedding, stored)  # not mutated


@torch.no_grad()
def test_visual_and_text_adapters(conf_model, ref):
    branches = conf_model.branch_outputs(stored_features(ref), learned_text=ref["text.learned_features"])
    assert rel(branches.va_logits, ref["va.logits"]) < 1e-4
    assert rel(branches.ta_logits, ref["ta.logits"]) < 1e-4
    assert absdiff(branches.va_logits.softmax(-1)[:, 1], ref["va.prob"]) < 1e-5
    assert absdiff(branches.ta_logits.softmax(-1)[:, 1], ref["ta.prob"]) < 1e-5
    assert absdiff(branches.va_map[SAMPLE[0], :, ::9, ::9], ref["va.map"]) < 1e-5
    assert absdiff(branches.ta_map[SAMPLE[0], :, ::9, ::9], ref["ta.map"]) < 1e-5


@pytest.mark.parametrize("k", [1, 2])
@torch.no_grad()
def test_prompt_query_adapter(conf_model, ref, k):
    query = stored_features(ref)
    memory = [ref[f"prompt.patch_tokens.layer{i}"][:k, 1:].reshape(1, -1, 64) for i in LAYERS]
    for layer, i in enumerate(LAYERS):
        _, index, _ = nearest_prompt_patch(query.patches[layer][:, 1:], memory[layer])
        assert torch.equal(index.int(), ref[f"k{k}.diag.nn_index.layer{i}"])
    branches = conf_model.branch_outputs(query, memory, learned_text=ref["text.learned_features"])
    for layer, i in enumerate(LAYERS):
        assert rel(branches.pqa_logits[layer], ref[f"k{k}.pqa.logits.layer{i}"]) < 1e-4
        assert absdiff(branches.pqa_logits[layer].softmax(-1)[:, 1], ref[f"k{k}.pqa.prob.layer{i}"]) < 1e-5
        assert absdiff(branches.pqa_map[layer][:, 1, ::9, ::9], ref[f"k{k}.pqa.map.layer{i}"]) < 1e-5
        assert absdiff(branches.align[layer][:, ::9, ::9], ref[f"k{k}.pqa.align.layer{i}"]) < 1e-5


def test_fusion_pointwise_on_sampled_maps(ref):
    va, ta = ref["va.map"][:, 1], ref["ta.map"][:, 1]
    zero = fuse_zero_shot(va, ta, ref["va.prob"], ref["ta.prob"], sigma=0)
    assert absdiff(zero["pre_blur"], ref["k0.fused.map_pre_gaussian"]) < 1e-6
    for k in (1, 2):
        few = fuse_few_shot(
            va, ta, [ref[f"k{k}.pqa.map.layer{i}"] for i in LAYERS], [ref[f"k{k}.pqa.align.layer{i}"] for i in LAYERS],
            ref["va.prob"], ref["ta.prob"], ref[f"k{k}.pqa.prob"], sigma=0,
        )
        assert absdiff(few["pre_blur"], ref[f"k{k}.fused.map_pre_gaussian"]) < 1e-6
        assert absdiff(few["image_prob_mean"], ref[f"k{k}.fused.image_prob_mean"]) < 1e-6
