"""Kill a run midway (SIGKILL in a subprocess), resume it, and compare with an uninterrupted run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from adaptclip_med.pipeline import KILL_ENV

SAME_FILES = ("per_image.csv", "summary.csv", "metrics_long.csv", "clinical.csv", "operating_points.csv",
              "tables/main.md", "tables/main.tex", "tables/clinical.md", "prompts/folder/syn/k2_seed2.json")


def test_killed_run_resumes_to_identical_tables(synthetic_root: Path, synthetic_run: Path, tmp_path: Path,
                                                 cli: object, syn_args: list[str], tiny_args: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "resumed"
    args = [*syn_args, "--root", str(synthetic_root), *tiny_args, "--overlays", "0", "--no-figures",
            "--out", str(out)]
    # 8 queries per part, batches of 4: killed after part 1 and the first batch of part 2
    killed = cli(args, env={KILL_ENV: "12"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert json.loads((out / "run.json").read_text())["status"] == "incomplete"
    assert sorted(p.name for p in (out / "parts").glob("*.json")) == ["folder__syn__k0__s1.json"]
    assert not (out / "summary.csv").exists()
    assert not list((out / "parts").glob("*.tmp"))  # temp files of the killed part are not taken as parts

    from adaptclip_med.evaluate import main

    assert main(args) == 0  # resume in-process (saves a second interpreter start-up)
    assert "2 part(s) computed, 1 reused" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    for name in SAME_FILES:
        assert (out / name).read_text() == (synthetic_run / name).read_text(), name

    (out / "summary.csv").unlink()
    assert main(args) == 0  # a finished run: everything reused, the tables rebuilt identically
    assert "0 part(s) computed, 3 reused" in capsys.readouterr().out
    assert (out / "summary.csv").read_text() == (synthetic_run / "summary.csv").read_text()
