"""DICOM files that carry patient identifiers in their tags and in their folder and file names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from adaptclip_med.data.writers import write_dicom

#: What the identifying files carry; none of it may reach an anonymised output.
IDENTITY = {
    "PatientName": "DOE^JOHN", "PatientID": "PAT-12345", "PatientBirthDate": "19470312",
    "AccessionNumber": "ACC998877", "InstitutionName": "St Elsewhere General",
    "ReferringPhysicianName": "HOUSE^GREGORY",
}


def write_identified_dicom(path: Path, pixels: np.ndarray, identity: dict[str, str] | None = None) -> Path:
    """A real DICOM file (pydicom) with the identifier tags of ``identity`` filled in."""
    write_dicom(path, pixels)
    ds = pydicom.dcmread(path)
    for keyword, value in (identity or IDENTITY).items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


@pytest.fixture
def identified_archive(tmp_path: Path) -> Path:
    """``archive/PAT-12345_DOE^JOHN/ACC998877.dcm`` (+ a second study), foldered as PACS exports are."""
    rng = np.random.default_rng(0)
    root = tmp_path / "archive"
    write_identified_dicom(root / "PAT-12345_DOE^JOHN" / "ACC998877.dcm",
                           rng.integers(0, 4000, (64, 64)).astype(np.uint16))
    write_identified_dicom(root / "PAT-67890_ROE^JANE" / "ACC112233.dcm",
                           rng.integers(0, 4000, (64, 64)).astype(np.uint16),
                           {**IDENTITY, "PatientName": "ROE^JANE", "PatientID": "PAT-67890",
                            "AccessionNumber": "ACC112233"})
    return root


def _person(i: int) -> dict[str, str]:
    return {**IDENTITY, "PatientName": f"DOE{i}^JOHN{i}", "PatientID": f"PAT-1234{i}",
            "AccessionNumber": f"ACC99887{i}"}


@pytest.fixture(scope="session")
def identified_folder_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``folder`` data set exported from a PACS: identifiers in tags, folder names and file names.

    ``normal/``: 3 series folders ``PAT-1234i_DOEi^JOHNi/ACC99887i_<n>.dcm`` (2 slices each) and 3 single
    files ``PAT-1234i_DOEi^JOHNi_ACC99887i.dcm``, plus an empty file (skipped, listed in skipped.csv);
    ``abnormal/``: 3 files with a bright lesion and their masks ``masks/<same stem>.png``.
    """
    from PIL import Image

    root = tmp_path_factory.mktemp("pacs") / "archive"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(3):
        person = _person(i)
        folder = root / "normal" / f"PAT-1234{i}_DOE{i}^JOHN{i}"
        for n in range(2):
            write_identified_dicom(folder / f"ACC99887{i}_{n}.dcm", rng.integers(800, 1200, (64, 64)).astype(np.uint16),
                                   person)
    for i in range(3, 6):
        write_identified_dicom(root / "normal" / f"PAT-1234{i}_DOE{i}^JOHN{i}_ACC99887{i}.dcm",
                               rng.integers(800, 1200, (64, 64)).astype(np.uint16), _person(i))
    (root / "normal" / "PAT-55555_EMPTY^CASE.dcm").write_bytes(b"")
    for i in range(6, 9):
        lesion = ((yy - 20 - 3 * i) ** 2 + (xx - 30) ** 2) < 64
        pixels = rng.integers(800, 1200, (64, 64)).astype(np.uint16) + lesion.astype(np.uint16) * 2000
        stem = f"PAT-1234{i}_DOE{i}^JOHN{i}_ACC99887{i}"
        write_identified_dicom(root / "abnormal" / f"{stem}.dcm", pixels, _person(i))
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(lesion.astype(np.uint8) * 255).save(root / "masks" / f"{stem}.png")
    return root
