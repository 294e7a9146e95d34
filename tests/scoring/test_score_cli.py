"""``python -m adaptclip_med.score`` end to end on the tiny backbone: a DICOM series, a NIfTI volume, a PNG folder."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from PIL import Image

from adaptclip_med.data import build_transforms
from adaptclip_med.reporting.overlays import resize_map
from adaptclip_med.score import main

from .conftest import TINY
from .dicom_series import PATIENT_ID

NOTICE = "untrained backbone — pipeline demo only"


@pytest.fixture(scope="module")
def scored(score_inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run over all three kinds of input, few-shot with two normals (calibrated threshold)."""
    out = tmp_path_factory.mktemp("scored") / "run"
    args = [str(score_inputs[k]) for k in ("ct", "png", "nifti")]
    assert main([*args, "--out", str(out), "--normals", str(score_inputs["normals"]), *TINY]) == 0
    return out


def _our_maps(model, paths_and_slices, normals: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(B,)`` and maps ``(B, S, S)`` computed here, through the evaluation pixel path."""
    t = build_transforms(model.image_size, with_mask=False)
    x = torch.stack([torch.as_tensor(t({"image": str(p), "slice_index": k})["image"]) for p, k in paths_and_slices])
    bank = None
    if normals is not None:
        prompts = torch.stack([torch.as_tensor(t({"image": str(p)})["image"]) for p in sorted(normals.glob("*.png"))])
        bank = model.fit_prompts(prompts)
    out = model.predict(x, prompts=bank)
    return out.pred_score.numpy(), out.anomaly_map.numpy()


def test_scores_csv_has_image_slice_and_volume_rows(scored: Path) -> None:
    table = pd.read_csv(scored / "scores.csv")
    by_level = table.groupby("level").size().to_dict()
    assert by_level == {"image": 2, "slice": 4 + 6, "series": 1, "volume": 1}, by_level
    assert (table["notice"] == NOTICE).all()
    for level, prefix in (("series", "CT_chest/series-3"), ("volume", "head.nii.gz")):
        vol = table[table["level"] == level].iloc[0]
        slices = table[(table["level"] == "slice") & table["id"].str.startswith(prefix + "#")]
        assert vol["id"] == prefix and vol["score"] == slices["score"].max()
        assert vol["topk_mean"] == pytest.approx(np.sort(slices["score"].to_numpy())[-3:].mean())
        assert vol["peak_slice"] == slices.loc[slices["score"].idxmax(), "slice"]
    assert set(table.loc[table["level"] == "image", "id"]) == {"photos/brain_0.png", "photos/sub/brain_1.png"}
    skipped = pd.read_csv(scored / "skipped.csv").set_index("id")["reason"]
    assert set(skipped.index) == {"photos/notes.txt", "photos/broken.png"}
    assert skipped["photos/notes.txt"] == "unsupported file type '.txt'; expected PNG/JPEG/TIFF/DICOM/NIfTI"
    assert "PNG file is truncated or corrupt" in skipped["photos/broken.png"]


def test_threshold_calibrated_on_normals_and_applied(scored: Path) -> None:
    import json

    run = json.loads((scored / "run.json").read_text())
    thr = run["threshold"]
    assert "leave-one-out over 2 normal images" in thr["source"] and run["notice"] == NOTICE
    table = pd.read_csv(scored / "scores.csv")
    np.testing.assert_array_equal(table["above_threshold"], table["score"] >= thr["image_threshold"])
    manifest = json.loads((scored / "prompts.json").read_text())
    assert [m["image"] for m in manifest["normals"]] == ["normals/normal_0.png", "normals/normal_1.png"]


def test_scores_equal_the_evaluation_path(scored: Path, score_inputs: dict[str, Path], tiny_model) -> None:
    table = pd.read_csv(scored / "scores.csv").set_index("id")
    pngs = [score_inputs["png"] / "brain_0.png", score_inputs["png"] / "sub" / "brain_1.png"]
    scores, _ = _our_maps(tiny_model, [(p, None) for p in pngs], score_inputs["normals"])
    np.testing.assert_allclose(table.loc[["photos/brain_0.png", "photos/sub/brain_1.png"], "score"], scores,
                               rtol=1e-5)


def test_overlays_have_hashed_names_and_one_per_image_and_peak(scored: Path) -> None:
    table = pd.read_csv(scored / "scores.csv")
    files = sorted(p.name for p in (scored / "overlays").glob("*.png"))
    assert len(files) == 2 + 2  # two images, the peak slice of the series and of the volume
    assert sorted(Path(f).name for f in table["overlay"].dropna()) == files
    assert not any("brain" in f or "DOE" in f or "head" in f for f in files)


def test_nifti_map_on_the_source_grid(scored: Path, score_inputs: dict[str, Path], tiny_model) -> None:
    [path] = (scored / "volumes").glob("*.nii.gz")
    src, ours = nib.load(str(score_inputs["nifti"])), nib.load(str(path))
    assert ours.shape == src.shape and np.allclose(ours.affine, src.affine)
    canon = nib.as_closest_canonical(ours)
    data = np.asarray(canon.dataobj)
    _, maps = _our_maps(tiny_model, [(score_inputs["nifti"], k) for k in (0, 5)], score_inputs["normals"])
    for k, amap in zip((0, 5), maps, strict=True):
        shown = np.rot90(data[:, :, k])
        np.testing.assert_allclose(shown, resize_map(amap, shown.shape), atol=1e-5)


def _sorted_sources(folder: Path) -> list[pydicom.Dataset]:
    sources = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
    return sorted(sources, key=lambda ds: float(ds.ImagePositionPatient[2]))


def test_dicom_parametric_map_matches_our_maps_on_source_geometry(scored: Path, score_inputs: dict[str, Path],
                                                                  tiny_model) -> None:
    [pm_path] = scored.glob("dicom/*/parametric_map.dcm")
    pm = pydicom.dcmread(pm_path)
    sources = _sorted_sources(score_inputs["ct"])
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map Storage
    assert pm.StudyInstanceUID == sources[0].StudyInstanceUID and pm.SeriesInstanceUID != sources[0].SeriesInstanceUID
    assert pm.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and int(pm.NumberOfFrames) == 4
    assert pm.PatientID == PATIENT_ID and "UNTRAINED" in pm.SeriesDescription
    _, maps = _our_maps(tiny_model, [(p, None) for p in sorted(score_inputs["ct"].glob("*.dcm"))],
                        score_inputs["normals"])
    ours_by_uid = {pydicom.dcmread(p).SOPInstanceUID: m
                   for p, m in zip(sorted(score_inputs["ct"].glob("*.dcm")), maps, strict=True)}
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    pixels = pm.pixel_array
    for i, frame in enumerate(pm.PerFrameFunctionalGroupsSequence):
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        src = by_uid[ref]
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert position == pytest.approx([float(v) for v in src.ImagePositionPatient])
        np.testing.assert_allclose(pixels[i], resize_map(ours_by_uid[ref], (src.Rows, src.Columns)), atol=1e-5)
    shared = pm.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [0.8, 0.8]
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]


def test_dicom_segmentation_is_the_map_at_the_pixel_threshold(scored: Path) -> None:
    import json

    [seg_path] = scored.glob("dicom/*/segmentation.dcm")
    [pm_path] = scored.glob("dicom/*/parametric_map.dcm")
    seg, pm = hd.seg.segread(seg_path), pydicom.dcmread(pm_path)
    thr = json.loads((scored / "run.json").read_text())["threshold"]["pixel_threshold"]
    uids = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in pm.PerFrameFunctionalGroupsSequence]
    mask = seg.get_pixels_by_source_instance(uids, segment_numbers=[1])
    np.testing.assert_array_equal(mask[..., 0] > 0, pm.pixel_array > thr)  # the one rule: equal is normal
    assert seg.SegmentSequence[0].SegmentLabel.startswith("anomaly score > ")


def test_dicom_secondary_captures_are_rgb_overlays_in_the_study(scored: Path, score_inputs: dict[str, Path]) -> None:
    files = sorted(scored.glob("dicom/*/overlay/sc_*.dcm"))
    sources = _sorted_sources(score_inputs["ct"])
    assert len(files) == 4
    for path, src in zip(files, sources, strict=True):
        sc = pydicom.dcmread(path)
        assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.PhotometricInterpretation == "RGB"
        rows, columns, samples = sc.pixel_array.shape  # the overlay at [:32, :32]; scale right, UNTRAINED below
        assert samples == 3 and rows > 32 and columns > 32
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert "BurnedInAnnotation" not in sc  # the source does not say: no claim (it would be the source's)
        assert sc.StudyInstanceUID == src.StudyInstanceUID and sc.PatientName == src.PatientName


def test_dicom_outputs_pass_dciodvfy(scored: Path, dciodvfy: str) -> None:
    files = sorted(scored.glob("dicom/**/*.dcm"))
    assert len(files) == 6
    for path in files:
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        errors = [ln for ln in (report.stdout + report.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, (path.name, errors)


def test_rerun_reuses_and_a_changed_file_is_rescored(score_inputs: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    folder = tmp_path / "pngs"
    shutil.copytree(score_inputs["png"], folder)
    out = tmp_path / "run"
    assert main([str(folder), "--out", str(out), "--threshold", "0.5", "--overlays", "none", *TINY]) == 0
    first = pd.read_csv(out / "scores.csv")
    assert main([str(folder), "--out", str(out), "--threshold", "0.5", "--overlays", "none", *TINY]) == 0
    assert "0 image(s) scored, 2 reused" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv"), first)
    img = np.asarray(Image.open(folder / "brain_0.png")).copy()
    img[:8, :8] = 255
    Image.fromarray(img).save(folder / "brain_0.png")
    assert main([str(folder), "--out", str(out), "--threshold", "0.5", "--overlays", "none", *TINY]) == 0
    assert "1 image(s) scored, 1 reused" in capsys.readouterr().out
    other_size = [*TINY[:-3], "--image-size", "252", "--allow-random-backbone"]  # nothing reused
    assert main([str(folder), "--out", str(out), "--threshold", "0.5", "--overlays", "none", *other_size]) == 2
    assert "settings (image_size 224 -> 252); pass --replace" in capsys.readouterr().err  # other settings
    assert main([str(folder), "--out", str(out), "--threshold", "0.5", "--overlays", "none", *other_size,
                 "--replace"]) == 0
    assert "2 image(s) scored, 0 reused" in capsys.readouterr().out


def test_multiframe_without_geometry_gets_frame_rows_and_secondary_captures_only(tmp_path: Path,
                                                                                dciodvfy: str) -> None:
    import json

    from .dicom_series import multiframe_without_geometry

    multiframe_without_geometry(tmp_path / "cine" / "loop.dcm", n_frames=3)
    out = tmp_path / "run"
    assert main([str(tmp_path / "cine"), "--out", str(out), "--threshold", "0.5", *TINY]) == 0
    table = pd.read_csv(out / "scores.csv")
    assert table["level"].tolist() == ["frame"] * 3 + ["multiframe"]
    assert table["id"].tolist() == ["cine/loop.dcm#0", "cine/loop.dcm#1", "cine/loop.dcm#2", "cine/loop.dcm"]
    files = sorted(out.glob("dicom/**/*.dcm"))
    assert [p.name for p in files] == ["sc_0001.dcm", "sc_0002.dcm", "sc_0003.dcm"]
    notes = json.loads((out / "run.json").read_text())["dicom_notes"]["cine/loop.dcm"]
    assert notes == ["no Parametric Map / Segmentation: source has no FrameOfReferenceUID"]
    for path in files:
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        assert not [ln for ln in (report.stdout + report.stderr).splitlines() if ln.startswith("Error")]


def test_normals_are_encoded_once_for_bank_and_calibration(score_inputs: dict[str, Path], tmp_path: Path,
                                                          encode_calls: list[int]) -> None:
    out = tmp_path / "once"
    assert main([str(score_inputs["png"]), "--normals", str(score_inputs["normals"]), "--overlays", "none",
                 "--out", str(out), *TINY]) == 0
    n_images = len(pd.read_csv(out / "scores.csv"))
    assert n_images >= 2 and sum(encode_calls) == n_images + 2  # each query once, each of the 2 normals once
    assert json.loads((out / "run.json").read_text())["threshold"]["source"].startswith("calibrated by leave-one-out")
