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
