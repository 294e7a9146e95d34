"""Every notebook runs top to bottom as opened, on a machine without the real weights.

No switch is set: the notebooks run in their default mode. The machine is made one without the weights
(offline, an empty weights folder, a fresh ``HOME`` so no ``~/.cache``), so each notebook must say so in
one line and fall back to the tiny random backbone with its outputs marked (every displayed figure
carries the burned-in notice banner, every displayed table the notice in its caption). The kernel is this
interpreter (a kernelspec written into a temporary ``JUPYTER_PATH``) importing this checkout
(``PYTHONPATH``); outputs go to a temporary ``ADAPTCLIP_REPORTS`` folder.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from nbclient import NotebookClient
from PIL import Image

from adaptclip_med.reporting.labels import BAND_FACE

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
EXPECTED = [
    "01_quickstart.ipynb",
    "02_zero_shot_medical.ipynb",
    "03_few_shot_medical.ipynb",
    "04_volumes.ipynb",
    "05_train_adapters.ipynb",
    "06_compare_methods.ipynb",
]
WITH_VIEWER = {"01_quickstart.ipynb", "04_volumes.ipynb"}
KERNEL = "adaptclip-med-test"
NOTICE = "untrained backbone — pipeline demo only"
WIDGET = "application/vnd.jupyter.widget-view+json"
BAND_RGB = np.rint(255 * np.array(to_rgb(BAND_FACE))).astype(int)


def test_the_six_notebooks_exist_start_with_parameters_and_have_no_mode_switch() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == EXPECTED
    for name in EXPECTED:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: clear outputs"
        sources = "\n".join(c.source for c in nb.cells)
        assert "SMOKE" not in sources, f"{name}: the default mode must run as opened, without a switch"
        assert "load_model_or_demo(" in sources, f"{name}: loads through the one fallback function"


@pytest.fixture
def no_weights_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernelspec for this interpreter on a machine without the real weights; reports under ``tmp_path``."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "adaptclip_med (test)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("ADAPTCLIP_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    # no weights anywhere: no network, an empty weights folder, no ~/.cache/clip or Hugging Face cache
    monkeypatch.setenv("ADAPTCLIP_OFFLINE", "1")
    monkeypatch.setenv("ADAPTCLIP_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    monkeypatch.setenv("MPLCONFIGDIR", matplotlib.get_configdir())  # keep the font cache of the real HOME
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME", "MPLBACKEND"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "reports"


def _texts(cell: nbformat.NotebookNode) -> str:
    """Everything a cell printed or showed as text (streams, errors, text/plain and text/markdown)."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts += [out.get("data", {}).get(k, "") for k in ("text/plain", "text/markdown")]
        parts += out.get("traceback", [])
    return "\n".join(parts)


def _banner_pixels(png_base64: str) -> int:
    """How many pixels of a displayed PNG have the notice banner's fill colour (labels.BAND_FACE)."""
    with Image.open(io.BytesIO(base64.b64decode(png_base64))) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    return int((np.abs(rgb - BAND_RGB).max(axis=1) <= 2).sum())


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_as_opened_without_weights(name: str, no_weights_machine: Path) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import adaptclip_med\nprint('package:', adaptclip_med.__file__)"))
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError (with the traceback) when a cell raises
    cells = [c for c in nb.cells if c.cell_type == "code"]
    texts = [_texts(c) for c in cells]
    everything = "\n".join(texts)
    assert f"package: {REPO / 'adaptclip_med' / '__init__.py'}" in texts[-1]  # the kernel runs this checkout
    fallback = [ln for ln in everything.splitlines() if "not found locally or online" in ln]
    assert len(fallback) == 1 and NOTICE in fallback[0] and "ADAPTCLIP_WEIGHTS_DIR" in fallback[0], fallback
    assert "Traceback" not in everything and "WeightsNotFoundError" not in everything
    assert "IProgress not found" not in everything  # tqdm found ipywidgets: bars render as widgets
    written = [p for p in no_weights_machine.rglob("*") if p.is_file()]
    assert written, f"{name} wrote nothing under ADAPTCLIP_REPORTS"
    figures = [o["data"]["image/png"] for c in cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert figures, f"{name} displayed no figure"
    unmarked = [i for i, png in enumerate(figures) if _banner_pixels(png) < 200]
    assert not unmarked, f"{name}: figure(s) {unmarked} of {len(figures)} lack the burned-in notice banner"
    markdown = [o["data"]["text/markdown"] for c in cells for o in c.outputs if "text/markdown" in o.get("data", {})]
    assert all(NOTICE in table for table in markdown), "a displayed table lacks the untrained marker"
    widgets = [o for c in cells for o in c.outputs if WIDGET in o.get("data", {})]
    if name in WITH_VIEWER:
        assert widgets, f"{name}: the interactive viewer was not displayed"
