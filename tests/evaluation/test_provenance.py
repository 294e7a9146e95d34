"""run.json provenance pieces: checkpoint hashes, package versions, the untrained-backbone refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.loading.checkpoint import save_adapters
from adaptclip_med.loading.factory import load_model_for
from adaptclip_med.reporting.provenance import model_provenance, package_versions, slug
from adaptclip_med.runtime.errors import AdaptCLIPError
from adaptclip_med.runtime.io import sha256_file


def _config(**kw: object) -> EvalConfig:
    return EvalConfig(datasets=("x",), roots=(("x", "."),), backbone="adaptclip-tiny", pretrained=None,
                      image_size=224, **kw)


def test_checkpoint_directory_is_hashed(tiny_model: object, tmp_path: Path) -> None:
    ckpt = save_adapters(tiny_model, tmp_path / "adapters")
    info = model_provenance(tiny_model, _config(checkpoint=str(ckpt)))
    files = sorted(p for p in Path(ckpt).iterdir() if p.is_file())
    assert info["checkpoint_sha256"] == {p.name: sha256_file(p) for p in files}
    assert info["backbone"] == "adaptclip-tiny" and info["image_size"] == 224


def test_versions_and_slug() -> None:
    versions = package_versions()
    assert versions["torch"] != "not installed" and "python" in versions
    assert slug("brain") == "brain"
    assert slug("a/b c").startswith("a-b-c-") and "/" not in slug("a/b c")


def test_random_backbone_refused_without_permission() -> None:
    with pytest.raises(AdaptCLIPError, match="--allow-random-backbone"):
        load_model_for(_config())
