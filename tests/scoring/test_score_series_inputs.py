"""DICOM series as users give them: files one by one, folders, both; gaps, duplicate slices, localisers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid

from adaptclip_med.score import main
from adaptclip_med.scoring.inputs import discover

from .conftest import TINY
from .dicom_series import ct_series


def _localizer(source: Path, target: Path) -> Path:
    """A sagittal scout (ImageType LOCALIZER) of the same series as ``source``."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    ds.InstanceNumber = 99
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.fixture
def messy_series(tmp_path: Path) -> Path:
    """6 CT slices 2.5 mm apart with slice 2 missing, slice 4 stored twice and a sagittal scout mixed in."""
    folder = tmp_path / "ct5"
    paths = ct_series(folder, n_slices=6)
    paths[2].unlink()  # the gap: 5.0 mm between the slices at 12.5 and 17.5 mm
    shutil.copy(paths[4], folder / "slice04_copy.dcm")  # the same slice stored twice
    _localizer(paths[0], folder / "scout.dcm")
    return folder


def test_files_given_one_by_one_are_one_series(tmp_path: Path) -> None:
    folder = tmp_path / "ct5"
    paths = ct_series(folder, n_slices=5)
    for inputs in ([*paths], [folder], [paths[0], folder], [*paths[:2], tmp_path / "ct5"]):
        studies, problems = discover(inputs)
        assert problems == []
        assert [(s.kind, s.name, len(s.units)) for s in studies] == [("series", "ct5/series-3", 5)], inputs
        assert [s.notes for s in studies] == [[]]


def test_gap_duplicate_and_localizer_are_named_and_the_series_is_exported(messy_series: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    studies, problems = discover(sorted(messy_series.glob("*.dcm")))  # ct5/*.dcm
    [study] = studies
    assert study.kind == "series" and len(study.units) == 5
    reasons = dict(problems)
    assert "exact duplicate" in reasons.pop("slice04_copy.dcm")
    assert "localizer (ImageType LOCALIZER)" in reasons.pop("scout.dcm")
    assert reasons == {}
    assert study.notes[0].startswith("1 duplicate slice file(s) dropped")
    assert "gap of 5.00 mm between slices 1 and 2 (at 12.50 and 17.50 mm)" in study.notes[1]

    out = tmp_path / "run"
    assert main([str(messy_series), "--out", str(out), "--threshold", "0.5", "--overlays", "none", *TINY]) == 0
    err = capsys.readouterr().err
    assert "warning: ct5/series-3: gap of 5.00 mm" in err
    assert "ValueError" not in err
    table = pd.read_csv(out / "scores.csv")
    assert table["level"].tolist().count("slice") == 5
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(skipped["id"]) == ["ct5/scout.dcm", "ct5/slice04_copy.dcm"]
    run = json.loads((out / "run.json").read_text())
    assert any("gap of 5.00 mm" in n for n in run["warnings"]["ct5/series-3"])
    assert "ct5/series-3" not in run["dicom_notes"]  # the export did not fail
    [pm_path] = out.glob("dicom/*/parametric_map.dcm")
    assert int(pydicom.dcmread(pm_path).NumberOfFrames) == 5


def test_other_orientation_without_localizer_tag_is_set_apart(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    paths = ct_series(folder, n_slices=4)
    scout = _localizer(paths[0], folder / "reformat.dcm")
    ds = pydicom.dcmread(scout)
    ds.ImageType = ["DERIVED", "SECONDARY", "REFORMATTED"]
    ds.save_as(scout, enforce_file_format=True)
    studies, problems = discover([folder])
    assert [len(s.units) for s in studies] == [4]
    assert [(n, why.split(";")[0]) for n, why in problems] == [
        ("ct/reformat.dcm", "sagittal slice inside a series of 4 axial slice(s)")]


def test_nan_background_and_long_thin_images_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A skull-stripped NIfTI (NaN around the head) is scored, its all-NaN slice named; a 4000x8 image is
    refused, a 4.7:1 image warned of."""
    import nibabel as nib
    import numpy as np
    from PIL import Image

    inputs = tmp_path / "in"
    inputs.mkdir()
    yy, xx = np.mgrid[0:32, 0:32]
    head = (yy - 16) ** 2 + (xx - 16) ** 2 < 12**2
    vol = np.where(head[..., None], 100.0 + xx[..., None] + 3 * np.arange(3), np.nan).astype(np.float32)
    vol[..., 2] = np.nan  # above the head
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(inputs / "stripped.nii.gz"))
    Image.fromarray(np.full((8, 4000), 128, np.uint8)).save(inputs / "strip.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 300), dtype=np.uint8)).save(inputs / "wide.png")
    out = tmp_path / "run"
    assert main([str(inputs), "--out", str(out), "--threshold", "0.5", "--overlays", "none", *TINY]) == 0
    err = capsys.readouterr().err
    skipped = dict(pd.read_csv(out / "skipped.csv").itertuples(index=False))
    assert "aspect ratio 500:1 (above 8:1)" in skipped.pop("in/strip.png")
    assert "the slice is entirely NaN" in skipped.pop("in/stripped.nii.gz#2")
    assert skipped == {}
    table = pd.read_csv(out / "scores.csv")
    assert sorted(table.loc[table["level"] == "slice", "slice"]) == [0, 1]
    assert "in/wide.png" in set(table["id"])
    warnings = json.loads((out / "run.json").read_text())["warnings"]
    assert "aspect ratio 4.7:1 (above 3:1)" in warnings["in/wide.png"][0]
    assert "NaN outside the anatomy is treated as background" in warnings["in/stripped.nii.gz"][0]
    assert "warning: in/wide.png: image is 64x300 pixels" in err
