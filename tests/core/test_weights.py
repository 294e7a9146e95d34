"""Weight resolution: registry, local files, ADAPTCLIP_WEIGHTS_DIR, hub cache, proxy, TorchScript, QuickGELU."""

from __future__ import annotations

import json

import pytest
import torch
from open_clip.model import CLIP

from adaptclip_med import list_models, load_model
from adaptclip_med.loading.checkpoint import export_authors, save_adapters
from adaptclip_med.loading.factory import _clip_weights_path
from adaptclip_med.loading.model_registry import BACKBONES
from adaptclip_med.loading.weights import read_state_dict
from adaptclip_med.runtime.errors import WeightsNotFoundError


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


# --------------------------------------------------------------------------- hub cache, offline, proxy
VISA_FILE = "adaptclip_checkpoints/12_4_128_train_on_visa_3adapters_batch8/epoch_15.pth"


def _fake_hub_file(cache, repo: str, filename: str, data: bytes | None = None, writer=None):
    """Lay out ``cache/models--org--name/snapshots/<rev>/<filename>`` and ``refs/main`` as the hub client does."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    target = folder / "snapshots" / rev / filename
    target.parent.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(rev)
    if writer is not None:
        writer(target)
    else:
        target.write_bytes(data or b"weights")
    return target


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    """No weights anywhere: empty ADAPTCLIP_WEIGHTS_DIR, HOME and HF_HOME in tmp, no proxy, no offline flag."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "ADAPTCLIP_OFFLINE", "HF_HUB_OFFLINE",
                "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                "all_proxy", "NO_PROXY", "no_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ADAPTCLIP_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path


@pytest.mark.parametrize("variable", ["HF_HOME", "HF_HUB_CACHE"])
def test_checkpoint_in_the_hub_cache_is_found_offline(empty_env, monkeypatch, tiny_model, variable):
    cache = empty_env / "hf" / "hub" if variable == "HF_HOME" else empty_env / "elsewhere"
    if variable == "HF_HUB_CACHE":
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    target = _fake_hub_file(cache, "csgaobb/AdaptCLIP", VISA_FILE, writer=lambda p: export_authors(tiny_model, p))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model("adaptclip-tiny", None, checkpoint="adaptclip-visa", image_size=224,
                       allow_random_backbone=True)
    assert model.describe()["checkpoint_file"] == str(target)


def test_backbone_tag_in_the_hub_cache_is_found_offline(empty_env, monkeypatch):
    # open_clip keeps ViT-B-16/openai as timm/vit_base_patch16_clip_224.openai/open_clip_model.safetensors
    target = _fake_hub_file(empty_env / "hf" / "hub", "timm/vit_base_patch16_clip_224.openai",
                            "open_clip_model.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _clip_weights_path("ViT-B-16", None, "openai") == target


def test_offline_error_lists_the_hub_cache_and_the_fix(empty_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        _clip_weights_path("ViT-B-16", None, "openai")
    text = str(info.value)
    for needle in ("'ViT-B-16'", "'openai'", "$HF_HUB_OFFLINE is set", "ViT-B-16.pt",
                   str(empty_env / "hf" / "hub" / "models--timm--vit_base_patch16_clip_224.openai"),
                   str(empty_env / "weights"), "hf download", "HTTPS_PROXY"):
        assert needle in text, needle


def test_unreachable_proxy_fails_with_the_clear_error(empty_env, monkeypatch):
    """HTTPS_PROXY at a closed local port: the hub client uses it, fails at once, the error says so."""
    import socket

    from huggingface_hub.utils import close_session

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:secret@127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    close_session()  # the client reads the proxy settings when it is created
    try:
        with pytest.raises(WeightsNotFoundError) as info:
            load_model("adaptclip-tiny", None, checkpoint="adaptclip-mvtec", allow_random_backbone=True)
    finally:
        close_session()
    text = str(info.value)
    assert f"via proxy 127.0.0.1:{port} ($HTTPS_PROXY)" in text and "secret" not in text
    assert "12_4_128_train_on_mvtec_3adapters_batch8/epoch_15.pth" in text and "Fix:" in text
    assert "models--csgaobb--AdaptCLIP/snapshots/*/" in text


# --------------------------------------------------------------------------- activation, checkpoint file
def test_openai_weights_given_as_a_file_are_recognised():
    from pathlib import Path

    from adaptclip_med.loading.weights import openai_weights

    assert openai_weights("ViT-B-16", Path("/w/ViT-B-16.pt"))  # the file name of open_clip's openai URL
    assert openai_weights("ViT-B-16", Path("/hub/models--timm--vit_base_patch16_clip_224.openai/x.safetensors"))
    assert not openai_weights("ViT-B-16", Path("/w/laion2b_s34b_b88k.bin"))


def test_openai_torchscript_file_builds_quick_gelu(tmp_path):
    from open_clip.model import QuickGELU

    cfg = json.loads(BACKBONES["adaptclip-tiny"].config_text())
    cfg["quick_gelu"] = False  # a model config without the flag, as for any open_clip name + a file
    config = tmp_path / "tiny-gelu.json"
    config.write_text(json.dumps(cfg))
    clip = CLIP(**cfg)
    scripted, plain = tmp_path / "clip.pt", tmp_path / "clip.bin"
    torch.jit.script(clip).save(str(scripted))  # OpenAI's release format
    torch.save(clip.state_dict(), plain)
    openai = load_model(str(config), str(scripted), image_size=224)
    other = load_model(str(config), str(plain), image_size=224)
    block = "transformer.resblocks.0.mlp.gelu"
    assert isinstance(openai.backbone.visual.get_submodule(block), QuickGELU)
    assert not isinstance(other.backbone.visual.get_submodule(block), QuickGELU)
    assert openai.describe()["activation"] == "QuickGELU" and other.describe()["activation"] == "GELU"


def test_checkpoint_may_name_the_adapters_file(tmp_path, tiny_model):
    from adaptclip_med.loading.checkpoint import adapter_state

    save_adapters(tiny_model, tmp_path / "ck")
    model = load_model("adaptclip-tiny", None, checkpoint=tmp_path / "ck" / "adapters.safetensors",
                       image_size=224, allow_random_backbone=True, seed=3)
    ours, ref = adapter_state(model), adapter_state(tiny_model)
    assert all(torch.equal(ours[k], ref[k]) for k in ref if not k.endswith("num_batches_tracked"))
    assert len(model.describe()["checkpoint_sha256"]) == 64
