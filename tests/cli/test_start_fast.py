"""The commands answer ``--help``, ``--list`` and usage errors before torch, MONAI or matplotlib load.

Each case runs the real command in a subprocess under ``python -X importtime`` and reads the modules
it imported from that report (no timing is asserted: the module list is the contract).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Top-level packages that cost seconds to import; none may load before the arguments are parsed.
HEAVY = frozenset({"torch", "monai", "matplotlib", "open_clip", "scipy", "pandas", "pydicom", "nibabel"})


def _run(args: list[str]) -> tuple[subprocess.CompletedProcess, set[str], list[str]]:
    """Run ``python -X importtime ARGS``; return the process, the top-level modules imported, stderr lines."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = proc.stderr.splitlines()
    imported = {ln.rsplit("|", 1)[1].strip().split(".")[0] for ln in lines if ln.startswith("import time:")}
    messages = [ln for ln in lines if not ln.startswith("import time:") and ln.strip()]
    return proc, imported, messages


@pytest.mark.parametrize("command", [
    ["-m", "adaptclip_med.evaluate", "--help"],
    ["-m", "adaptclip_med.train", "--help"],
    ["-m", "adaptclip_med.datasets", "--help"],
    ["-m", "adaptclip_med.datasets", "--list"],
    ["-m", "adaptclip_med.demo", "--help"],
    ["-m", "adaptclip_med", "--help"],
    ["-m", "adaptclip_med.score", "--help"],
])
def test_help_and_list_import_nothing_heavy(command: list[str]) -> None:
    proc, imported, _ = _run(command)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout or "br35h" in proc.stdout
    assert "adaptclip_med" in imported  # the report does list our own package: the check can see imports
    assert not imported & HEAVY, sorted(imported & HEAVY)


@pytest.mark.parametrize(("command", "expected"), [
    (["-m", "adaptclip_med.evaluate", "--datasets", "br35h", "--shots", "x"], "invalid int value: 'x'"),
    (["-m", "adaptclip_med.evaluate", "--shots", "0"], "required: --datasets"),
    (["-m", "adaptclip_med.evaluate", "--datasets", "br35hh", "--root", "."], "did you mean 'br35h'"),
    (["-m", "adaptclip_med.train", "--dataset", "mvtec"], "required: --root, --out"),
    (["-m", "adaptclip_med.datasets", "check"], "required: name"),
    (["-m", "adaptclip_med.demo", "--n-per-class", "two"], "invalid int value: 'two'"),
    (["-m", "adaptclip_med.score", "--bogus"], "required: INPUT, --out"),
    (["-m", "adaptclip_med.evaluate", "--datasets", "folder", "--feature-cache-max-gb", "x"], "invalid float value"),
])
def test_bad_arguments_one_line_exit_2_without_torch(command: list[str], expected: str) -> None:
    proc, imported, messages = _run(command)
    assert proc.returncode == 2
    assert len(messages) == 1 and expected in messages[0], messages
    assert "error:" in messages[0] and "Traceback" not in proc.stderr
    assert not imported & HEAVY, sorted(imported & HEAVY)
