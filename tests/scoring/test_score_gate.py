"""The applicability gate and ``--roi`` in ``score`` (issue 20): a corpus of inapplicable images built here
(real pydicom files and PIL-rendered text), each rejected with its named reason; ``--force``; ``--gate-off``;
no shared medical image rejected; ``--roi auto`` confines the map and draws the outline. The runs switch
the zero-shot ``prompts`` rule off (noise on the random test backbone; tests/scoring/test_score_prompts.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image, ImageDraw

from adaptclip_med.data.writers import write_dicom
from adaptclip_med.roi.gate import GateConfig, metadata_verdict, pixel_verdict
from adaptclip_med.roi.source import display_image
from adaptclip_med.score import main

from .conftest import TINY

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
LOREM = ("Patient report  Study date 2024-03-01  Series 3  Findings: no acute abnormality.  "
         "Impression: normal study.  Signed electronically.  Page 1 of 2")


def _head(size: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    inside = ((yy - size / 2) / (size * 0.4)) ** 2 + ((xx - size / 2) / (size * 0.32)) ** 2 < 1
    return np.where(inside, 600 + rng.normal(0, 40, (size, size)), rng.normal(5, 2, (size, size))).clip(0).astype(
        np.uint16)


def _retag(path: Path, **tags: object) -> Path:
    ds = pydicom.dcmread(path)
    for name, value in tags.items():
        setattr(ds, name, value)
    if "SOPClassUID" in tags:
        ds.file_meta.MediaStorageSOPClassUID = tags["SOPClassUID"]
    ds.save_as(path, enforce_file_format=True)
    return path


def _text_picture(size: tuple[int, int], ink: int, paper: int, seed: int = 0) -> np.ndarray:
    img = Image.new("L", size, paper)
    draw = ImageDraw.Draw(img)
    words = LOREM.split()
    rng = random.Random(seed)
    for y in range(12, size[1] - 16, 18):
        line = " ".join(rng.choice(words) for _ in range(12))
        draw.text((10, y), line, fill=ink)
    return np.asarray(img)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{name: path}``: five inapplicable images, a CT (modality mismatch under MR) and two good MR heads."""
    root = tmp_path_factory.mktemp("gate_corpus")
    files: dict[str, Path] = {}
    files["localizer"] = _retag(write_dicom(root / "scout.dcm", _head(seed=1), modality="MR"),
                                SOPClassUID=MR_STORAGE, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    screen = np.stack([_text_picture((256, 200), 235, 30)] * 3, axis=-1)
    files["screenshot"] = write_dicom(root / "screen.dcm", screen, modality="OT")  # Secondary Capture SOP class
    paper = _text_picture((400, 300), 40, 215, seed=2).astype(np.float32)
    paper += np.linspace(-12, 12, paper.shape[1])[None] + np.random.default_rng(0).normal(0, 2, paper.shape)
    files["document"] = root / "document_photo.jpg"
    Image.fromarray(paper.clip(0, 255).astype(np.uint8)).save(files["document"], quality=92)
    files["blank"] = root / "blank.png"
    Image.fromarray(np.full((96, 96), 17, np.uint8)).save(files["blank"])
    sat = np.full((96, 96), 255, np.uint8)
    sat[30:60, 30:60] = 120
    files["saturated"] = root / "saturated.png"
    Image.fromarray(sat).save(files["saturated"])
    files["ct"] = _retag(write_dicom(root / "ct.dcm", _head(seed=3), modality="CT"),
                         SOPClassUID="1.2.840.10008.5.1.4.1.1.2")
    for i in range(2):
        files[f"good{i}"] = _retag(write_dicom(root / f"good{i}.dcm", _head(seed=10 + i), modality="MR"),
                                   SOPClassUID=MR_STORAGE, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"])
    return files


EXPECTED = {"localizer": "localizer", "screenshot": "derived", "document": "text", "blank": "blank",
            "saturated": "saturated", "ct": "modality"}


def _verdict(path: Path, config: GateConfig):
    v = metadata_verdict(path, config)
    v.extend(pixel_verdict(display_image(path)[0], None, config))
    return v


def test_every_corpus_image_is_rejected_with_its_named_reason(corpus: dict[str, Path]) -> None:
    config = GateConfig(expect_modality="MR")
    for name, rule in EXPECTED.items():
        v = _verdict(corpus[name], config)
        assert v.status == "reject", (name, v.findings)
        assert rule in {r for level, r, _ in v.findings if level == "reject"}, (name, v.findings)
    assert _verdict(corpus["screenshot"], config).reasons.count("text:") == 1  # rendered text seen in the pixels
    for name in ("good0", "good1"):
        assert _verdict(corpus[name], config).status == "pass", name


def test_rules_switch_off_by_name(corpus: dict[str, Path]) -> None:
    v = _verdict(corpus["document"], GateConfig(off=("text",)))
    assert v.status == "pass", v.findings
    assert _verdict(corpus["ct"], GateConfig(expect_modality="MR", off=("modality",))).status == "pass"
    assert _verdict(corpus["blank"], GateConfig(enabled=False)).status == "pass"
    with pytest.raises(ValueError, match="unknown"):
        GateConfig(off=("no-such-rule",))


def test_score_rejects_without_a_score_and_force_marks_the_row(corpus: dict[str, Path], tmp_path: Path) -> None:
    inputs = [str(p) for p in corpus.values()]
    out = tmp_path / "gated"
    assert main([*inputs, "--out", str(out), "--gate", "on", "--expect-modality", "MR", "--overlays", "none",
                 "--no-dicom", "--gate-off", "prompts", *TINY]) == 0
    table = pd.read_csv(out / "scores.csv").set_index("id")
    for name, rule in EXPECTED.items():
        row = table.loc[corpus[name].name]
        assert row["applicability"] == "reject" and pd.isna(row["score"]), (name, row.to_dict())
        assert f"{rule}:" in row["applicability_reasons"], (name, row["applicability_reasons"])
    for name in ("good0", "good1"):
        assert table.loc[corpus[name].name, "applicability"] == "pass"
        assert np.isfinite(table.loc[corpus[name].name, "score"])
    run = json.loads((out / "run.json").read_text())
    assert run["applicability"]["gate"]["expect_modality"] == "MR" and run["applicability"]["gate"]["enabled"]

    forced = tmp_path / "forced"
    assert main([str(corpus["document"]), str(corpus["good0"]), "--out", str(forced), "--gate", "on", "--force",
                 "--overlays", "none", *TINY]) == 0
    table = pd.read_csv(forced / "scores.csv").set_index("id")
    row = table.loc[corpus["document"].name]
    assert row["applicability"] == "reject" and np.isfinite(row["score"])
    assert row["applicability_reasons"].startswith("scored under --force; text:")

    off = tmp_path / "off"
    assert main([str(corpus["document"]), "--out", str(off), "--gate", "on", "--gate-off", "text,prompts",
                 "--overlays", "none", *TINY]) == 0
    assert pd.read_csv(off / "scores.csv")["applicability"].tolist() == ["pass"]


def test_gate_off_by_default_keeps_the_columns(corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "plain"
    assert main([str(corpus["good0"]), "--out", str(out), "--overlays", "none", *TINY]) == 0
    assert "applicability" not in pd.read_csv(out / "scores.csv").columns
    assert "applicability" not in json.loads((out / "run.json").read_text())


def test_roi_auto_confines_the_map_and_outlines_it(shared_datasets: Path, tmp_path: Path) -> None:
    src = sorted((shared_datasets / "brain_mri" / "yes").glob("*.jpg"))[:2]
    plain, roi = tmp_path / "plain", tmp_path / "roi"
    assert main([*map(str, src), "--out", str(plain), "--overlays", "none", *TINY]) == 0
    assert main([*map(str, src), "--out", str(roi), "--roi", "auto", "--gate", "on", "--gate-off", "prompts",
                 *TINY]) == 0
    a, b = (pd.read_csv(d / "scores.csv").set_index("id") for d in (plain, roi))
    assert (b["score"] <= a["score"] + 1e-6).all()  # the peak inside the ROI is at most the whole map's
    assert (b["applicability"] == "pass").all()
    png = np.asarray(Image.open(roi / b["overlay"].iloc[0]).convert("RGB"))
    assert (np.abs(png.astype(int) - (255, 220, 0)).sum(axis=-1) < 40).sum() > 50  # the yellow ROI outline
    assert json.loads((roi / "run.json").read_text())["applicability"]["roi"] == "auto"


@pytest.mark.shared
def test_no_shared_medical_image_is_rejected(shared_datasets: Path) -> None:
    """A sample of each shared medical set through the metadata and pixel rules (ROI by its modality)."""
    from adaptclip_med.roi import anatomy_mask

    config = GateConfig()
    for name, modality in (("br35h", "mri"), ("brain_mri", "mri"), ("covid19", "xray"), ("kvasir_seg", "endoscopy")):
        files = sorted(p for p in (shared_datasets / name).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")
                       and "mask" not in str(p).lower())
        random.Random(1).shuffle(files)
        # with the images a whole-picture rule rejected: burned-in text beside the head or over the endoscope's
        # field (BrainMRI Y46, two Kvasir frames), a head on white padding (BrainMRI No16)
        hard = [p for p in files if p.name in ("Y46.jpg", "No16.jpg", "cju1cu1u2474n0878tt7v4tdr.jpg",
                                                 "cju7dlk532dsh0871zvr6qz0r.jpg")]
        for path in [*files[:8], *hard]:
            picture = display_image(path)[0]
            v = metadata_verdict(path, config)
            v.extend(pixel_verdict(picture, anatomy_mask(picture, modality), config))
            assert v.status != "reject", (path.name, v.findings)


def test_text_and_clipping_outside_the_anatomy_only_warn() -> None:
    """A head with a burned-in caption in a corner and white padding warns; the same text over the whole
    picture, or the anatomy itself clipped, rejects."""
    head = (_head(256, seed=4).astype(np.float32) / 700 * 200).clip(0, 255).astype(np.uint8)
    captioned = head.copy()
    captioned[4:60, 4:120] = np.maximum(captioned[4:60, 4:120], _text_picture((116, 56), 235, 0, seed=3))
    padded = np.full((256, 384), 255, np.uint8)
    padded[:, 64:320] = head
    config = GateConfig()
    for picture in (captioned, padded):
        v = pixel_verdict(picture, None, config)
        assert v.status == "warn", v.findings
    assert "(burned-in annotation?)" in pixel_verdict(captioned, None, config).reasons
    assert "white padding" in pixel_verdict(padded, None, config).reasons
    page = np.maximum(head, _text_picture((256, 256), 235, 0, seed=5))
    assert pixel_verdict(page, None, config).rejected
    clipped = head.copy()
    clipped[head > 60] = 255
    assert [r for level, r, _ in pixel_verdict(clipped, None, config).findings if level == "reject"] == ["saturated"]
