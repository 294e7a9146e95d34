"""load_model_or_demo and the DemoSetup helpers the notebooks call (real files, real model loading)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from adaptclip_med import demo
from adaptclip_med.reporting.labels import UNTRAINED_ADAPTERS, UNTRAINED_BACKBONE
from adaptclip_med.reporting.overlays import save_png

BANNER = (255, 243, 205)  # labels.BAND_FACE


def _no_weights(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTCLIP_OFFLINE", "1")
    monkeypatch.setenv("ADAPTCLIP_WEIGHTS_DIR", str(tmp / "no-weights"))
    monkeypatch.setenv("HOME", str(tmp / "home"))
    for var in ("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)


def _banner_pixels(image: Image.Image) -> int:
    rgb = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(rgb - BANNER).max(axis=-1) <= 2).sum())


def test_missing_weights_give_one_line_and_the_tiny_backbone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    _no_weights(tmp_path, monkeypatch)
    model, setup = demo.load_model_or_demo("ViT-L-14-336", "openai", "adaptclip-mvtec", 518)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "ViT-L-14-336/openai + adaptclip-mvtec" in lines[0] and UNTRAINED_BACKBONE in lines[0]
    assert (setup.backbone, setup.pretrained, setup.checkpoint, setup.image_size) == ("adaptclip-tiny", None, None, 224)
    assert setup.untrained and setup.notice == UNTRAINED_BACKBONE and "weights not found" in setup.reason
    assert model.image_size == 224 and model.provenance["pretrained"] is None
    assert setup.model_kwargs() == {"backbone": "adaptclip-tiny", "pretrained": None, "checkpoint": None,
                                    "image_size": 224, "allow_random_backbone": True}
    assert setup.cli_args() == ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--checkpoint", "none",
                                "--image-size", "224", "--allow-random-backbone"]


def test_random_weights_on_purpose_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    model, setup = demo.load_model_or_demo("adaptclip-tiny", None, None, 224)
    assert capsys.readouterr().out == "" and setup.untrained and setup.notice == UNTRAINED_BACKBONE
    assert model.image_size == 224


def test_labels_follow_the_weights() -> None:
    real = demo.DemoSetup("ViT-L-14-336", "openai", "adaptclip-mvtec", 518, untrained=False)
    fresh = demo.DemoSetup("ViT-L-14-336", "openai", None, 518, untrained=False)
    assert real.notice is None and real.label("score 0.5") == "score 0.5"
    assert fresh.notice == UNTRAINED_ADAPTERS and fresh.label("score 0.5") == f"score 0.5 ({UNTRAINED_ADAPTERS})"
    assert real.cli_args() == ["--backbone", "ViT-L-14-336", "--pretrained", "openai", "--checkpoint",
                               "adaptclip-mvtec", "--image-size", "518"]


def test_picture_marks_an_unmarked_png_once(tmp_path: Path) -> None:
    setup = demo.tiny_setup()
    fig = Figure(figsize=(3, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    plain = save_png(fig, tmp_path / "plain.png")
    fig2 = Figure(figsize=(3, 2))
    fig2.add_subplot().plot([0, 1], [1, 0])
    marked = save_png(fig2, tmp_path / "marked.png", notice=setup.notice)
    with Image.open(plain) as im:
        plain_size = im.size
    shown = setup.picture(plain)
    assert shown.height > plain_size[1] and _banner_pixels(shown) >= 5 * shown.width  # banner added below
    with Image.open(marked) as im:
        assert im.info.get("Description") == setup.notice
        marked_size = im.size
    again = setup.picture(marked)
    assert again.size == marked_size  # already marked: shown as it is, not a second banner
    small = setup.picture(plain, max_side=100)
    assert max(small.size[0], small.size[1] - 40) <= 100
    real = demo.DemoSetup("ViT-L-14-336", "openai", "adaptclip-mvtec", 518, untrained=False)
    assert real.picture(plain).size == plain_size and _banner_pixels(real.picture(plain)) == 0
    assert real.mark(fig) is fig and setup.mark(Figure()).texts[0].get_text() == setup.notice
