"""``score --anonymize`` DICOM objects by PS3.15 Annex E; a plain run keeps the source's modules and UIDs.

The sources are real pydicom CT series of one patient (two series of one study, one more study whose
images declare burned-in annotation) carrying, besides the usual identifiers, descriptions, age, sex,
OtherPatientIDsSequence, equipment and staff names, and a private attribute.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from adaptclip_med.runtime.deid import forbidden_values
from adaptclip_med.runtime.privacy import Pseudonymiser, can_identify, read_key_file
from adaptclip_med.score import main

from .conftest import TINY
from .dicom_series import PATIENT_ID, ct_series

EXTRA = {"StudyDescription": "CHEST WITH CONTRAST DR SMITH", "SeriesDescription": "AX 2.5 LUNG KERNEL",
         "PatientAge": "054Y", "OperatorsName": "WATSON^JOAN", "StationName": "CTSCAN-EAST-7",
         "DeviceSerialNumber": "SN77231", "InstitutionalDepartmentName": "Radiology North Wing",
         "ProtocolName": "Trauma protocol Smith", "PerformingPhysicianName": "CUDDY^LISA",
         "AdditionalPatientHistory": "fell from a ladder at home"}


def _enrich(files: list[Path], study: str | None = None, burned: str | None = None) -> None:
    for path in files:
        ds = pydicom.dcmread(path)
        for keyword, value in EXTRA.items():
            setattr(ds, keyword, value)
        other = Dataset()
        other.PatientID, other.IssuerOfPatientID = "MRN-OTHER-4471", "County General"
        ds.OtherPatientIDsSequence = [other]
        ds.add_new(0x00091010, "LO", "private note PID20931")
        if study is not None:
            ds.StudyInstanceUID = study
        if burned is not None:
            ds.BurnedInAnnotation = burned
        ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def patient_studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``root/P/{CT_a,CT_b}``: two series of one study; ``root/P/CT_c``: a study with burned-in text."""
    root = tmp_path_factory.mktemp("deid") / "archive"
    a = ct_series(root / "P" / "CT_a", n_slices=2, file_prefix="DOE_JANE_a")
    study = str(pydicom.dcmread(a[0]).StudyInstanceUID)
    b = ct_series(root / "P" / "CT_b", n_slices=2, seed=1, file_prefix="DOE_JANE_b")
    burned = ct_series(root / "P" / "CT_c", n_slices=2, seed=2, file_prefix="DOE_JANE_c")
    _enrich(a)
    _enrich(b, study=study)
    _enrich(burned, burned="YES")
    return {"root": root, "files": [*a, *b, *burned], "study": study}


def _run(inputs: list[str], out: Path, *extra: str) -> None:
    assert main([*inputs, "--out", str(out), "--threshold", "0.5", "--overlays", "none", *extra, *TINY]) == 0


def _objects(out: Path) -> list[tuple[Path, pydicom.Dataset]]:
    return [(p, pydicom.dcmread(p)) for p in sorted(out.rglob("*.dcm"))]


def test_anonymize_follows_annex_e_and_dciodvfy_passes(patient_studies: dict[str, object], tmp_path: Path,
                                                       dciodvfy: str) -> None:
    out, key = tmp_path / "run", tmp_path / "private" / "key.json"
    sources = [pydicom.dcmread(f) for f in patient_studies["files"]]  # type: ignore[union-attr]
    _run([str(patient_studies["root"])], out, "--anonymize", "--key-file", str(key))
    # every value that the profile removes or replaces, taken from the source files, in no output byte
    forbidden = {v: k for ds in sources for v, k in forbidden_values(ds).items() if can_identify(v)}
    for word in ("PID20931", "MRN-OTHER-4471", "CHEST WITH CONTRAST", "054Y", "SN77231", "20240101", "120000",
                 str(patient_studies["study"])):
        assert any(word in v for v in forbidden), word  # the list covers what the sources carry
    files = [p for p in out.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for value, keyword in forbidden.items():
            assert value.encode() not in data and value not in str(path.relative_to(out)), (path.name, keyword)
    objects = _objects(out)
    assert {p.name for p, _ in objects} >= {"parametric_map.dcm", "segmentation.dcm", "sc_0001.dcm"}
    for path, _ in objects:  # valid objects: type 1 attributes keep (dummy) values, type 2 ones are present
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (path.relative_to(out), errors)

    rows = read_key_file(key)
    pseud = Pseudonymiser.from_key_file(key)
    for _, ds in objects:
        assert ds.PatientIdentityRemoved == "YES" and rows[ds.PatientID] == PATIENT_ID == rows[str(ds.PatientName)]
        codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113107", "113105"]
        for gone in ("StudyDescription", "PatientAge", "OtherPatientIDsSequence", "OperatorsName"):
            assert gone not in ds, gone
        assert not [e for e in ds if e.tag.is_private]
        assert "AdaptCLIP" in str(ds.SeriesDescription)  # our own words are kept
    assert len({ds.PatientID for _, ds in objects}) == 1  # one pseudonym per patient, not per series
    # keyed UIDs: the two series of one study share the new Study UID, derivable from the key file
    by_study: dict[str, set[str]] = {}
    for _, ds in objects:
        by_study.setdefault(rows[ds.StudyInstanceUID], set()).add(str(ds.SeriesDescription))
        assert ds.StudyInstanceUID == pseud.uid(rows[ds.StudyInstanceUID])
    assert len(by_study[str(patient_studies["study"])]) == 3 and len(by_study) == 2  # PM, SEG, SC of CT_a + CT_b
    pms = [ds for p, ds in objects if p.name == "parametric_map.dcm"]
    source_uids = {str(ds.SOPInstanceUID) for ds in sources}
    for pm in pms:
        refs = [item.SourceImageSequence[0].ReferencedSOPInstanceUID
                for frame in pm.PerFrameFunctionalGroupsSequence for item in frame.DerivationImageSequence]
        assert refs and all(rows[r] in source_uids for r in refs)  # each frame re-links to its source image
        assert pm.StudyDate != "20240101" and len(pm.StudyDate) == 8  # shifted, the same for both studies
    assert len({pm.StudyDate for pm in pms}) == 1
    # burned-in annotation declared by the source: no Secondary Capture of it (pixels are not cleaned)
    notes = json.loads((out / "run.json").read_text())["dicom_notes"]
    assert any("burned-in annotation" in n for ns in notes.values() for n in ns)
    assert len([p for p, _ in objects if p.name.startswith("sc_")]) == 4

    again = tmp_path / "again"  # the same key: the same new UIDs and pseudonyms
    _run([str(patient_studies["root"] / "P" / "CT_b")], again, "--anonymize", "--key-file", str(key))
    [pm_b] = [ds for p, ds in _objects(again) if p.name == "parametric_map.dcm"]
    assert pm_b.StudyInstanceUID in {pm.StudyInstanceUID for pm in pms} and pm_b.PatientID == pms[0].PatientID


def test_plain_run_keeps_the_source_patient_study_and_uids(patient_studies: dict[str, object],
                                                            tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run([str(patient_studies["root"] / "P")], out)
    sources = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, patient_studies["files"])}  # type: ignore[arg-type]
    study_uids = {str(ds.StudyInstanceUID) for ds in sources.values()}
    objects = _objects(out)
    for path, ds in objects:
        assert ds.PatientID == PATIENT_ID and str(ds.PatientName) == "DOE^JANE" and ds.PatientBirthDate == "19700101"
        assert ds.StudyInstanceUID in study_uids and ds.StudyDate == "20240101"
        assert "PatientIdentityRemoved" not in ds, path
    for path, ds in objects:
        if path.name.startswith("sc_"):  # the overlay declares what its source's pixels carry
            src = next(s for s in sources.values() if s.StudyInstanceUID == ds.StudyInstanceUID)
            assert ds.get("BurnedInAnnotation") == src.get("BurnedInAnnotation"), path
    assert any(ds.get("BurnedInAnnotation") == "YES" for p, ds in objects if p.name.startswith("sc_"))


def test_pydicom_test_files_pass_the_audit_and_dciodvfy(tmp_path: Path, dciodvfy: str) -> None:
    """MR_small (placeholders ``----`` / ``000000000``, InstitutionName inside the kept Manufacturer), CT_small."""
    import shutil

    from pydicom.data import get_testdata_file

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("MR_small.dcm", "CT_small.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    out = tmp_path / "run"
    _run([str(folder)], out, "--anonymize", "--key-file", str(tmp_path / "key.json"))
    objects = _objects(out)
    assert len(objects) == 6
    for path, ds in objects:
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        assert "Error" not in report.stdout + report.stderr, path.relative_to(out)
        assert "CompressedSamples" not in str(ds.PatientName) and ds.PatientIdentityRemoved == "YES"
