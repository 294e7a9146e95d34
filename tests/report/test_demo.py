"""The demo end to end (offline: falls back to the tiny backbone), then its report in Chromium."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import ModuleType

import pytest

from adaptclip_med import demo

NOTICE = "untrained backbone — pipeline demo only"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run ``python -m adaptclip_med.demo`` in-process with no weights anywhere and no network."""
    tmp = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADAPTCLIP_OFFLINE", "1")
        mp.setenv("ADAPTCLIP_WEIGHTS_DIR", str(tmp / "no-weights"))
        mp.setenv("HOME", str(tmp / "home"))  # no ~/.cache/clip either
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = demo.main(["--out", str(tmp / "run"), "--n-per-class", "3", "--shots", "0", "1",
                              "--seeds", "10", "20"])
    assert code == 0
    return tmp / "run", buf.getvalue()


def test_demo_falls_back_in_one_line_and_marks_every_output(demo_run: tuple[Path, str]) -> None:
    run, stdout = demo_run
    lines = stdout.strip().splitlines()
    fallback = [ln for ln in lines if "not found" in ln]
    assert len(fallback) == 1 and NOTICE in fallback[0] and "ADAPTCLIP_WEIGHTS_DIR" in fallback[0]
    assert lines[-1].startswith("Report written: ") and lines[-1].split()[2] == str((run / "index.html").resolve())
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["notice"] == NOTICE
    for table in [*run.glob("tables/*.md"), *run.glob("tables/*.tex")]:
        assert NOTICE in table.read_text(encoding="utf-8"), table
    page = (run / "index.html").read_text(encoding="utf-8")
    assert page.count(NOTICE) >= 3  # banner + one per table caption
    assert "SYNTHETIC lesion" in page  # the protocol says what the demo set is
    # zero- and few-shot rows, one per shot count plus the Avg rows
    summary = (run / "summary.csv").read_text(encoding="utf-8").splitlines()
    assert {row.split(",")[2] for row in summary[1:]} == {"0", "1"}


def test_marking_table_captions_is_idempotent(demo_run: tuple[Path, str]) -> None:
    run, _ = demo_run
    before = {p: p.read_text(encoding="utf-8") for p in run.glob("tables/*.*")}
    assert demo.mark_table_captions(run, NOTICE) == []
    assert {p: p.read_text(encoding="utf-8") for p in run.glob("tables/*.*")} == before


def test_demo_report_renders_in_chromium(
    demo_run: tuple[Path, str], chromium: str, browser: ModuleType, tmp_path: Path
) -> None:
    run, _ = demo_run
    seen = browser.probe(chromium, run / "index.html", tmp_path)
    assert seen["notice"] == NOTICE
    assert seen["images"] >= 4 and seen["images_shown"] == seen["images"], seen
    results = [t for t in seen["tables"] if t["caption"].startswith("AdaptCLIP results")]
    assert len(results) == 1 and results[0]["rows"] >= 3 and results[0]["cols"] >= 8, seen["tables"]
    assert NOTICE in results[0]["caption"]
