"""A DICOM series folder is read file by file through the single-file reader: a slice of a series and the
same file given alone give identical pixels (Modality LUT Sequence, MONOCHROME1, per-slice windows);
non-image objects in the folder are skipped and named; slices are stacked along the slice normal."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.uid import BasicTextSRStorage, SegmentationStorage, generate_uid

from adaptclip_med.data import build_transforms, load_dataset
from adaptclip_med.data.readers.dicom_pixels import read_dicom
from adaptclip_med.data.readers.dicom_series import read_series, scan_series, sort_slices
from adaptclip_med.data.readers.load import LoadMedicald
from adaptclip_med.data.writers import write_dicom
from adaptclip_med.runtime.errors import ImageReadError

#: Coronal slices: rows along +x, columns along −z, so the normal is +y (row × column).
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
#: y of each file's ImagePositionPatient, in file-name order: neither name nor InstanceNumber order.
Y_OF_FILE = [7.5, -2.5, 12.5, 2.5]


def _modality_lut_slice(modality_lut, path: Path, stored: np.ndarray, *, series_uid: str, y: float,
                        instance: int, center: float) -> Path:
    """A 12-bit XA-like MONOCHROME1 coronal slice with a Modality LUT Sequence and a window of its own."""
    write_dicom(path, stored, modality="XA", photometric="MONOCHROME1", series_uid=series_uid, instance=instance)
    return modality_lut(path, WindowCenter=center, WindowWidth=30000.0, ImageOrientationPatient=CORONAL,
                        ImagePositionPatient=[0.0, y, 0.0])


def _non_image(path: Path, sop_class: str, series_uid: str, *, pixels: bool) -> Path:
    """A Segmentation (with pixel data) or a Basic Text SR of the same series, written with pydicom."""
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, 99
    ds.Modality = "SEG" if pixels else "SR"
    if pixels:  # a one-frame binary segment, 1 bit per pixel
        ds.Rows, ds.Columns, ds.NumberOfFrames = 8, 64, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
        ds.ImageOrientationPatient, ds.ImagePositionPatient = CORONAL, [0.0, 0.0, 0.0]
        ds.PixelData = np.packbits(np.ones(8 * 64, np.uint8), bitorder="little").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def xa_series(tmp_path: Path, modality_lut) -> tuple[Path, list[Path]]:
    """Four Modality-LUT MONOCHROME1 slices, a SEG and an SR in one folder; slice files in position order."""
    folder = tmp_path / "xa"
    folder.mkdir()
    uid = generate_uid()
    files = []
    for i, y in enumerate(Y_OF_FILE):
        stored = (np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1)) + 40 * i).clip(0, 4095)
        stored[0, :4] = 4095 - 100 * i  # slices differ in their corner too
        files.append(_modality_lut_slice(modality_lut, folder / f"img_{i}.dcm", stored.astype(np.uint16),
                                         series_uid=uid, y=y, instance=len(Y_OF_FILE) - i,
                                         center=38000.0 + 1000 * i))
    _non_image(folder / "img_seg.dcm", SegmentationStorage, uid, pixels=True)
    _non_image(folder / "report.dcm", BasicTextSRStorage, uid, pixels=False)
    return folder, [f for _, f in sorted(zip(Y_OF_FILE, files, strict=True))]


def test_a_series_slice_equals_its_file_given_alone(xa_series):
    folder, by_position = xa_series
    array, scan = read_series(folder)
    assert array.shape == (8, 64, 4) and scan.files == by_position
    assert scan.positions == sorted(Y_OF_FILE)  # along the normal (+y), not by name or InstanceNumber
    assert [Path(p).name for p, _ in scan.skipped] == ["img_seg.dcm", "report.dcm"]
    assert "Segmentation Storage object, not an image" in scan.skipped[0][1]
    assert "Basic Text SR Storage object, not an image" in scan.skipped[1][1]
    for k, path in enumerate(by_position):
        alone, ds = read_dicom(path)
        assert array[..., k].dtype == alone.dtype and np.array_equal(array[..., k], alone)
        assert np.array_equal(alone, apply_modality_lut(ds.pixel_array, ds)) and alone.max() > 4095  # the LUT
    t = build_transforms(32)
    for k, path in enumerate(by_position):
        in_series = t({"image": str(folder), "slice_index": k})
        given_alone = t({"image": str(path)})
        assert np.array_equal(in_series["image_u8"], given_alone["image_u8"])
        assert np.array_equal(in_series["image"].numpy(), given_alone["image"].numpy())
    u8 = [t({"image": str(folder), "slice_index": k})["image_u8"][..., 0] for k in range(4)]
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(u8))  # each slice its own window
    assert (u8[0][1:, 0] > u8[0][1:, -1]).all()  # MONOCHROME1: high values dark (row 0: the corner)
    middle = t({"image": str(folder)})["image_u8"]
    assert np.array_equal(middle, t({"image": str(by_position[2])})["image_u8"])  # default: slice N // 2


def test_the_loader_names_the_skipped_objects_and_headers_only_scan_agrees(xa_series):
    folder, by_position = xa_series
    meta = LoadMedicald("image")({"image": str(folder)})["image_meta"]
    assert meta["dicom"]["is_series"] and meta["series"]["files"] == [str(p) for p in by_position]
    assert [Path(p).name for p, _ in meta["series"]["skipped"]] == ["img_seg.dcm", "report.dcm"]
    scan = scan_series(folder)
    assert scan.files == by_position and scan.skipped == read_series(folder)[1].skipped
    assert "PixelData" not in scan.headers[0]  # header only


def test_series_sort_falls_back_to_instance_number_then_name(tmp_path):
    uid = generate_uid()
    paths = [write_dicom(tmp_path / f"s{i}.dcm", np.full((4, 4), i, np.uint16), series_uid=uid, instance=3 - i)
             for i in range(3)]
    members = []
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        del ds.ImagePositionPatient
        members.append((path, ds))
    assert [p for p, _ in sort_slices(members)] == paths[::-1]  # InstanceNumber 1, 2, 3
    for _, ds in members:
        del ds.InstanceNumber
    assert [p for p, _ in sort_slices(members[::-1])] == paths  # file name


def test_a_folder_of_non_images_is_one_read_error_and_a_volume_layout_lists_the_skips(tmp_path, xa_series):
    only = tmp_path / "only_seg"
    only.mkdir()
    _non_image(only / "seg.dcm", SegmentationStorage, generate_uid(), pixels=True)
    with pytest.raises(ImageReadError, match=r"no single-frame DICOM image .*Segmentation Storage"):
        build_transforms(32)({"image": str(only)})
    folder, _ = xa_series
    root = tmp_path / "set"
    (root / "normal").mkdir(parents=True)
    folder.rename(root / "normal" / "xa")
    index = load_dataset("volume", root, holdout=0, dedupe_holdout=False)
    assert len(list(index.all_records())) == 4  # the SEG and the SR are not slices
    named = {Path(p).name: why for p, why in index.problems}
    assert "Segmentation Storage object, not an image" in named["img_seg.dcm"]
    assert "Basic Text SR Storage object, not an image" in named["report.dcm"]


def test_slices_of_another_size_are_named(tmp_path):
    uid = generate_uid()
    write_dicom(tmp_path / "a.dcm", np.zeros((4, 4), np.uint16), series_uid=uid, instance=1)
    write_dicom(tmp_path / "b.dcm", np.zeros((4, 6), np.uint16), series_uid=uid, instance=2, position=2.0)
    with pytest.raises(ImageReadError, match=r"slice b\.dcm is 4x6 but the series' first slice a\.dcm is 4x4"):
        read_series(tmp_path)


def test_a_gap_a_duplicate_and_a_localizer_in_a_series_folder(tmp_path):
    """The series is stacked without the duplicate and the scout; the gap is a warning of the volume layout."""
    import shutil

    root = tmp_path / "set"
    folder = root / "normal" / "ct"
    uid = generate_uid()
    planes = [np.full((8, 8), 10 * k, np.uint16) for k in range(6)]
    for k in (0, 1, 3, 4, 5):  # slice 2 (z = 2 mm) is missing
        write_dicom(folder / f"s{k}.dcm", planes[k], series_uid=uid, instance=k + 1, position=float(k))
    shutil.copy(folder / "s4.dcm", folder / "s4_again.dcm")  # the same slice stored twice
    scout = write_dicom(folder / "scout.dcm", np.full((8, 8), 999, np.uint16), series_uid=uid, instance=9)
    ds = pydicom.dcmread(scout)
    ds.ImageType, ds.ImageOrientationPatient = ["ORIGINAL", "PRIMARY", "LOCALIZER"], [0, 1, 0, 0, 0, -1]
    ds.save_as(scout, enforce_file_format=True)
    volume, scan = read_series(folder)
    assert [p.name for p in scan.files] == ["s0.dcm", "s1.dcm", "s3.dcm", "s4.dcm", "s5.dcm"]
    assert volume[0, 0].tolist() == [0, 10, 30, 40, 50] and scan.positions == [0.0, 1.0, 3.0, 4.0, 5.0]
    named = {Path(p).name: why for p, why in scan.skipped}
    assert set(named) == {"s4_again.dcm", "scout.dcm"}
    assert "exact duplicate" in named["s4_again.dcm"] and "LOCALIZER" in named["scout.dcm"]
    assert "gap of 2.00 mm between slices 1 and 2 (at 1.00 and 3.00 mm)" in scan.notes[1]
    index = load_dataset("volume", root, holdout=0, dedupe_holdout=False)
    assert len(list(index.all_records())) == 5
    assert {Path(p).name for p, _ in index.problems} == {"s4_again.dcm", "scout.dcm"}
    assert [(Path(p).name, "gap of 2.00 mm" in why) for p, why in index.warnings][-1] == ("ct", True)
