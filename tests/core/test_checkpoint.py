"""Checkpoints: our format and the authors' format round-trip; mismatches give clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from adaptclip_med import load_model
from adaptclip_med.loading.checkpoint import export_authors, save_adapters, to_authors_state
from adaptclip_med.loading.model_registry import BACKBONES
from adaptclip_med.runtime.errors import CheckpointMismatchError


def randomise_adapters(model, seed: int = 3) -> None:
    """Give every adapter tensor (incl. BatchNorm statistics) non-default values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            adapter = name.startswith(("text_adapter.", "visual_adapter.", "prompt_query_adapter."))
            if adapter and tensor.is_floating_point():
                tensor.copy_(tensor + 0.1 * torch.randn(tensor.shape, generator=gen).abs())


@pytest.fixture(scope="module")
def trained_like():
    model = load_model("adaptclip-tiny", None, image_size=224, allow_random_backbone=True, seed=0)
    randomise_adapters(model)
    return model


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(5)
    return torch.randn(2, 3, 224, 224, generator=gen), torch.randn(1, 3, 224, 224, generator=gen)


def same_predictions(a, b, batch) -> bool:
    images, prompts = batch
    out_a, out_b = a.predict(images, prompts=prompts), b.predict(images, prompts=prompts)
    return torch.equal(out_a.anomaly_map, out_b.anomaly_map) and torch.equal(out_a.pred_score, out_b.pred_score)


def test_our_format_round_trip(trained_like, batch, tmp_path):
    path = save_adapters(trained_like, tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["adapters.safetensors", "config.json"]
    config = json.loads((path / "config.json").read_text())
    assert config["backbone"] == "adaptclip-tiny" and config["n_ctx"] == 12 and config["feature_layers"] == [2, 4, 6, 8]
    assert config["package_version"]
    fresh = load_model("adaptclip-tiny", None, checkpoint=path, image_size=224, allow_random_backbone=True, seed=0)
    assert same_predictions(trained_like, fresh, batch)
    untouched = load_model("adaptclip-tiny", None, image_size=224, allow_random_backbone=True, seed=0)
    assert not same_predictions(trained_like, untouched, batch)


def test_authors_format_round_trip(trained_like, batch, tmp_path):
    path = export_authors(trained_like, tmp_path / "epoch_15.pth")
    raw = torch.load(path, weights_only=True)
    assert sorted(raw) == ["pq_learner", "textual_learner", "visual_learner"]
    assert "local_adater.fc.0.weight" in raw["visual_learner"]
    assert raw["textual_learner"]["ctx_pos"].shape == (1, 1, 12, 64)
    fresh = load_model("adaptclip-tiny", None, checkpoint=path, image_size=224, allow_random_backbone=True, seed=0)
    assert same_predictions(trained_like, fresh, batch)


def test_authors_layout_matches_the_released_keys(trained_like, conformance_dir):
    released = torch.load(conformance_dir / "adapters_official_format.pth", weights_only=True)
    ours = to_authors_state(trained_like)
    for group in released:
        assert set(ours[group]) == set(released[group]), group
        for key, value in released[group].items():
            assert ours[group][key].shape == value.shape, key
            assert ours[group][key].dtype == value.dtype, key


def test_checkpoint_for_another_width_is_refused(tmp_path):
    cfg = json.loads(BACKBONES["adaptclip-tiny"].config_text())
    cfg["embed_dim"] = 32
    path = tmp_path / "narrow.json"
    path.write_text(json.dumps(cfg))
    narrow = load_model(str(path), None, image_size=224, allow_random_backbone=True)
    ckpt = save_adapters(narrow, tmp_path / "narrow_ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"embed dim 32 .* embed dim 64"):
        load_model("adaptclip-tiny", None, checkpoint=ckpt, image_size=224, allow_random_backbone=True)


def test_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "weights.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, bogus)
    with pytest.raises(CheckpointMismatchError, match="missing"):
        load_model("adaptclip-tiny", None, checkpoint=bogus, allow_random_backbone=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model("adaptclip-tiny", None, checkpoint=tmp_path / "nope.pth", allow_random_backbone=True)
