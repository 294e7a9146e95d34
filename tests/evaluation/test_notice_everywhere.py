"""Issue 17 item 5: every file of an untrained model's evaluate run carries its notice; a trained run's do not.

CSVs end with a ``notice`` column (the notice on every row, empty for a trained model); JSON files get a
``notice`` key only when the model is untrained (``run.json``, ``prompts/**/*.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from adaptclip_med.data.prompts import PromptDraw
from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.reporting.labels import UNTRAINED_ADAPTERS, UNTRAINED_BACKBONE, notice_of, run_notice
from adaptclip_med.reporting.provenance import write_prompt_manifests
from adaptclip_med.reporting.tables import with_notice_column

CSVS = ("per_image.csv", "metrics_long.csv", "summary.csv", "clinical.csv", "operating_points.csv",
        "overlays/index.csv")


def test_every_csv_of_an_untrained_run_carries_the_notice(synthetic_run: Path) -> None:
    for name in CSVS:
        table = pd.read_csv(synthetic_run / name, keep_default_na=False)
        assert len(table) > 0, name
        assert "notice" in table.columns, name
        assert (table["notice"] == UNTRAINED_BACKBONE).all(), name
        if name != "summary.csv":  # the new notice columns come last (summary.csv had its own already)
            assert table.columns[-1] == "notice", name


def test_json_files_of_an_untrained_run_carry_the_notice(synthetic_run: Path) -> None:
    run = json.loads((synthetic_run / "run.json").read_text(encoding="utf-8"))
    assert run["notice"] == UNTRAINED_BACKBONE
    manifests = sorted((synthetic_run / "prompts").rglob("*.json"))
    assert manifests  # the k = 2 parts drew prompts
    for path in manifests:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        assert manifest["notice"] == UNTRAINED_BACKBONE, path
        assert manifest["k"] == 2 and len(manifest["prompts"]) == 2


def test_a_trained_model_gets_an_empty_column_and_no_key(tmp_path: Path) -> None:
    frame = pd.DataFrame({"score": [0.1, 0.2], "notice": ["stale", "stale"]})
    assert list(with_notice_column(frame, None)["notice"]) == ["", ""]
    assert list(with_notice_column(frame, UNTRAINED_ADAPTERS).columns) == ["score", "notice"]
    record = {"dataset": "folder", "cls": "brain", "shots": 1, "seed": 3, "prompts": {"k": 1, "prompts": []}}
    write_prompt_manifests(tmp_path, [record], None)
    [path] = (tmp_path / "prompts").rglob("*.json")
    assert "notice" not in json.loads(path.read_text(encoding="utf-8"))
    write_prompt_manifests(tmp_path, [record], UNTRAINED_ADAPTERS)
    assert json.loads(path.read_text(encoding="utf-8"))["notice"] == UNTRAINED_ADAPTERS
    draw = PromptDraw([], "folder", "brain", 1, 3)
    assert "notice" not in draw.manifest() and draw.manifest(UNTRAINED_BACKBONE)["notice"] == UNTRAINED_BACKBONE


def test_real_backbone_without_checkpoint_is_called_untrained_adapters() -> None:
    assert run_notice(pretrained="openai", checkpoint=None) == UNTRAINED_ADAPTERS
    assert "untrained adapters" in UNTRAINED_ADAPTERS and "backbone" not in UNTRAINED_ADAPTERS
    assert run_notice(pretrained=None, checkpoint=None) == UNTRAINED_BACKBONE
    assert run_notice(pretrained=None, checkpoint="adaptclip-mvtec") == UNTRAINED_BACKBONE
    assert run_notice(pretrained="openai", checkpoint="adaptclip-mvtec") is None
    fresh = EvalConfig(datasets=(), roots=(), pretrained="openai", checkpoint=None)
    assert notice_of(fresh) == UNTRAINED_ADAPTERS  # what evaluate and score both call
