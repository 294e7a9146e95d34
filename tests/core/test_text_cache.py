"""The static prompt ensemble's text features are computed once per text tower and read back bit for bit."""

from __future__ import annotations

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
