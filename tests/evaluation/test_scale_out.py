"""Scale-out of an evaluation: ``torchrun`` with 2 CPU processes (gloo) and the persistent feature store.

Both are compared with the reference single-process run of the synthetic set (``synthetic_run``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO

SAME_FILES = ("per_image.csv", "summary.csv", "metrics_long.csv", "operating_points.csv", "tables/main.md")


def _torchrun(nproc: int, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "adaptclip_med.evaluate", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _rank0_share_only(args: list[str], out: Path) -> int:
    """What a job whose rank 1 was killed leaves behind: rank 0's share of the shards, nothing else.

    Runs rank 0's share of a 2-rank job in this process (the code path of a real rank 0; its share
    needs no collective), so the state is exact rather than depending on when a kill lands.
    """
    from adaptclip_med.evaluate import build_parser, config_from_args
    from adaptclip_med.evaluation.keys import ContentHasher, model_content
    from adaptclip_med.evaluation.plan import plan_run
    from adaptclip_med.evaluation.run import RunResult, encode_share
    from adaptclip_med.loading.factory import load_model_for
    from adaptclip_med.runtime.distributed import Dist

    config = config_from_args(build_parser().parse_args(args), args)
    model, hasher = load_model_for(config), ContentHasher()
    return encode_share(plan_run(config), model, config, out, model_content(model, hasher), hasher, RunResult(out),
                        None, Dist(0, 2))


def test_torchrun_two_ranks_equal_one_process_and_resume_a_killed_rank(
        synthetic_root: Path, synthetic_run: Path, tmp_path: Path, syn_args: list[str], tiny_args: list[str]) -> None:
    out = tmp_path / "ddp"
    args = [*syn_args, "--root", str(synthetic_root), *tiny_args, "--overlays", "0", "--no-figures",
            "--out", str(out)]
    # 8 queries in 2 batches of 4: rank 0 scores batch 0, rank 1 batch 1, for the 3 parts at once
    assert _rank0_share_only(args, out) == 1
    assert [p.name for p in out.glob("shards/*/b*.npz")] == ["b000000.npz"]
    proc = subprocess.run(_torchrun(2, args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 1/2: scored 1 batch(es), its share" in proc.stdout
    # rank 1: its 4 queries (the 4 prompts were kept in shards/<class>/prompts/ by rank 0's earlier
    # share); rank 0: nothing (its batch stored, the prompts read back for the leave-one-out operating
    # points); a fresh job encodes 12 (8 queries + 4 prompts)
    assert "backbone encodes: 4 image(s) by 2 processes" in proc.stdout
    assert "2 batch(es) read from the ranks' shards" in proc.stdout
    assert {"plan", "model", "share", "score"} <= set(json.loads((out / "run.json").read_text())["timings_s"])
    for name in SAME_FILES:
        assert (out / name).read_bytes() == (synthetic_run / name).read_bytes(), name
    assert not list(out.glob("shards/*/b*.npz"))


def test_feature_store_serves_a_second_run_without_backbone_time(
        synthetic_root: Path, tmp_path: Path, syn_args: list[str], tiny_args: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    from adaptclip_med.evaluate import main

    store = tmp_path / "features"
    base = [*syn_args, "--root", str(synthetic_root), *tiny_args, "--overlays", "0", "--no-figures",
            "--feature-cache", str(store), "--feature-cache-max-gb", "1"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert "0 image(s) reused, 12 computed and stored" in capsys.readouterr().out  # 8 queries + 4 prompts
    assert main([*base, "--out", str(tmp_path / "b")]) == 0  # another run folder: nothing to resume from
    printed = capsys.readouterr().out
    assert "backbone encodes: 0 image(s), 12 from the feature store" in printed
    assert "12 image(s) reused, 0 computed" in printed
    a, b = (pd.read_csv(tmp_path / run / "per_image.csv") for run in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)  # the first run scored the rounded features it stored
    assert len(list(store.glob("*/??/*.npy"))) == 12


@pytest.mark.parametrize(("extra", "message"), [
    (["--feature-cache-max-gb", "2"], "no --feature-cache DIR"),
    (["--feature-cache", "x", "--feature-cache-max-gb", "0"], "--feature-cache-max-gb: got 0.0; expected > 0"),
])
def test_feature_store_arguments_are_checked(extra: list[str], message: str, synthetic_root: Path, cli: object,
                                             tiny_args: list[str]) -> None:
    proc = cli(["--datasets", "folder", "--root", str(synthetic_root), *tiny_args, *extra])
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
