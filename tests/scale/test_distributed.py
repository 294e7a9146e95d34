"""``adaptclip_med.runtime.distributed`` under a real ``torchrun`` with 2 CPU processes (gloo), and on one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adaptclip_med.runtime.distributed import Dist, init_from_env, owner, shard
from adaptclip_med.runtime.errors import AdaptCLIPError

REPO = Path(__file__).resolve().parents[2]

WORKER = """
import json, sys
from adaptclip_med.runtime.distributed import init_from_env, shard
ctx, device = init_from_env("cpu")
items = [f"img{i:02d}" for i in range(7)]
mine = shard(items, ctx, key=lambda s: s[::-1])
ok = ctx.all_ok(ctx.rank != int(sys.argv[2]))
ctx.barrier()
with open(f"{sys.argv[1]}/rank{ctx.rank}.json", "w") as fh:
    json.dump({"rank": ctx.rank, "world": ctx.world_size, "backend": ctx.backend, "device": device,
               "mine": mine, "all_ok": ok}, fh)
ctx.close()
"""


def torchrun(nproc: int, *args: str) -> list[str]:
    """The ``torchrun --standalone`` command line (through the installed torch), one thread per rank."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx, device = init_from_env("cpu")
    assert ctx == Dist() and device == "cpu" and ctx.is_main and not ctx.active
    assert shard(["b", "a", "c"], ctx, key=str) == ["a", "b", "c"]
    assert ctx.all_ok(True) and not ctx.all_ok(False)
    ctx.barrier()
    assert [owner(i, Dist(1, 3)) for i in range(5)] == [0, 1, 2, 0, 1]


def test_bad_torchrun_environment_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(AdaptCLIPError, match="RANK='x'"):
        init_from_env("cpu")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(AdaptCLIPError, match="mps"):
        init_from_env("mps")


def test_two_gloo_ranks_split_deterministically_and_agree(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(torchrun(2, str(script), str(tmp_path), "1"), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and {r["backend"] for r in ranks} == {"gloo"}
    items = sorted((f"img{i:02d}" for i in range(7)), key=lambda s: s[::-1])
    assert ranks[0]["mine"] == items[0::2] and ranks[1]["mine"] == items[1::2]
    assert ranks[0]["all_ok"] is False and ranks[1]["all_ok"] is False  # rank 1 failed: both know it
