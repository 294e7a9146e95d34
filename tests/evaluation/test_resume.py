"""Kill a run from outside (SIGKILL once its first batch shard exists), resume it, compare with an
uninterrupted run: identical tables, and only the lost batches recomputed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO

SAME_FILES = ("per_image.csv", "summary.csv", "metrics_long.csv", "clinical.csv", "operating_points.csv",
              "tables/main.md", "tables/main.tex", "tables/clinical.md", "prompts/folder/folder/k2_seed2.json")


def _kill_after_first_shard(args: list[str], out: Path) -> list[Path]:
    """Start the CLI, SIGKILL it as soon as a batch shard file appears; return the shards left."""
    proc = subprocess.Popen([sys.executable, "-m", "adaptclip_med.evaluate", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and not list(out.glob("shards/*/b*.npz")):
            time.sleep(0.0005)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        proc.stderr.close()
        if proc.poll() is None:
            proc.kill()
    return sorted(out.glob("shards/*/b*.npz"))


def test_killed_run_resumes_to_identical_tables(synthetic_root: Path, synthetic_run: Path, tmp_path: Path,
                                                 syn_args: list[str], tiny_args: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "resumed"
    args = [*syn_args, "--root", str(synthetic_root), *tiny_args, "--overlays", "0", "--no-figures",
            "--out", str(out)]
    # one class, 8 queries in 2 batches of 4, three parts scored from each batch
    shards = _kill_after_first_shard(args, out)
    assert len(shards) == 1
    assert json.loads((out / "run.json").read_text())["status"] == "incomplete"
    assert not list((out / "parts").glob("*.json"))  # no part finished: the class was in its second batch
    assert not (out / "summary.csv").exists()

    from adaptclip_med.evaluate import main

    assert main(args) == 0  # resume in-process (saves a second interpreter start-up)
    printed = capsys.readouterr().out
    assert "3 part(s) computed, 0 reused" in printed
    # the 4 queries of the lost batch; the 4 prompts are read back from shards/<class>/prompts/
    assert "backbone encodes: 4 image(s); 1 batch(es) resumed" in printed
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not (out / "shards" / "folder__folder").exists()  # a finished class keeps no shards
    for name in SAME_FILES:
        assert (out / name).read_bytes() == (synthetic_run / name).read_bytes(), name

    (out / "summary.csv").unlink()
    assert main(args) == 0  # a finished run: everything reused, the tables rebuilt identically
    printed = capsys.readouterr().out
    assert "0 part(s) computed, 3 reused" in printed and "backbone encodes: 0 image(s)" in printed
    assert (out / "summary.csv").read_bytes() == (synthetic_run / "summary.csv").read_bytes()
