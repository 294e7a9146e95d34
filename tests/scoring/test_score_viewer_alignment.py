"""Issue 18 items 2 and 6: ``score`` outputs line up with what the viewer shows, and show the decision.

Item 2: on a series whose InstanceNumber runs against z, each Secondary Capture references its source
image and carries its InstanceNumber; ``scores.csv`` names each slice by SeriesInstanceUID /
SOPInstanceUID / InstanceNumber (NIfTI: the voxel index along the slice axis), de-identified under
``--anonymize``; overlays of a DICOM series and of a NIfTI volume of the same anatomy are drawn in one
(radiological) convention with orientation letters. Item 6: the overlay title names the image threshold
that decided and the pixel threshold of the contour, panels are framed, Secondary Captures carry a
colour scale and an ``UNTRAINED`` mark in their pixels; every object passes dciodvfy.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from adaptclip_med.reporting import overlay_file
from adaptclip_med.runtime.privacy import read_key_file
from adaptclip_med.score import main
from adaptclip_med.scoring import run as score_run

from .conftest import TINY
from .dicom_series import ct_series

N, SIZE = 4, 32


def _anatomy(root: Path) -> dict[str, Path]:
    """A CT series (InstanceNumber 4..1 along +z) and a NIfTI volume of one anatomy: a bright block on the
    patient's right (DICOM LPS x < -6 mm; NIfTI RAS x > 6 mm), the rest soft tissue."""
    files = ct_series(root / "ct", n_slices=N, size=SIZE)
    for path in files:
        ds = pydicom.dcmread(path)
        pixels = np.full((SIZE, SIZE), 1024 + 40, dtype=np.uint16)
        pixels[4:28, 1:8] = 1024 + 1000  # columns 1..7: x = -12.4 + 0.8 c < -6: the patient's right
        ds.PixelData = pixels.tobytes()
        ds.save_as(path, enforce_file_format=True)
    volume = np.full((SIZE, SIZE, N), 40.0, dtype=np.float32)
    volume[SIZE - 8:SIZE - 1, 4:28, :] = 1000.0  # i 24..30 of an identity (RAS) affine: the patient's right
    nifti = root / "head.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.5, 1.0])), str(nifti))
    return {"ct": root / "ct", "nifti": nifti, "files": files}


def _sorted_sources(files: list[Path]) -> list[pydicom.Dataset]:
    return sorted((pydicom.dcmread(f) for f in files), key=lambda ds: float(ds.ImagePositionPatient[2]))


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every slice of both inputs scored and drawn; what ``write_overlay`` was given, per overlay."""
    root = tmp_path_factory.mktemp("align")
    inputs = _anatomy(root)
    calls: list[dict[str, Any]] = []
    real = score_run.write_overlay

    def spy(path: Path, image: np.ndarray, amap: np.ndarray, **kwargs: Any) -> Path:
        calls.append({"image": np.asarray(image), **kwargs})
        return real(path, image, amap, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(score_run, "write_overlay", spy)
    try:
        out = root / "run"
        assert main([str(inputs["ct"]), str(inputs["nifti"]), "--out", str(out), "--threshold", "0.5",
                     "--pixel-threshold", "0.3", "--overlays", "all", *TINY]) == 0
    finally:
        mp.undo()
    return {**inputs, "out": out, "calls": calls}


def test_secondary_captures_reference_their_source_and_keep_its_instance_number(drawn: dict[str, Any],
                                                                               dciodvfy: str) -> None:
    sources = _sorted_sources(drawn["files"])
    assert [int(ds.InstanceNumber) for ds in sources] == [4, 3, 2, 1]  # against z
    scs = sorted(drawn["out"].glob("dicom/*/overlay/sc_*.dcm"))
    assert len(scs) == N
    for path, src in zip(scs, sources, strict=True):
        sc = pydicom.dcmread(path)
        [ref] = sc.SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID and ref.ReferencedSOPClassUID == src.SOPClassUID
        assert sc.InstanceNumber == src.InstanceNumber  # "image 4" of the overlay series sits beside image 4
        assert list(sc.PatientOrientation) == ["L", "P"] and [float(v) for v in sc.PixelSpacing] == [0.8, 0.8]
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        assert not [ln for ln in (report.stdout + report.stderr).splitlines() if ln.startswith("Error")], path.name


def test_scores_csv_names_slices_as_the_viewer_does(drawn: dict[str, Any]) -> None:
    table = pd.read_csv(drawn["out"] / "scores.csv")
    sources = _sorted_sources(drawn["files"])
    dicom = table[table["id"].str.startswith("ct/series-3#")].sort_values("slice")
    assert dicom["InstanceNumber"].tolist() == [4, 3, 2, 1]
    assert dicom["SOPInstanceUID"].tolist() == [str(ds.SOPInstanceUID) for ds in sources]
    assert set(dicom["SeriesInstanceUID"]) == {str(sources[0].SeriesInstanceUID)}
    series = table[table["id"] == "ct/series-3"].iloc[0]  # the series row: the peak slice's
    assert series["InstanceNumber"] == N - series["peak_slice"]
    nifti = table[table["id"].str.startswith("head.nii.gz#")].sort_values("slice")
    assert nifti["voxel_index"].tolist() == list(range(N)) and set(nifti["voxel_axis"]) == {"k"}
    assert nifti["SOPInstanceUID"].isna().all()


def test_dicom_and_nifti_of_one_anatomy_are_drawn_the_same_way_round(drawn: dict[str, Any]) -> None:
    calls = drawn["calls"]
    assert len(calls) == 2 * N
    for call in calls:  # radiological: the patient's right (the bright block) on the image's left
        grey = call["image"].astype(float).mean(axis=-1) if call["image"].ndim == 3 else call["image"].astype(float)
        half = grey.shape[1] // 2
        assert grey[:, :half].mean() > grey[:, half:].mean() + 40, call["label"]
    assert [c.get("letters") for c in calls] == [("R", "L", "A", "P")] * (2 * N)
    labels = [c["label"] for c in calls]  # the name a viewer shows ends the label
    assert all(lab.endswith(f"InstanceNumber {n}") for lab, n in zip(labels[:N], (4, 3, 2, 1), strict=True)), labels
    assert all(lab.endswith(f"slice index {k} (voxel k)") for k, lab in enumerate(labels[N:])), labels


def test_overlay_title_names_both_thresholds_and_panels_are_framed(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    figures = []
    monkeypatch.setattr(overlay_file, "save_png", lambda fig, path, dpi=110: figures.append(fig) or path)
    image = np.full((32, 32), 200, dtype=np.uint8)
    amap = np.linspace(0, 0.6, 32 * 32, dtype=np.float32).reshape(32, 32)
    overlay_file.write_overlay(tmp_path / "a.png", image, amap, score=0.3, threshold=0.195, image_threshold=0.421,
                               label="InstanceNumber 4", letters=("R", "L", "A", "P"))
    overlay_file.write_overlay(tmp_path / "b.png", image, amap, score=0.5, threshold=0.195, image_threshold=0.421,
                               label="InstanceNumber 3")
    below, above = (fig._suptitle.get_text() for fig in figures)
    assert "not above the image threshold 0.421: not flagged" in below and "pixel threshold 0.195" in below
    assert "ABOVE the image threshold 0.421: flagged" in above
    panels = figures[0].axes[:3]
    for ax in panels:
        assert all(spine.get_visible() for spine in ax.spines.values())  # framed, also the input panel
        assert {t.get_text() for t in ax.texts} == {"R", "L", "A", "P"}
    legend = panels[2].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["pixel threshold 0.195"]


def test_secondary_capture_pixels_carry_a_colour_scale_and_the_untrained_mark(drawn: dict[str, Any]) -> None:
    from adaptclip_med.scoring.dicom_export import sc_pixels

    sc = pydicom.dcmread(sorted(drawn["out"].glob("dicom/*/overlay/sc_*.dcm"))[0])
    pixels = sc.pixel_array
    assert sc.Columns > SIZE and sc.Rows > SIZE  # the scale to the right, the mark below (untrained run)
    scale = pixels[:SIZE, SIZE:].astype(int)
    top, bottom = scale[0][scale[0].sum(axis=1) > 0][0], scale[SIZE - 1][scale[SIZE - 1].sum(axis=1) > 0][0]
    assert top[0] > top[2] and bottom[2] > bottom[0]  # jet: red at 1 (top), blue at 0 (bottom)
    assert pixels[SIZE:].max() > 0  # the UNTRAINED band
    assert "BurnedInAnnotation" not in sc  # the burned text is ours, not the patient's: the source makes no claim
    trained = sc_pixels(np.zeros((SIZE, SIZE), np.uint8), np.zeros((SIZE, SIZE), np.float32), untrained=False)
    assert trained.shape[0] == SIZE and np.array_equal(trained[:, :SIZE], sc_pixels(
        np.zeros((SIZE, SIZE), np.uint8), np.zeros((SIZE, SIZE), np.float32), untrained=True)[:SIZE, :SIZE])


def test_anonymized_uids_in_scores_csv_are_those_of_the_dicom_objects(drawn: dict[str, Any], tmp_path: Path,
                                                                       dciodvfy: str) -> None:
    out, key = tmp_path / "run", tmp_path / "private" / "key.json"
    assert main([str(drawn["ct"]), "--out", str(out), "--threshold", "0.5", "--overlays", "none", "--anonymize",
                 "--key-file", str(key), *TINY]) == 0
    sources = _sorted_sources(drawn["files"])
    table = pd.read_csv(out / "scores.csv")
    rows = table[table["level"] == "slice"].sort_values("slice")
    text = (out / "scores.csv").read_text()
    assert not any(str(ds.SOPInstanceUID) in text or str(ds.SeriesInstanceUID) in text for ds in sources)
    mapping = read_key_file(key)
    assert [mapping[u] for u in rows["SOPInstanceUID"]] == [str(ds.SOPInstanceUID) for ds in sources]
    scs = [pydicom.dcmread(p) for p in sorted(out.glob("dicom/*/overlay/sc_*.dcm"))]
    assert [sc.SourceImageSequence[0].ReferencedSOPInstanceUID for sc in scs] == rows["SOPInstanceUID"].tolist()
    pm = pydicom.dcmread(next(out.glob("dicom/*/parametric_map.dcm")))
    pm_refs = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
               for f in pm.PerFrameFunctionalGroupsSequence}
    assert pm_refs == set(rows["SOPInstanceUID"])
    for sc in scs:
        assert sc.InstanceNumber in (1, 2, 3, 4)
    for path in sorted(out.glob("dicom/**/*.dcm")):
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        assert not [ln for ln in (report.stdout + report.stderr).splitlines() if ln.startswith("Error")], path.name
