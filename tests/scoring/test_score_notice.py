"""Issue 17 item 5: ``score`` labels an untrained model's files, and tells random backbone weights from
untrained adapters with evaluate's :func:`~adaptclip_med.reporting.labels.run_notice`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.reporting.labels import UNTRAINED_ADAPTERS, UNTRAINED_BACKBONE
from adaptclip_med.score import main
from adaptclip_med.scoring import run as score_run
from adaptclip_med.scoring.dicom_export import ascii_text

from .conftest import TINY


@pytest.fixture(scope="module")
def scored_series(score_inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DICOM series scored few-shot on the tiny random backbone."""
    out = tmp_path_factory.mktemp("notice") / "run"
    assert main([str(score_inputs["ct"]), "--out", str(out), "--normals", str(score_inputs["normals"]), *TINY]) == 0
    return out


def test_scores_csv_run_json_and_prompts_carry_the_notice(scored_series: Path) -> None:
    table = pd.read_csv(scored_series / "scores.csv", keep_default_na=False)
    assert len(table) and (table["notice"] == UNTRAINED_BACKBONE).all()
    assert json.loads((scored_series / "run.json").read_text(encoding="utf-8"))["notice"] == UNTRAINED_BACKBONE
    assert json.loads((scored_series / "prompts.json").read_text(encoding="utf-8"))["notice"] == UNTRAINED_BACKBONE


def test_every_dicom_object_shows_the_notice(scored_series: Path) -> None:
    objects = sorted((scored_series / "dicom").rglob("*.dcm"))
    kinds = {p.name if p.parent.name != "overlay" else "overlay" for p in objects}
    assert {"parametric_map.dcm", "segmentation.dcm", "overlay"} <= kinds, kinds
    text = ascii_text(UNTRAINED_BACKBONE)
    for path in objects:
        ds = pydicom.dcmread(path)
        assert ds.SeriesDescription.startswith("[UNTRAINED BACKBONE] "), (path, ds.SeriesDescription)
        comments = [str(ds.get(tag, "")) for tag in ("ImageComments", "ContentDescription")]
        assert text in comments, (path, comments)


def test_real_backbone_without_checkpoint_scores_as_untrained_adapters(
        score_inputs: dict[str, Path], tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--pretrained openai --checkpoint none``: "untrained adapters", not "untrained backbone" (the tiny
    model stands in for the real weights, which the tests do not download)."""
    monkeypatch.setattr(score_run, "load_model_for", lambda config: tiny_model)
    model = EvalConfig(datasets=(), roots=(), backbone="adaptclip-tiny", pretrained="openai", checkpoint=None,
                       image_size=224)
    config = score_run.ScoreConfig(inputs=(str(score_inputs["png"]),), out=str(tmp_path / "run"), model=model,
                                   overlays="none", dicom=False)
    assert score_run.run_scoring(config).notice == UNTRAINED_ADAPTERS
    table = pd.read_csv(tmp_path / "run" / "scores.csv", keep_default_na=False)
    assert (table["notice"] == UNTRAINED_ADAPTERS).all()
    assert json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))["notice"] == UNTRAINED_ADAPTERS
