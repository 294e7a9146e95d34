"""``score --anonymize``: no identifier in any output byte; bad input: one-line errors and listed skips."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pydicom
import pytest

from adaptclip_med.runtime.privacy import read_key_file
from adaptclip_med.score import main

from .conftest import PATIENT_FOLDER, TINY
from .dicom_series import ACCESSION, INSTITUTION, PATIENT_ID, PATIENT_NAME


def test_anonymize_leaves_no_identifier_in_any_output(score_inputs: dict[str, Path], tmp_path: Path) -> None:
    out, key = tmp_path / "shared_run", tmp_path / "private" / "key.json"
    inputs = [str(score_inputs["root"] / PATIENT_FOLDER), str(score_inputs["png"]), str(score_inputs["nifti"])]
    assert main([*inputs, "--out", str(out), "--threshold", "0.5", "--anonymize", "--key-file", str(key), *TINY]) == 0
    forbidden = [PATIENT_NAME, PATIENT_NAME.replace("^", " "), PATIENT_ID, ACCESSION, INSTITUTION, "19700101",
                 "HOUSE^GREGORY", PATIENT_FOLDER, "DOE_JANE", "CT_chest", "brain_", "head.nii", "photos", "notes.txt",
                 str(tmp_path), str(score_inputs["root"])]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        data = path.read_bytes()
        rel = str(path.relative_to(out))
        for word in forbidden:
            assert word.encode() not in data and word not in rel, (rel, word)
    table = pd.read_csv(out / "scores.csv")
    assert table["id"].str.startswith("img-").all()
    [pm] = out.glob("dicom/*/parametric_map.dcm")
    ds = pydicom.dcmread(pm)
    assert str(ds.PatientID).startswith("pt-") and ds.PatientIdentityRemoved == "YES"
    rows = read_key_file(key)
    assert rows[ds.PatientID] == PATIENT_ID  # one pseudonym per patient; the key links it back
    assert set(table.loc[table["level"] == "image", "id"]) <= set(rows)
    series = table.loc[table["level"] == "series", "id"]
    assert len(series) == 1 and rows[series.iloc[0]].endswith("CT_chest/series-3")


def test_key_file_inside_the_run_folder_is_refused(score_inputs: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    key = str(out / "key.json")
    code = main([str(score_inputs["png"]), "--out", str(out), "--anonymize", "--key-file", key, *TINY])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --key-file") and "outside" in err and len(err.splitlines()) == 1


def test_bad_files_are_listed_and_nothing_to_score_is_one_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.dcm").write_bytes(b"")
    (bad / "truncated.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    (bad / "scan.nii.gz").write_bytes(b"not gzip")
    code = main([str(bad), "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: nothing to score") and len(err.splitlines()) == 1
    skipped = pd.read_csv(tmp_path / "run" / "skipped.csv").set_index("id")["reason"]
    assert set(skipped.index) == {"bad/empty.dcm", "bad/truncated.dcm", "bad/scan.nii.gz"}
    assert "empty" in skipped["bad/empty.dcm"]
    assert not skipped.str.contains(str(tmp_path)).any()  # reasons name no absolute path


def test_random_backbone_needs_the_flag(score_inputs: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(score_inputs["png"]), "--out", str(tmp_path / "run"), *TINY[:-1]])
    err = capsys.readouterr().err
    assert code == 2 and "--allow-random-backbone" in err and len(err.splitlines()) == 1


def test_package_main_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from adaptclip_med.__main__ import main as package_main
    from adaptclip_med.score import build_parser

    assert package_main([]) == 0
    listing = capsys.readouterr().out
    for name in ("evaluate", "score", "train", "datasets", "demo"):
        assert f"  {name} " in listing
    assert package_main(["nonsense"]) == 2 and "unknown command" in capsys.readouterr().err
    options = build_parser().format_help()  # the model options are evaluate's own
    assert all(flag in options for flag in ("--normals", "--backbone", "--allow-random-backbone", "--anonymize"))


def test_a_non_image_multiframe_object_is_one_skip_row(tmp_path: Path) -> None:
    """pydicom's RT Dose (15 frames) is listed once, under its file, with the reason and no path prefix."""
    from pydicom.data import get_testdata_file

    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "dose.dcm").write_bytes(Path(get_testdata_file("rtdose.dcm")).read_bytes())
    pydicom.dcmread(get_testdata_file("CT_small.dcm")).save_as(folder / "ct.dcm")
    out = tmp_path / "run"
    assert main([str(folder), "--out", str(out), "--threshold", "0.5", "--overlays", "none", *TINY]) == 0
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["id"].tolist() == ["study/dose.dcm"]
    assert skipped["reason"].iloc[0].startswith("DICOM RT Dose Storage object, not an image")
