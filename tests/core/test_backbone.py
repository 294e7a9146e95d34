"""Backbone: shapes, the V-V path, the global feature, positional interpolation, QuickGELU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU

from adaptclip_med import load_model
from adaptclip_med.loading.factory import _model_config
from adaptclip_med.model.backbone import default_layers
from adaptclip_med.model.pos_embed import resize_positional_embedding


def test_default_layers_follow_depth():
    assert default_layers(24) == (6, 12, 18, 24)
    assert default_layers(12) == (3, 6, 9, 12)
    assert default_layers(8) == (2, 4, 6, 8)
    with pytest.raises(ValueError, match="feature_layers"):
        default_layers(10)


def test_tiny_model_layers_and_shapes(tiny_model):
    assert tiny_model.backbone.feature_layers == (2, 4, 6, 8)
    assert tiny_model.backbone.vv_start == 2
    with torch.no_grad():
        feats = tiny_model.encode_images(torch.randn(2, 3, 224, 224))
    assert feats.global_.shape == (2, 64)
    assert [tuple(p.shape) for p in feats.patches] == [(2, 257, 64)] * 4
    assert feats.grid == 16


def test_vv_path_differs_from_original_path_and_global_skips_ln_post(tiny_model):
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    visual = tiny_model.backbone.visual
    with torch.no_grad():
        feats = tiny_model.encode_images(images)
        _, inter = visual.transformer.forward_intermediates(visual._embeds(images), indices=[7])
        original_tokens = visual.ln_post(inter[0]) @ visual.proj
        plain = visual.transformer(visual._embeds(images))
    # the layer-8 V-V tokens are not the original path's tokens ...
    assert (feats.patches[-1] - original_tokens).abs().max() > 1e-2
    # ... while our original path reproduces open_clip's blocks; the global feature has no ln_post
    assert torch.allclose(feats.global_, plain[:, 0] @ visual.proj, atol=1e-5)
    assert not torch.allclose(feats.global_, visual.ln_post(plain[:, 0]) @ visual.proj, atol=1e-3)


def test_vv_start_and_layers_are_overridable():
    model = load_model("adaptclip-tiny", None, image_size=224, allow_random_backbone=True,
                       feature_layers=(5, 6, 7, 8), vv_start=3)
    assert model.backbone.feature_layers == (5, 6, 7, 8) and model.backbone.vv_start == 3
    with pytest.raises(ValueError, match="precedes the V-V start"):
        load_model("adaptclip-tiny", None, allow_random_backbone=True, feature_layers=(2, 4, 6, 8), vv_start=3)


@pytest.mark.parametrize("size", [224, 336, 518])
def test_positional_interpolation_per_size(tiny_model, size):
    grid = size // 14
    stored = tiny_model.backbone.visual.positional_embedding.detach().clone()
    table = tiny_model.backbone.positional_embedding(grid)
    assert table.shape == (1 + grid * grid, 128)
    assert torch.equal(table[0], stored[0])  # the class position is kept
    expected = F.interpolate(stored[1:].reshape(1, 16, 16, 128).permute(0, 3, 1, 2), size=(grid, grid),
                             mode="bilinear", align_corners=False).permute(0, 2, 3, 1).reshape(-1, 128)
    assert torch.allclose(table[1:], expected)
    with torch.no_grad():
        feats = tiny_model.encode_images(torch.randn(1, 3, size, size))
    assert feats.patches[0].shape[1] == 1 + grid * grid
    assert torch.equal(tiny_model.backbone.visual.positional_embedding, stored)  # never mutated


def test_resize_rejects_non_square_table():
    with pytest.raises(ValueError, match="square"):
        resize_positional_embedding(torch.zeros(1 + 15, 8), 4)


def test_resize_accepts_half_precision():
    table = torch.randn(1 + 16, 8).half()
    assert resize_positional_embedding(table, 6).dtype == torch.float32


def test_quick_gelu_is_used_for_openai_and_tiny(tiny_model):
    assert isinstance(tiny_model.backbone.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    cfg, spec = _model_config("ViT-L-14-336")
    assert spec is not None and spec.quick_gelu
    assert cfg["vision_cfg"]["layers"] == 24


def test_gelu_mismatch_changes_features(tmp_path, tiny_model):
    """Loading QuickGELU weights into a GELU model goes through silently but changes every feature."""
    import json

    from adaptclip_med.loading.model_registry import BACKBONES

    cfg = json.loads(BACKBONES["adaptclip-tiny"].config_text())
    cfg["quick_gelu"] = False
    path = tmp_path / "tiny_gelu.json"
    path.write_text(json.dumps(cfg))
    weights = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_model.backbone.visual.state_dict().items()}
    clip_state = {f"visual.{k}": v for k, v in state.items()}
    text = tiny_model.text_encoder
    clip_state.update({
        "token_embedding.weight": text.token_embedding.weight, "positional_embedding": text.positional_embedding,
        "ln_final.weight": text.ln_final.weight, "ln_final.bias": text.ln_final.bias,
        "text_projection": text.text_projection, "logit_scale": torch.tensor(4.6),
        **{f"transformer.{k}": v for k, v in text.transformer.state_dict().items()},
    })
    save_file({k: v.detach().contiguous() for k, v in clip_state.items()}, str(weights))
    gelu = load_model(str(path), str(weights), image_size=224)
    assert not isinstance(gelu.backbone.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        a, b = tiny_model.encode_images(images), gelu.encode_images(images)
    assert (a.global_ - b.global_).abs().max() > 1e-3
