"""The package's layers (docs/architecture.md) hold: import-linter's contracts pass, and they do fail on an
upward import or a cycle; the package root holds only the public API and the command entry points."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]
#: what may sit at the package root: the API (``__init__``) and thin command entry points
ROOT_MODULES = {"__init__.py", "__main__.py", "evaluate.py", "score.py", "train.py", "datasets.py", "demo.py",
                "export.py"}


def _lint(cwd: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*LINT, "--config", str(config), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False, env=env)


def test_layer_contracts_are_kept() -> None:
    proc = _lint(REPO, REPO / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_root_holds_only_the_api_and_entry_points() -> None:
    root = REPO / "adaptclip_med"
    modules = {p.name for p in root.glob("*.py")}
    assert modules == ROOT_MODULES, sorted(modules ^ ROOT_MODULES)


@pytest.mark.parametrize(("module", "line", "broken"), [
    # the model importing the data layer (I/O in the model): an upward import across the layers
    ("model/heads.py", "from adaptclip_med.data.records import Record  # noqa", "adaptclip_med.model"),
    # runtime (bottom) importing a pipeline: upward, and with evaluation -> runtime a cycle
    ("runtime/io.py", "import adaptclip_med.evaluation.run  # noqa", "adaptclip_med.runtime"),
    # readers importing a data-set layout: upward inside data/
    ("data/readers/formats.py", "import adaptclip_med.data.layouts.common  # noqa", "adaptclip_med.data.readers"),
])
def test_contracts_fail_on_an_upward_import(tmp_path: Path, module: str, line: str, broken: str) -> None:
    copy = tmp_path / "adaptclip_med"
    shutil.copytree(REPO / "adaptclip_med", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    proc = _lint(tmp_path, tmp_path / "pyproject.toml")
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "BROKEN" in proc.stdout and f"{broken}" in proc.stdout
