"""Fixtures of the evaluation tests: a synthetic data set on disk and the tiny-backbone CLI arguments."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Tiny random backbone at 224 px: fast, deterministic; small bootstrap.
TINY_ARGS = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--checkpoint", "none",
             "--allow-random-backbone", "--image-size", "224", "--bootstrap", "100"]
#: The synthetic run every integration test compares against.
SYN_ARGS = ["--datasets", "folder", "--shots", "0", "2", "--seeds", "1", "2", "--batch-size", "4"]


@contextmanager
def _shared_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder shared by all pytest-xdist workers; yields ``(path, done)`` under an exclusive lock."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / name
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield path, (shared / f"{name}.done").exists()
            (shared / f"{name}.done").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded ``folder`` data set: 8 normal (4 held out as prompts), 4 abnormal with masks, 64 px."""
    from adaptclip_med.data import make_synthetic_folder

    with _shared_once(tmp_path_factory, "syn") as (path, done):
        if not done:
            make_synthetic_folder(path, n_normal=8, n_abnormal=4, size=64, seed=0)
    return path


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m adaptclip_med.evaluate ARGS`` in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "adaptclip_med.evaluate", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="session")
def tiny_args() -> list[str]:
    """CLI arguments selecting the tiny random backbone at 224 px."""
    return list(TINY_ARGS)


@pytest.fixture(scope="session")
def syn_args() -> list[str]:
    """CLI arguments of the reference synthetic run (without --root / --out)."""
    return list(SYN_ARGS)


@pytest.fixture(scope="session")
def cli() -> object:
    """:func:`run_cli`: run the evaluation CLI in a subprocess."""
    return run_cli


@pytest.fixture(scope="session")
def synthetic_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run over the synthetic set, in-process, with overlays and figures (computed once
    even with several xdist workers)."""
    from adaptclip_med.evaluate import main

    with _shared_once(tmp_path_factory, "full_run") as (out, done):
        if not done:
            args = [*SYN_ARGS, "--root", str(synthetic_root), *TINY_ARGS, "--overlays", "2", "--out", str(out)]
            assert main(args) == 0
    return out
