"""Weight resolution: registry, local files, ADAPTCLIP_WEIGHTS_DIR, TorchScript, offline errors."""

from __future__ import annotations

import json

import pytest
import torch
from open_clip.model import CLIP

from adaptclip_med import list_models, load_model
from adaptclip_med.checkpoint import export_authors
from adaptclip_med.errors import WeightsNotFoundError
from adaptclip_med.factory import _clip_weights_path
from adaptclip_med.registry import BACKBONES
from adaptclip_med.weights import read_state_dict


@pytest.fixture
def offline_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTCLIP_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("ADAPTCLIP_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_list_models():
    listing = list_models()
    assert "ViT-L-14-336:openai" in listing["backbones"] and "adaptclip-tiny" in listing["backbones"]
    assert listing["checkpoints"] == ["adaptclip-mvtec", "adaptclip-visa"]


def test_unknown_names_list_the_options():
    with pytest.raises(ValueError, match=r"registered: .*adaptclip-tiny"):
        load_model("ViT-Z-99", None, allow_random_backbone=True)
    with pytest.raises(ValueError, match="unknown pretrained tag 'laion9'"):
        load_model("ViT-L-14-336", "laion9")
    with pytest.raises(ValueError, match="allow_random_backbone"):
        load_model("adaptclip-tiny", None)


def test_offline_backbone_error_names_model_tag_file_and_fix(offline_dir):
    with pytest.raises(WeightsNotFoundError) as info:
        load_model("ViT-L-14-336", "openai")
    text = str(info.value)
    for needle in ("'ViT-L-14-336'", "'openai'", "ViT-L-14-336px.pt", str(offline_dir), "ADAPTCLIP_WEIGHTS_DIR",
                   "pretrained="):
        assert needle in text


def test_offline_checkpoint_error_names_hub_file(offline_dir):
    with pytest.raises(WeightsNotFoundError) as info:
        load_model("adaptclip-tiny", None, checkpoint="adaptclip-mvtec", allow_random_backbone=True)
    text = str(info.value)
    assert "12_4_128_train_on_mvtec_3adapters_batch8/epoch_15.pth" in text and "csgaobb/AdaptCLIP" in text


def test_weights_dir_is_searched_for_tags_and_checkpoints(offline_dir, tiny_model):
    (offline_dir / "ViT-L-14-336px.pt").write_bytes(b"placeholder")
    spec = BACKBONES["ViT-L-14-336"]
    assert _clip_weights_path("ViT-L-14-336", spec, "openai") == offline_dir / "ViT-L-14-336px.pt"
    nested = offline_dir / "adaptclip_checkpoints/12_4_128_train_on_visa_3adapters_batch8/epoch_15.pth"
    nested.parent.mkdir(parents=True)
    export_authors(tiny_model, nested)
    model = load_model("adaptclip-tiny", None, checkpoint="adaptclip-visa", image_size=224,
                       allow_random_backbone=True)
    assert model.describe()["checkpoint"] == "adaptclip-visa"
    assert len(model.describe()["checkpoint_sha256"]) == 64


def test_missing_weights_file(offline_dir):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_model("adaptclip-tiny", str(offline_dir / "missing.safetensors"))


def test_torchscript_openai_style_file_loads(tmp_path, tiny_model):
    cfg = json.loads(BACKBONES["adaptclip-tiny"].config_text())
    torch.manual_seed(7)
    clip = CLIP(**cfg)
    path = tmp_path / "tiny-openai.pt"
    torch.jit.script(clip.half()).save(str(path))
    state = read_state_dict(path)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    model = load_model("adaptclip-tiny", str(path), image_size=224)
    ref = clip.float().visual.conv1.weight
    assert torch.equal(model.backbone.visual.conv1.weight, ref)
