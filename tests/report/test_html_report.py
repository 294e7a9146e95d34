"""index.html of a run: built from the run directory, self-contained, rendered by a real Chromium."""

from __future__ import annotations

import html
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from adaptclip_med.reporting.html import parse_markdown_tables, write_html_report
from adaptclip_med.runtime.errors import DataValidationError

NOTICE = "untrained backbone — pipeline demo only"


def test_parse_markdown_tables_reads_caption_header_and_rows() -> None:
    text = (
        "intro\n**Table 2: pixel AUROC**\n\n| dataset | 0 | 1 |\n|:--|--:|--:|\n"
        "| br35h | 71.5 | 80.0 |\n| Avg | 1 |\n\nn/a: no masks\n"
        "# Table 3\n| a |\n|---|\n| x |\nlast note\n"
    )
    first, second = parse_markdown_tables(text)
    assert first.caption == "Table 2: pixel AUROC" and first.notes == ["n/a: no masks"]
    assert list(first.frame.columns) == ["dataset", "0", "1"]
    assert first.frame.values.tolist() == [["br35h", "71.5", "80.0"], ["Avg", "1", ""]]
    assert second.caption == "Table 3" and second.notes == ["last note"]
    assert second.frame.values.tolist() == [["x"]]


def test_report_is_self_contained_and_marks_the_notice(fake_run_dir: Path) -> None:
    page = write_html_report(fake_run_dir).read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 5  # 1 figure; 2 overlays in "highest-scored", 1 false alarm, 1 miss
    assert all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in sources)
    assert "<link" not in page and "http://" not in page and "https://" not in page
    assert page.count(NOTICE) >= 2  # banner + table caption
    assert "Table 1: image-level AUROC (%)" in page and "brain_mri" in page


def test_report_renders_tables_and_images_in_chromium(
    fake_run_dir: Path, chromium: str, browser: ModuleType, tmp_path: Path
) -> None:
    index = write_html_report(fake_run_dir)
    seen = browser.probe(chromium, index, tmp_path / "probe")
    assert seen["images"] == 5 and seen["images_shown"] == 5, seen
    assert seen["min_width"] > 100, seen
    assert seen["notice"] == NOTICE
    results = [t for t in seen["tables"] if t["caption"].startswith("Table 1")]
    assert len(results) == 1 and results[0]["rows"] == 3 and results[0]["cols"] == 3, seen["tables"]
    assert all(t["width"] > 50 for t in seen["tables"]), seen["tables"]

    png = browser.screenshot(chromium, index, tmp_path / "shot.png", width=1024, height=3000)
    shot = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    assert shot.shape == (3000, 1024, 3)
    assert shot.std() > 20, "the screenshot is (nearly) blank"
    saturated = (shot.max(axis=2) - shot.min(axis=2)) > 120  # jet heat-map colours of the overlays
    assert saturated.mean() > 0.005, f"only {saturated.mean():.4f} of the pixels are colourful"


def test_report_errors_name_the_bad_file(tmp_path: Path, fake_run_dir: Path) -> None:
    with pytest.raises(DataValidationError, match=r"run\.json is missing"):
        write_html_report(tmp_path / "missing")
    bad = fake_run_dir / "figures" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataValidationError, match=re.escape(str(bad))):
        write_html_report(fake_run_dir)


def test_report_reads_without_help_and_shows_no_paths(fake_run_dir: Path, chromium: str, browser: ModuleType,
                                                      tmp_path: Path) -> None:
    index = write_html_report(fake_run_dir)
    page = index.read_text(encoding="utf-8")
    for leak in ("/pacs", "DOE^JOHN", "PAT-12345", "dr_who", "/opt/venv", "0123456789abcdef"):
        assert leak not in page, leak  # no root, input name, command path or run.json dump
    seen = browser.probe(chromium, index, tmp_path / "probe")
    assert {"I-AUROC", "P-AUPR", "AUPRO", "I-F1max", "k (shots)", "operating point", "sens@95spec"} <= set(
        seen["glossary"]), seen["glossary"]
    assert seen["glossary_width"] > 150
    assert seen["counts"] == "2 images scored (1 normal, 1 abnormal), 1 skipped — see skipped.csv"
    assert seen["galleries"] == {"top": 2, "false_alarm": 1, "miss": 1}
    assert "Abnormal image · score 0.310 · missed · chest_ct / ct · k = 1 · image 0" in seen["gallery_captions"]
    assert "Normal image · score 0.620 · false alarm · brain_mri / brain · k = 1 · image 1" in seen["gallery_captions"]
    assert seen["provenance_folded"]
    command = "python -m adaptclip_med.evaluate --datasets brain_mri --root brain_mri=<path> --out <path>"
    assert html.escape(command) in page
