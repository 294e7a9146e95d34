"""The NIfTI heat map keeps its source's voxel order, affine and header codes (LPS, permuted, oblique)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from adaptclip_med.data import build_transforms
from adaptclip_med.reporting.volumes import map_volume, save_nifti

_C, _S = np.cos(np.radians(20)), np.sin(np.radians(20))
# voxel axis 0 -> superior (3 mm), axis 1 -> patient left (2 mm), axis 2 -> posterior (1.5 mm): "SLP" order
LPS_PERMUTED = [[0, -2.0, 0, 40.0], [0, 0, -1.5, 30.0], [3.0, 0, 0, -5.0], [0, 0, 0, 1]]
# the same, rotated 20 degrees about the scanner's z axis (an oblique acquisition)
OBLIQUE = (np.array([[_C, -_S, 0, 0], [_S, _C, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]) @ LPS_PERMUTED).tolist()


def _source(tmp: Path, affine: list[list[float]], qform_code: int = 1, sform_code: int = 1) -> Path:
    vol = np.full((5, 32, 24), 100, dtype=np.int16)
    vol[3, 4:9, 14:20] = 1000  # bright block at known voxels, off-centre, on a non-square grid
    img = nib.Nifti1Image(vol, np.asarray(affine))
    img.set_qform(np.asarray(affine), code=qform_code)
    img.set_sform(np.asarray(affine), code=sform_code)
    path = tmp / "scan.nii.gz"
    nib.save(img, str(path))
    return path


def _scored_slices(path: Path, axis: int) -> dict[int, np.ndarray]:
    """Maps a perfect model would give (each slice's own picture) for the canonical slices holding the block."""
    canon = np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)
    transform = build_transforms(28, with_mask=False, axis=axis)
    maps = {}
    for k in sorted({int(i) for i in np.argwhere(canon > 500)[:, axis]}):
        sample = transform({"image": str(path), "mask": None, "slice_index": k})
        maps[k] = np.asarray(sample["image_u8"])[..., 0].astype(np.float32) / 255.0
    return maps


@pytest.mark.parametrize("affine", [LPS_PERMUTED, OBLIQUE], ids=["lps-permuted", "oblique"])
@pytest.mark.parametrize("axis", [2, 0])
def test_map_keeps_source_order_affine_and_world_position(tmp_path: Path, affine: list, axis: int) -> None:
    src = _source(tmp_path, affine, qform_code=1, sform_code=2)
    maps = _scored_slices(src, axis)
    out = nib.load(str(save_nifti(map_volume(str(src), maps, axis=axis), tmp_path / "map.nii.gz")))
    source = nib.load(str(src))
    assert out.shape == source.shape  # (5, 32, 24): the source's axis order, not RAS (24, 32, 5)
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(source.affine) == ("S", "L", "P")
    np.testing.assert_allclose(out.affine, source.affine, atol=1e-6)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (1, 2)
    data = np.asarray(out.dataobj)
    hot = data > 0.5 * data.max()
    lesion = np.asarray(source.dataobj) > 500
    assert np.array_equal(hot, lesion)  # the marked voxels are the lesion's voxels, same indices
    world = (out.affine @ np.append(np.argwhere(hot).mean(axis=0), 1.0))[:3]
    truth = (source.affine @ np.append(np.argwhere(lesion).mean(axis=0), 1.0))[:3]
    np.testing.assert_allclose(world, truth, atol=1e-6)
    canon = np.asarray(nib.as_closest_canonical(out).dataobj)
    unscored = [i for i in range(canon.shape[axis]) if i not in maps]
    assert unscored and not np.take(canon, unscored, axis=axis).any()  # slices not scored stay 0


def test_map_of_a_qform_only_source_keeps_its_qform(tmp_path: Path) -> None:
    src = _source(tmp_path, LPS_PERMUTED, qform_code=1, sform_code=0)
    out = map_volume(str(src), _scored_slices(src, 2))
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (1, 0)
    np.testing.assert_allclose(out.affine, nib.load(str(src)).affine, atol=1e-5)
