"""The static prompt ensemble's text features are computed once per text tower and read back bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adaptclip_med import load_model
from adaptclip_med.loading.text_cache import cache_root, static_text_features, text_key
from adaptclip_med.model.text_encoder import FrozenTextEncoder


def _load(seed: int = 0) -> object:
    return load_model(backbone="adaptclip-tiny", pretrained=None, image_size=224, device="cpu",
                      allow_random_backbone=True, seed=seed)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    """A fresh cache folder, and the prompts of every text-tower pass from now on."""
    monkeypatch.setenv("ADAPTCLIP_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[int] = []
    original = FrozenTextEncoder.encode_tokens

    def counting(self: FrozenTextEncoder, tokens: torch.Tensor) -> torch.Tensor:
        calls.append(int(tokens.shape[0]))
        return original(self, tokens)

    monkeypatch.setattr(FrozenTextEncoder, "encode_tokens", counting)
    return calls


def test_second_load_reads_the_features_back(counted: list[int], tmp_path: Path) -> None:
    first = _load()
    assert counted == [231] and len(list((tmp_path / "cache" / "text").glob("*.safetensors"))) == 1
    second = _load()
    assert counted == [231]  # no text-tower pass the second time
    assert torch.equal(first.static_text_features, second.static_text_features)
    (entry,) = (tmp_path / "cache" / "text").glob("*.safetensors")
    entry.write_bytes(b"damaged")  # an unreadable entry is computed again and replaced
    third = _load()
    assert counted == [231, 231] and torch.equal(third.static_text_features, first.static_text_features)
    assert _load() is not None and counted == [231, 231]


def test_other_text_weights_or_tokens_get_their_own_entry(counted: list[int]) -> None:
    tower = _load().text_encoder
    tokens = torch.randint(1, 100, (3, 77), generator=torch.Generator().manual_seed(0))
    key = text_key(tower, tokens)
    assert text_key(tower, tokens[:2]) != key
    first = static_text_features(tower, tokens)
    assert torch.equal(static_text_features(tower, tokens), first) and counted == [231, 3]
    with torch.no_grad():
        tower.token_embedding.weight[0, 0] += 1.0  # one changed value: another key, computed again
    assert text_key(tower, tokens) != key
    static_text_features(tower, tokens)
    assert counted == [231, 3, 3]


def test_cache_can_be_turned_off_or_unwritable(counted: list[int], monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("ADAPTCLIP_CACHE_DIR", "none")
    assert cache_root() is None
    _load()
    _load()
    assert counted == [231, 231] and not (tmp_path / "cache").exists()
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("ADAPTCLIP_CACHE_DIR", str(blocked))  # cannot create text/ under a file
    assert _load() is not None and counted == [231, 231, 231]


def test_default_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ADAPTCLIP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "adaptclip_med"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "adaptclip_med"


def test_same_weights_as_gelu_and_quickgelu_or_an_edited_config_get_their_own_entry(counted: list[int],
                                                                                  tmp_path: Path) -> None:
    """The text cache and the feature store are keyed by the architecture and the config's content."""
    from adaptclip_med.features.store import store_spec
    from adaptclip_med.runtime.io import weights_fingerprint
    from adaptclip_med.runtime.keys import PACKAGE_ROOT

    config = tmp_path / "backbone.json"
    tiny = json.loads((PACKAGE_ROOT / "loading" / "model_configs" / "adaptclip-tiny.json").read_text())

    def load(cfg: dict) -> object:
        config.write_text(json.dumps(cfg))
        return load_model(backbone=str(config), pretrained=None, image_size=224, allow_random_backbone=True)

    quick = load({**tiny, "quick_gelu": True})
    assert counted == [231] and load({**tiny, "quick_gelu": True}) is not None and counted == [231]
    gelu = load({**tiny, "quick_gelu": False})  # the same weights bytes as GELU: other text features
    assert weights_fingerprint(gelu.text_encoder) == weights_fingerprint(quick.text_encoder)
    assert counted == [231, 231]
    assert not torch.equal(gelu.static_text_features, quick.static_text_features)
    assert store_spec(gelu) != store_spec(quick)

    scaled = load({**tiny, "quick_gelu": True, "init_logit_scale": 3.0})  # the JSON edited in place
    assert weights_fingerprint(scaled.text_encoder) == weights_fingerprint(quick.text_encoder)
    assert counted == [231, 231, 231]
    assert store_spec(scaled)["backbone_config"] != store_spec(quick)["backbone_config"]
