"""Kill a run from outside (SIGKILL once its first batch shard exists), resume it, compare with an
uninterrupted run: identical tables, and only the lost batches recomputed.

The run being killed reports its first shard and then waits, so the kill lands between its first and
second batch however the machine schedules the two processes (no polling race).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import REPO

SAME_FILES = ("per_image.csv", "summary.csv", "metrics_long.csv", "clinical.csv", "operating_points.csv",
              "tables/main.md", "tables/main.tex", "tables/clinical.md", "prompts/folder/folder/k2_seed2.json")


#: The evaluation CLI, except that after writing its first batch shard it names the shard on the pipe
#: ``argv[1]`` and blocks on stdin (which the test never closes before its SIGKILL).
_PAUSE_AFTER_FIRST_SHARD = """
import os, sys
import torch
torch.set_num_threads(int(os.environ["ADAPTCLIP_TEST_THREADS"]))  # the parent's: same rounding as in-process
import adaptclip_med.evaluation.run as run
from adaptclip_med.evaluate import main

write_shard = run.write_shard

def write_then_wait(path, shard):
    write_shard(path, shard)
    os.write(int(sys.argv[1]), path.name.encode() + b"\\n")
    sys.stdin.read()

run.write_shard = write_then_wait
sys.exit(main(sys.argv[2:]))
"""


def _kill_after_first_shard(args: list[str], out: Path, log: Path) -> list[Path]:
    """Start the CLI, SIGKILL it once it has written its first batch shard; return the shards left.

    The CLI waits after that shard until it is killed, so the kill cannot land after a later batch.
    """
    read_fd, write_fd = os.pipe()
    with log.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", _PAUSE_AFTER_FIRST_SHARD, str(write_fd), *args], cwd=REPO,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr,
                                pass_fds=(write_fd,),
                                env={**os.environ, "ADAPTCLIP_TEST_THREADS": str(torch.get_num_threads())})
    os.close(write_fd)  # the child holds the only write end: end of file once it exits
    try:
        with os.fdopen(read_fd, "rb") as reports:
            first = reports.readline()
        assert first == b"b000000.npz\n", ("the run ended before its first shard: "
                                            + log.read_text(errors="replace")[-2000:])
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
    return sorted(out.glob("shards/*/b*.npz"))


def test_killed_run_resumes_to_identical_tables(synthetic_root: Path, synthetic_run: Path, tmp_path: Path,
                                                 syn_args: list[str], tiny_args: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "resumed"
    args = [*syn_args, "--root", str(synthetic_root), *tiny_args, "--overlays", "0", "--no-figures",
            "--out", str(out)]
    # one class, 8 queries in 2 batches of 4, three parts scored from each batch
    shards = _kill_after_first_shard(args, out, tmp_path / "killed_run.log")
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


def test_a_second_run_into_a_busy_folder_stops_with_one_line(synthetic_root: Path, tmp_path: Path,
                                                             syn_args: list[str], tiny_args: list[str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """While another process writes the run folder (or the feature store), evaluate stops at once with one
    line naming it, before writing anything there."""
    from adaptclip_med.evaluate import main

    out, store = tmp_path / "busy", tmp_path / "store"
    args = [*syn_args, "--root", str(synthetic_root), *tiny_args, "--overlays", "0", "--no-figures",
            "--out", str(out), "--feature-cache", str(store)]
    holding = ("import sys, time\nfrom adaptclip_med.runtime.locks import hold\n"
               "with hold(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)")
    for busy in (out, store):
        holder = subprocess.Popen([sys.executable, "-c", holding, str(busy)], stdout=subprocess.PIPE, text=True,
                                  cwd=REPO)
        try:
            assert holder.stdout.readline().strip() == "held"
            capsys.readouterr()
            assert main(args) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"another run is writing {busy}" in err[0] and f"pid {holder.pid}" in err[0]
            assert not (out / "run.json").exists()
        finally:
            holder.kill()
            holder.wait()
    assert main(args) == 0  # both released: the run goes ahead
