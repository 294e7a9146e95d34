"""NIfTI slicing (canonical RAS, 4-D, bad volumes), nibabel's sample files, and the volume data set."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from adaptclip_med.data import build_transforms, draw_prompts, load_dataset
from adaptclip_med.data.transforms.intensity import range_to_uint8
from adaptclip_med.data.writers import write_dicom_series, write_nifti
from adaptclip_med.runtime.errors import ImageReadError


def _volume() -> np.ndarray:
    x, y, z = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij")
    return (x * 100 + y * 10 + z).astype(np.float32)


def test_slices_are_taken_in_canonical_ras_orientation(tmp_path):
    vol = _volume()
    path = write_nifti(tmp_path / "las.nii.gz", vol, affine=np.diag([-1.0, 1.0, 1.0, 1.0]))  # LAS
    out = build_transforms(16, window="minmax")({"image": str(path), "slice_index": 2})
    ras = vol[::-1]  # x flipped to point right
    expected = range_to_uint8(np.rot90(ras[:, :, 2]), float(vol.min()), float(vol.max()))
    assert out["original_size"] == (5, 4)
    assert np.array_equal(out["image_u8"][..., 0], expected)


def test_default_slice_is_the_middle_and_axis_is_honoured(tmp_path):
    path = write_nifti(tmp_path / "v.nii", _volume())
    mid = build_transforms(16, window="minmax")({"image": str(path)})["image_u8"][..., 0]
    third = build_transforms(16, window="minmax")({"image": str(path), "slice_index": 3})["image_u8"][..., 0]
    assert np.array_equal(mid, third)  # 6 slices → index 3
    sag = build_transforms(16, window="minmax", axis=0)({"image": str(path), "slice_index": 1})
    assert sag["original_size"] == (6, 5)


def test_4d_frame_and_label_volume_mask(tmp_path):
    vol4 = np.stack([_volume(), _volume() + 1000], axis=-1)
    path = write_nifti(tmp_path / "v4.nii.gz", vol4)
    a = build_transforms(16, window=(500.0, 3000.0))({"image": str(path), "slice_index": 1})
    b = build_transforms(16, window=(500.0, 3000.0), frame=1)({"image": str(path), "slice_index": 1})
    assert b["image_u8"].mean() > a["image_u8"].mean()
    label = np.zeros((4, 5, 6), np.uint8)
    label[1:3, 2:4, 4] = 2
    lpath = write_nifti(tmp_path / "l.nii.gz", label)
    out = build_transforms(10)({"image": str(path), "mask": str(lpath), "slice_index": 4})
    assert out["mask"].shape == (10, 10) and out["mask"].max() == 1


@pytest.mark.parametrize("name", ["anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz",
                                  "reoriented_anat_moved.nii", "standard.nii.gz"])
def test_nibabel_samples(name):
    path = Path(data_path) / name
    shape = nib.as_closest_canonical(nib.load(str(path))).shape
    out = build_transforms(32)({"image": str(path), "slice_index": 0})
    assert out["original_size"] == (shape[1], shape[0])  # rot90 of an axial (X, Y) slice


def test_bad_volumes_name_the_file(tmp_path):
    nan = _volume()
    nan[1, 1, 3] = np.nan
    path = write_nifti(tmp_path / "nan.nii.gz", nan)
    with pytest.raises(ImageReadError, match=r"nan\.nii\.gz.*NaN"):
        build_transforms(16)({"image": str(path), "slice_index": 3})
    flat = write_nifti(tmp_path / "flat.nii.gz", np.zeros((8, 8), np.float32))
    with pytest.raises(ImageReadError, match=r"flat\.nii\.gz.*expected a 3-D or 4-D"):
        build_transforms(16)({"image": str(flat)})
    with pytest.raises(ImageReadError, match="out of range"):
        build_transforms(16)({"image": str(write_nifti(tmp_path / "v.nii", _volume())), "slice_index": 6})


def test_volume_dataset_records_keep_the_volume_and_prompts_avoid_it(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        write_nifti(tmp_path / "normal" / f"n{i}.nii.gz", rng.normal(size=(8, 8, 5)).astype(np.float32))
    write_nifti(tmp_path / "abnormal" / "a0.nii.gz", rng.normal(size=(8, 8, 5)).astype(np.float32))
    label = np.zeros((8, 8, 5), np.uint8)
    label[2:5, 2:5, 1:3] = 1
    write_nifti(tmp_path / "masks" / "a0.nii.gz", label)
    write_dicom_series(tmp_path / "normal" / "series1", rng.integers(0, 900, (4, 8, 8)).astype(np.int16))
    write_nifti(tmp_path / "abnormal" / "nolabel.nii.gz", np.zeros((8, 8, 5), np.float32))
    index = load_dataset("volume", tmp_path, holdout=5, dedupe_holdout=False)
    allrec = list(index.all_records())
    assert len(allrec) == 3 * 5 + 4 + 5
    abn = [r for r in allrec if r.group == "a0"]
    assert [r.label for r in abn] == [0, 1, 1, 0, 0] and abn[1].mask is not None and abn[0].mask is None
    assert any("nolabel" in p and "label volume" in why for p, why in index.problems)
    pool_groups = {r.group for r in index.prompt_pool[index.classes[0]]}
    test_groups = {r.group for r in index.records}
    assert pool_groups and not pool_groups & test_groups  # whole volumes held out
    t = build_transforms(16)
    for rec in allrec[::4]:
        t(rec.as_dict())
    draw = draw_prompts(index, index.classes[0], 2, seed=1, queries=index.records[:3])
    assert all(r.label == 0 and r.slice_index is not None for r in draw.records)


def test_volume_holdout_takes_a_whole_volume_when_volumes_exceed_the_holdout(tmp_path):
    rng = np.random.default_rng(1)
    for i, depth in enumerate((30, 24, 40)):
        write_nifti(tmp_path / "normal" / f"v{i}.nii.gz", rng.normal(size=(6, 6, depth)).astype(np.float32))
    write_nifti(tmp_path / "abnormal" / "a.nii.gz", rng.normal(size=(6, 6, 10)).astype(np.float32))
    label = np.zeros((6, 6, 10), np.uint8)
    label[2:4, 2:4, 3:6] = 1
    write_nifti(tmp_path / "masks" / "a.nii.gz", label)  # 7 normal slices in a volume with a lesion
    index = load_dataset("volume", tmp_path, dedupe_holdout=False)  # holdout=16 < every volume
    pool = index.prompt_pool[index.classes[0]]
    # the smallest *normal* volume, whole; the lesion volume's normal slices would share its group
    assert {r.group for r in pool} == {"v1"} and len(pool) == 24
    assert "v1" not in {r.group for r in index.records}
