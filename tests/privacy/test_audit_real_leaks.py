"""The ``--anonymize`` audit fails on real leaks, not on placeholders; skip reasons carry no file name.

pydicom's ``MR_small.dcm`` has NameOfPhysiciansReadingStudy ``----`` and StationName ``000000000``: values
that cannot identify anyone, found in every Markdown table rule. An unreadable input named after a
patient (``ROE_JANE_trunc.png``) is skipped, and its reason must not repeat its name.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pydicom
from pydicom.data import get_testdata_file

from adaptclip_med.runtime.audit import collect_identifiers, find_identifiers

from .test_anonymize_run import TINY, _evaluate


def _placeholder_archive(source: Path, dest: Path) -> Path:
    """A copy of the PACS export whose DICOM files also carry MR_small's placeholder values, plus an
    unreadable PNG named after a patient."""
    shutil.copytree(source, dest)
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for path in dest.rglob("*.dcm"):
        if path.stat().st_size == 0:
            continue
        ds = pydicom.dcmread(path)
        ds.NameOfPhysiciansReadingStudy = mr.NameOfPhysiciansReadingStudy  # "----"
        ds.StationName = mr.StationName  # "000000000"
        ds.save_as(path)
    (dest / "normal" / "ROE_JANE_trunc.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR truncated")
    return dest


def test_placeholders_and_a_patient_named_unreadable_file_do_not_fail_the_run(identified_folder_set: Path,
                                                                               tmp_path: Path) -> None:
    root = _placeholder_archive(identified_folder_set, tmp_path / "archive")
    assert str(pydicom.dcmread(next((root / "normal").rglob("ACC*_0.dcm"))).NameOfPhysiciansReadingStudy) == "----"
    out, key = tmp_path / "run", tmp_path / "private" / "key.json"
    code, _, stderr = _evaluate(["--datasets", "ct=folder", "--root", f"ct={root}", *TINY, "--anonymize",
                                 "--key-file", str(key), "--out", str(out)])
    assert code == 0, stderr
    assert any("----" in p.read_text(encoding="utf-8") for p in (out / "tables").glob("*.md"))  # table rules
    skipped = pd.read_csv(out / "skipped.csv")
    assert len(skipped) == 2 and skipped["path"].str.startswith("img-").all()
    assert not skipped["reason"].str.contains("ROE|JANE|EMPTY").any(), skipped["reason"].tolist()
    inputs = [str(p) for p in root.rglob("*") if p.is_file() or (p.is_dir() and p.parent.name == "normal")]
    forbidden = collect_identifiers(inputs, {"ct": root}, allowed=["ct", "archive"])
    assert "ROE_JANE_trunc.png" in forbidden and "DOE0^JOHN0" in forbidden
    assert "----" not in forbidden and "000000000" not in forbidden
    assert find_identifiers(out, forbidden) == []  # and the real identifiers are still audited
