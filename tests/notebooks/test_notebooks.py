"""Every notebook runs top to bottom in smoke mode (tiny random backbone, a few images).

The kernel is this interpreter (a kernelspec written into a temporary JUPYTER_PATH), so the notebooks
see exactly the packages the tests see. Outputs go to a temporary ``ADAPTCLIP_REPORTS`` folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
EXPECTED = [
    "01_quickstart.ipynb",
    "02_zero_shot_medical.ipynb",
    "03_few_shot_medical.ipynb",
    "04_volumes.ipynb",
    "05_train_adapters.ipynb",
]
KERNEL = "adaptclip-med-test"


def test_the_five_notebooks_exist_and_start_with_a_parameters_cell() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == EXPECTED
    for name in EXPECTED:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), name
        assert "SMOKE" in first_code.source, name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: clear outputs"


@pytest.fixture
def smoke_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernelspec for this interpreter, smoke mode on, reports written under ``tmp_path``."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "adaptclip_med (test)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("ADAPTCLIP_SMOKE", "1")
    monkeypatch.setenv("ADAPTCLIP_REPORTS", str(tmp_path / "reports"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel uses its inline backend
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return tmp_path / "reports"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_in_smoke_mode(name: str, smoke_env: Path) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError (with the traceback) when a cell raises
    written = [p for p in smoke_env.rglob("*") if p.is_file()]
    assert written, f"{name} wrote nothing under ADAPTCLIP_REPORTS"
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{name} displayed no figure"
