"""The demo end to end (offline: falls back to the tiny backbone), then its report in Chromium.

One test function runs the demo once (a module fixture would run once per xdist worker).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adaptclip_med import demo

NOTICE = "untrained backbone — pipeline demo only"


def _run_demo_offline(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """``python -m adaptclip_med.demo`` in-process with no weights anywhere and no network."""
    monkeypatch.setenv("ADAPTCLIP_OFFLINE", "1")
    monkeypatch.setenv("ADAPTCLIP_WEIGHTS_DIR", str(tmp / "no-weights"))
    monkeypatch.setenv("HOME", str(tmp / "home"))  # no ~/.cache/clip either
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = demo.main(["--out", str(tmp / "run"), "--n-per-class", "3", "--shots", "0", "1",
                          "--seeds", "10", "20"])
    assert code == 0
    return tmp / "run", buf.getvalue()


def test_demo_end_to_end_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 request: pytest.FixtureRequest) -> None:
    run, stdout = _run_demo_offline(tmp_path, monkeypatch)
    lines = stdout.strip().splitlines()
    fallback = [ln for ln in lines if "not found" in ln]
    assert len(fallback) == 1 and NOTICE in fallback[0] and "ADAPTCLIP_WEIGHTS_DIR" in fallback[0]
    assert lines[-1].split()[:2] == ["Report", "written:"]
    assert lines[-1].split()[2] == str((run / "index.html").resolve())
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["notice"] == NOTICE
    tables = [*run.glob("tables/*.md"), *run.glob("tables/*.tex")]
    assert len(tables) >= 3 and all(NOTICE in t.read_text(encoding="utf-8") for t in tables)
    page = (run / "index.html").read_text(encoding="utf-8")
    assert page.count(NOTICE) >= 3  # banner + one per table caption
    assert "SYNTHETIC lesion" in page  # the protocol says what the demo set is
    summary = (run / "summary.csv").read_text(encoding="utf-8").splitlines()
    assert {row.split(",")[2] for row in summary[1:]} == {"0", "1"}  # zero- and few-shot rows
    assert {row.split(",")[0] for row in summary[1:]} == {"brain_mri", "Avg"}  # the set's label, not "folder"

    chromium, browser = request.getfixturevalue("chromium"), request.getfixturevalue("browser")
    seen = browser.probe(chromium, run / "index.html", tmp_path / "probe")
    assert seen["notice"] == NOTICE
    assert seen["images"] >= 4 and seen["images_shown"] == seen["images"], seen
    results = [t for t in seen["tables"] if t["caption"].startswith("AdaptCLIP results")]
    assert len(results) == 1 and results[0]["rows"] >= 3 and results[0]["cols"] >= 8, seen["tables"]
    assert NOTICE in results[0]["caption"]
    # readable without help: glossary beside the tables, n per row, the miss gallery, folded provenance
    assert {"I-AUROC", "P-AUPR", "AUPRO", "I-F1max", "k (shots)", "operating point"} <= set(seen["glossary"])
    main_header = seen["headers"][seen["tables"].index(results[0])]
    assert {"n normal", "n abnormal", "n skipped"} <= set(main_header), main_header
    assert re.match(r"^\d+ images scored \(\d+ normal, \d+ abnormal\), 0 skipped", seen["counts"]), seen["counts"]
    assert seen["galleries"]["top"] >= 1 and seen["galleries"]["miss"] >= 1, seen["galleries"]
    assert any(c.startswith("Abnormal image · score") for c in seen["gallery_captions"])
    assert seen["provenance_folded"]
    png = browser.screenshot(chromium, run / "index.html", tmp_path / "demo.png", width=1280, height=2400)
    shot = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    assert shot.shape == (2400, 1280, 3) and shot.std() > 20, "the screenshot is (nearly) blank"
    assert ((shot.max(axis=2) - shot.min(axis=2)) > 120).mean() > 0.002  # heat-map colours are on screen


def test_mark_table_captions_marks_markdown_and_latex_once(fake_run_dir: Path) -> None:
    tex = fake_run_dir / "tables" / "image_level.tex"
    tex.write_text("\\begin{table}\\caption{Image AUROC}\\end{table}\n", encoding="utf-8")
    bare = fake_run_dir / "tables" / "plain.md"
    bare.write_text("| a |\n|---|\n| 1 |\n", encoding="utf-8")
    md = fake_run_dir / "tables" / "image_level.md"
    md.write_text("**Table 1: image AUROC**\n\n| a |\n|---|\n| 1 |\n", encoding="utf-8")
    changed = demo.mark_table_captions(fake_run_dir, NOTICE)
    assert sorted(p.name for p in changed) == ["image_level.md", "image_level.tex", "plain.md"]
    assert md.read_text(encoding="utf-8").startswith(f"**Table 1: image AUROC ({NOTICE})**")
    assert f"\\caption{{[{NOTICE}] Image AUROC}}" in tex.read_text(encoding="utf-8")
    assert bare.read_text(encoding="utf-8").startswith(f"**{NOTICE}**\n\n| a |")
    assert demo.mark_table_captions(fake_run_dir, NOTICE) == []


def test_load_demo_model_without_real_weights_is_the_tiny_backbone(capsys: pytest.CaptureFixture[str]) -> None:
    model, setup = demo.load_demo_model(prefer_real=False)
    assert (setup.backbone, setup.pretrained, setup.checkpoint, setup.untrained) == ("adaptclip-tiny", None, None, True)
    assert setup.notice == NOTICE and model.image_size == 224
    assert capsys.readouterr().out == ""  # only the fallback from real weights prints its one line
