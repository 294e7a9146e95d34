"""Fixtures of the report tests: a real headless Chromium and a run directory made from real files."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_HERE = Path(__file__).resolve().parent


def _load_browser() -> ModuleType:
    spec = importlib.util.spec_from_file_location("adaptclip_report_browser", _HERE / "browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def browser() -> ModuleType:
    """The helpers of ``browser.py`` (``screenshot``, ``probe``)."""
    return _load_browser()


@pytest.fixture(scope="session")
def chromium(browser: ModuleType) -> str:
    """Path of a headless Chromium.

    Found on PATH (or ``$ADAPTCLIP_CHROMIUM``); else installed with ``apt-get install chromium`` when
    running as root in CI (``ADAPTCLIP_REQUIRE_SHARED=1``) or with ``ADAPTCLIP_INSTALL_CHROMIUM=1``.
    In CI a missing browser fails the test; locally it skips with the command to run.
    """
    found = browser.find_chromium()
    in_ci = os.environ.get("ADAPTCLIP_REQUIRE_SHARED") == "1"
    if found is None and (in_ci or os.environ.get("ADAPTCLIP_INSTALL_CHROMIUM") == "1"):
        found = browser.install_chromium()
    if found is None:
        reason = "no headless Chromium found; install it with `apt-get install -y chromium`"
        if in_ci:
            pytest.fail(reason + " (CI must run the browser test)")
        pytest.skip(reason)
    return found


def _overlay_png(image: np.ndarray, amap: np.ndarray, path: Path, title: str) -> None:
    """Three-panel image | map | overlay figure of a real scan, written with matplotlib."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.6))
    axes[0].imshow(image, cmap="gray")
    axes[1].imshow(amap, cmap="jet", vmin=0, vmax=1)
    axes[2].imshow(image, cmap="gray")
    axes[2].imshow(amap, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    for ax, name in zip(axes, ("image", "anomaly map", "overlay"), strict=True):
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


@pytest.fixture
def fake_run_dir(tmp_path: Path) -> Path:
    """A run directory shaped like an evaluation's output, built from pydicom/nibabel's real scans."""
    import nibabel as nib
    import pandas as pd
    import pydicom
    from nibabel.testing import data_path
    from pydicom.data import get_testdata_file

    run = tmp_path / "run"
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array.astype(np.float32)
    mri = np.asarray(nib.load(Path(data_path) / "anatomical.nii").dataobj, dtype=np.float32)
    mri = mri[:, :, mri.shape[2] // 2].T
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    blob = np.exp(-((xx - 0.6) ** 2 + (yy - 0.4) ** 2) / 0.02)
    for name, img in (("ct_small", ct), ("anatomical", mri)):
        norm = (img - img.min()) / (np.ptp(img) + 1e-6)
        reps = (int(np.ceil(img.shape[0] / 64)), int(np.ceil(img.shape[1] / 64)))
        amap = np.kron(blob, np.ones(reps))[: img.shape[0], : img.shape[1]]
        _overlay_png(norm, amap, run / "overlays" / "demo" / f"{name}.png", name)

    rows = [("brain_mri", "1", 10, 71.5), ("brain_mri", "0", 10, 64.2), ("chest_ct", "1", 10, 80.1)]
    tidy = pd.DataFrame(rows, columns=["dataset", "shot", "seed", "I-AUROC"])
    tidy.to_csv(run / "summary.csv", index=False)
    pd.DataFrame({"dataset": ["chest_ct", "brain_mri"], "path": ["ct_small.dcm", "anatomical.nii"], "label": [1, 0],
                  "score": [0.8, 0.3]}).to_csv(
        run / "per_image.csv", index=False)
    (run / "tables").mkdir()
    wide = tidy.pivot_table(index="dataset", columns="shot", values="I-AUROC").reset_index()
    (run / "tables" / "image_level.md").write_text(
        "Table 1: image-level AUROC (%)\n\n" + wide.to_markdown(index=False) + "\n", encoding="utf-8"
    )
    (run / "figures").mkdir()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 0.2, 0.5, 1], [0, 0.6, 0.85, 1], label="ROC")
    ax.legend()
    fig.savefig(run / "figures" / "roc.png", dpi=80)
    plt.close(fig)
    pd.DataFrame([
        {"file": "overlays/demo/ct_small.png", "dataset": "chest_ct", "class": "ct", "shots": 1, "seed": 10,
         "image_id": 0, "path": "PAT-12345/ct_small.dcm", "label": 1, "score": 0.31, "gallery": "top;miss",
         "image_threshold": 0.5},
        {"file": "overlays/demo/anatomical.png", "dataset": "brain_mri", "class": "brain", "shots": 1, "seed": 10,
         "image_id": 1, "path": "PAT-67890/anatomical.nii#45", "label": 0, "score": 0.62,
         "gallery": "top;false_alarm", "image_threshold": 0.5},
    ]).to_csv(run / "overlays" / "index.csv", index=False)
    pd.DataFrame({"dataset": ["brain_mri"], "path": ["PAT-1/broken.dcm"], "reason": ["not a DICOM file"]}).to_csv(
        run / "skipped.csv", index=False)
    meta = {"title": "test run", "notice": "untrained backbone — pipeline demo only", "seeds": [10],
            "command_line": "/opt/venv/bin/python -m adaptclip_med.evaluate --datasets brain_mri "
                            "--root brain_mri=/pacs/PAT-12345_DOE^JOHN --out /home/dr_who/runs/x",
            "config": {"roots": [["brain_mri", "/pacs/PAT-12345_DOE^JOHN"]], "out": "/home/dr_who/runs/x",
                       "shots": [1], "backbone": "adaptclip-tiny"},
            "fingerprints": {"brain_mri": "0123456789abcdef"},
            "versions": {"numpy": np.__version__}}
    (run / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    return run
