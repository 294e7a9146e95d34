"""Fidelity bounds tighter than the README's 1e-4 (issue 16): 1e-5 on the fused maps and scores.

The fixture's end-to-end few-shot differences (2.7e-5) are nearest-neighbour flips at official gaps of
0, 1.2e-7 and 1.8e-7, caused by ~1e-7 differences in our backbone's tokens (test_end_to_end checks
1e-5 away from them). Fed the official tokens there are no flips, so the whole scoring chain — the
per-prompt-image nearest-patch search, the channels-last PQA map head, the padded top-k, the
banded-matrix Gaussian, ``predict_parts`` — must stay within 1e-5 of the authors' numbers. The last
test checks the same chain at ViT-L-14-336 size (768 wide, 37 × 37 and 24 × 24 grids) against a plain
float32 transcription of the authors' order of operations (README §4.5–§4.6).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptclip_med.model.backbone import ImageFeatures
from adaptclip_med.model.fusion import fuse_few_shot, gaussian_kernel
from adaptclip_med.model.prompt_query import PromptQueryAdapter, nearest_prompt_patch

pytestmark = pytest.mark.conformance
LAYERS = (2, 4, 6, 8)
TIGHT = 1e-5


def absdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def stored(ref, who: str, n: int | None = None) -> ImageFeatures:
    return ImageFeatures(ref[f"{who}.image_embedding"][:n], [ref[f"{who}.patch_tokens.layer{i}"][:n] for i in LAYERS])


@pytest.mark.parametrize("k", [0, 1, 2])
def test_official_tokens_through_scoring_within_1e5(conf_model, ref, k):
    """Measured: fused maps within 5.4e-7, map_max 2.4e-7, scores 1.2e-7 (predict_features and predict_parts)."""
    query = stored(ref, "query")
    bank = conf_model.bank_from_features([stored(ref, "prompt", k)]) if k else None
    out = conf_model.predict_features(query, bank)
    prompt_images = [ImageFeatures(ref["prompt.image_embedding"][i:i + 1],
                                   [ref[f"prompt.patch_tokens.layer{j}"][i:i + 1] for j in LAYERS]) for i in range(2)]
    part = conf_model.predict_parts(query, conf_model.prompt_set(prompt_images, [tuple(range(k))]), details=True)[0]
    assert torch.equal(part.anomaly_map, out.anomaly_map) and torch.equal(part.pred_score, out.pred_score)
    assert absdiff(out.maps["pre_blur"][:, ::9, ::9], ref[f"k{k}.fused.map_pre_gaussian"]) < TIGHT
    assert absdiff(out.anomaly_map[:, ::9, ::9], ref[f"k{k}.fused.map"]) < TIGHT
    assert absdiff(out.scores["map_max"], ref[f"k{k}.fused.map_max"]) < TIGHT
    assert absdiff(out.pred_score, ref[f"k{k}.image_score"]) < TIGHT
    if k:
        assert absdiff(out.scores["pqa"], ref[f"k{k}.pqa.prob"]) < TIGHT
        assert absdiff(out.scores["image_prob_mean"], ref[f"k{k}.fused.image_prob_mean"]) < TIGHT


# --- ViT-L size: the authors' order of operations, written out plainly -------------------------------------

def authors_gaussian(maps: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """scipy ``gaussian_filter(mode='reflect')``: float32 taps, axis 0 then axis 1 as one-channel convolutions."""
    kernel = gaussian_kernel(sigma).float()
    r = (kernel.numel() - 1) // 2
    x = maps.unsqueeze(1)
    x = F.conv2d(torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2), kernel.view(1, 1, -1, 1))
    x = F.conv2d(torch.cat([x[..., :r].flip(-1), x, x[..., -r:].flip(-1)], dim=-1), kernel.view(1, 1, 1, -1))
    return x[:, 0]


def authors_pqa(pqa: PromptQueryAdapter, layer: int, query: torch.Tensor, memory: torch.Tensor, size: int):
    """One ``1 − q Pᵀ`` over the pooled bank, ``torch.min``, contiguous convolutions, ``topk`` of the rows."""
    q = F.normalize(query[:, 1:], dim=-1)
    m = F.normalize(memory, dim=-1).expand(q.shape[0], -1, -1)
    dist, idx = (1.0 - torch.bmm(q, m.transpose(1, 2))).min(dim=-1)
    joint = q + (q - torch.gather(m, 1, idx.unsqueeze(-1).expand(-1, -1, m.shape[-1]))).abs()
    b, n, d = joint.shape
    g = round(n ** 0.5)
    fused = pqa.layer_norms[layer](joint.transpose(1, 2).reshape(b, d, g, g))
    maps = F.interpolate(pqa.map_head(fused).softmax(dim=1), size=(size, size), mode="bilinear", align_corners=False)
    flat = fused.flatten(2)
    logits = pqa.score_head(0.5 * (flat.mean(-1) + flat.topk(10, dim=-1).values.mean(-1)))
    align = F.interpolate(dist.reshape(b, 1, g, g), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return logits, maps[:, 1], align, idx


@pytest.mark.parametrize("grid", [37, 24])  # 518 px (1369 patches) and 336 px (576: the padded top-k)
@torch.no_grad()
def test_vitl_sized_scoring_matches_authors_order(grid):
    """Measured (CPU, fp32): PQA logits, maps and alignment bit-identical, fused map within 4.5e-8."""
    torch.manual_seed(0)
    dim, shots, batch, size = 768, 2, 2, grid * 14
    pqa = PromptQueryAdapter(dim, len(LAYERS), 128).eval()
    for mod in pqa.modules():
        if isinstance(mod, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.normal_(1, 0.1)
            mod.bias.normal_(0, 0.1)
    ours, theirs = [], []
    for layer in range(len(LAYERS)):
        memory = torch.randn(1, shots * grid * grid, dim)
        # every query patch is a noisy copy of some prompt patch
        near = memory[0][torch.randint(0, memory.shape[1], (batch, grid * grid))]
        query = torch.cat([torch.randn(batch, 1, dim), near + 0.35 * torch.randn_like(near)], dim=1)
        ours.append(pqa.forward_layer(layer, query, memory, size))
        theirs.append(authors_pqa(pqa, layer, query, memory, size))
        assert torch.equal(nearest_prompt_patch(query[:, 1:], memory)[1], theirs[-1][3])
        assert absdiff(ours[-1][0], theirs[-1][0]) < 1e-6
        assert absdiff(ours[-1][1][:, 1], theirs[-1][1]) < 1e-6
        assert absdiff(ours[-1][2], theirs[-1][2]) < 1e-6
    va, ta = torch.rand(batch, size, size) * 0.5 + 0.25, torch.rand(batch, size, size) * 0.5 + 0.25
    va_p, ta_p = torch.rand(batch), torch.rand(batch)
    fused = fuse_few_shot(va, ta, [m[:, 1] for _, m, _ in ours], [a for _, _, a in ours], va_p, ta_p,
                          torch.stack([lg.softmax(-1)[:, 1] for lg, _, _ in ours]).mean(0))
    pqa_map = torch.stack([m for _, m, _, _ in theirs]).mean(0)
    align = len(theirs) / sum(1.0 / a for _, _, a, _ in theirs)
    pre = 2 / (1 / ((va + ta + pqa_map) / 3) + 1 / align)
    post = authors_gaussian(pre)
    prob = (va_p + ta_p + torch.stack([lg.softmax(-1)[:, 1] for lg, _, _, _ in theirs]).mean(0)) / 3
    assert absdiff(fused["pre_blur"], pre) < 1e-6
    assert absdiff(fused["anomaly_map"], post) < 1e-6
    assert absdiff(fused["pred_score"], 2 / (1 / prob + 1 / post.flatten(1).amax(1))) < 1e-6
