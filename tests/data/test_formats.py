"""Formats by content and by their standards: TIFF through tifffile (CVC-ClinicDB's planar RGB,
16-bit, float, masks), Pillow modes converted explicitly, and every bad file as one line."""

from __future__ import annotations

import gzip
import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file

from adaptclip_med.data import build_transforms
from adaptclip_med.data.readers.formats import image_format
from adaptclip_med.data.writers import write_dicom, write_nifti
from adaptclip_med.runtime.errors import ImageReadError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)


def _load(path, **kw):
    return build_transforms(32, **kw)({"image": str(path)})


def _one_line_error(path, pattern: str, **sample) -> ImageReadError:
    with pytest.raises(ImageReadError) as err:
        build_transforms(32)({"image": str(path), **sample})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)) and len(msg) < 500, msg
    assert pattern in msg, msg
    return err.value


def test_clinicdb_planar_rgb_tiff_and_its_mask(tmp_path):
    original = tmp_path / "Original" / "1.tif"
    mask = tmp_path / "Ground Truth" / "1.tif"
    original.parent.mkdir()
    mask.parent.mkdir()
    # 3 samples per pixel tagged MINISBLACK (2 unspecified extra samples): Pillow cannot identify it
    tifffile.imwrite(original, RGB, photometric="minisblack", planarconfig="contig")
    planar = tmp_path / "Original" / "2.tif"
    tifffile.imwrite(planar, np.moveaxis(RGB, -1, 0), photometric="minisblack", planarconfig="separate")
    truth = np.zeros((24, 40), np.uint8)
    truth[5:15, 10:30] = 255
    tifffile.imwrite(mask, truth)
    with pytest.raises(OSError):  # the form Pillow cannot open
        Image.open(original).load()
    out = build_transforms(24)({"image": str(original), "mask": str(mask)})
    assert np.array_equal(out["image_u8"], RGB)
    assert image_format(original) == "tiff" and out["mask"].sum() > 0
    assert np.array_equal(_load(planar)["image_u8"], RGB)


def test_16_bit_float_and_palette_tiff(tmp_path):
    grey16 = (np.arange(24 * 40, dtype=np.uint16).reshape(24, 40) * 60)
    tifffile.imwrite(tmp_path / "g16.tif", grey16)
    u8 = _load(tmp_path / "g16.tif")["image_u8"][..., 0]
    assert u8.min() == 0 and u8.max() == 255  # percentile window, not clipped at 255
    rgb16 = RGB.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    assert np.array_equal(_load(tmp_path / "rgb16.tif")["image_u8"], RGB)  # scaled by 65535
    tifffile.imwrite(tmp_path / "f.tif", RGB.astype(np.float32) / 255, photometric="rgb")
    assert np.abs(_load(tmp_path / "f.tif")["image_u8"].astype(int) - RGB).max() <= 1
    Image.fromarray(RGB).convert("P").save(tmp_path / "pal.tif")
    pal = _load(tmp_path / "pal.tif")["image_u8"]
    pillow = np.asarray(Image.open(tmp_path / "pal.tif").convert("RGB")).astype(int)
    assert np.abs(pal.astype(int) - pillow).max() <= 1  # 16-bit colour map / 65535 (Pillow: >> 8)
    Image.fromarray(RGB).save(tmp_path / "lzw.tif", compression="tiff_lzw")  # tifffile needs imagecodecs
    assert np.array_equal(_load(tmp_path / "lzw.tif")["image_u8"], RGB)


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA", "1", "I;16"])
def test_pillow_modes_are_converted_explicitly(tmp_path, mode):
    base = Image.fromarray(RGB)
    if mode == "I;16":
        grey = (np.arange(24 * 40, dtype=np.uint16).reshape(24, 40) * 50)
        Image.fromarray(grey).save(tmp_path / "x.png")
        u8 = _load(tmp_path / "x.png")["image_u8"][..., 0]
        assert u8.max() == 255 and len(np.unique(u8)) > 200  # windowed, not clipped
        return
    img = base.convert("L").convert(mode) if mode in ("LA", "1") else base.convert(mode)
    img.save(tmp_path / "x.png")
    expected = np.asarray(Image.open(tmp_path / "x.png").convert("L" if mode in ("LA", "1") else "RGB"))
    u8 = _load(tmp_path / "x.png")["image_u8"]
    assert np.array_equal(u8[..., 0] if expected.ndim == 2 else u8, expected)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    Image.fromarray(RGB).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    expected = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB"))
    assert np.array_equal(_load(tmp_path / "c.jpg")["image_u8"], expected)


def test_dicom_whose_preamble_looks_like_tiff_warns_nothing(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.preamble = b"II*\x00" + b"\x08\x00\x00\x00" + b"\x00" * 120  # a TIFF header in the preamble
    path = tmp_path / "tiffish.dcm"
    ds.save_as(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_format(path) == "dicom"
        assert _load(path)["image"].shape == (3, 32, 32)


def test_text_named_nii_gz_and_other_garbage_are_one_line(tmp_path):
    (tmp_path / "notes.nii.gz").write_text("patient list\nrow 2\n")
    _one_line_error(tmp_path / "notes.nii.gz", "not a NIfTI file: its content is text")
    with gzip.open(tmp_path / "zipped.nii.gz", "wb") as fh:
        fh.write(b"hello world" * 40)
    _one_line_error(tmp_path / "zipped.nii.gz", "content is gzip data without a NIfTI header")
    (tmp_path / "blob.png").write_bytes(bytes(range(256)))
    _one_line_error(tmp_path / "blob.png", "not a PNG/JPEG/BMP/TIFF file: its content is unknown binary data")
    (tmp_path / "table.csv").write_text("a,b\n")
    _one_line_error(tmp_path / "table.csv", "unsupported file type '.csv' (content is text)")


def _png_bytes(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_zero_byte_and_truncated_files_are_one_line(tmp_path):
    for name in ("empty.png", "empty.dcm", "empty.nii.gz", "empty.tif"):
        (tmp_path / name).write_bytes(b"")
        _one_line_error(tmp_path / name, "file is empty (0 bytes)")
    (tmp_path / "cut.png").write_bytes(_png_bytes(RGB)[:200])
    _one_line_error(tmp_path / "cut.png", "cut.png: PNG file is truncated or corrupt")
    buf = io.BytesIO()
    Image.fromarray(RGB).save(buf, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:300])
    _one_line_error(tmp_path / "cut.jpg", "cut.jpg: JPEG file is truncated or corrupt")
    nii = write_nifti(tmp_path / "vol.nii.gz", RNG.random((8, 8, 4)).astype(np.float32))
    (tmp_path / "cut.nii.gz").write_bytes(nii.read_bytes()[:-40])
    _one_line_error(tmp_path / "cut.nii.gz", "cut.nii.gz: NIfTI file is truncated or corrupt")
    dcm = get_testdata_file("MR_small.dcm")
    (tmp_path / "cut.dcm").write_bytes(Path(dcm).read_bytes()[:3000])
    _one_line_error(tmp_path / "cut.dcm", "cut.dcm: pixel data cannot be decoded")
    whole = write_dicom(tmp_path / "whole.dcm", RGB[..., 0]).read_bytes()
    (tmp_path / "cut_header.dcm").write_bytes(whole[:142])  # inside the value of (0002,0000)
    _one_line_error(tmp_path / "cut_header.dcm", "cut_header.dcm: DICOM file is truncated or corrupt inside its header")
    (tmp_path / "cut_tag.dcm").write_bytes(whole[:153])  # inside the header of (0002,0001)
    _one_line_error(tmp_path / "cut_tag.dcm", "cut_tag.dcm: DICOM file is truncated inside its header")
    (tmp_path / "cut_between.dcm").write_bytes(whole[:400])  # between two elements: pydicom reads on
    _one_line_error(tmp_path / "cut_between.dcm", "without pixel data (the file may be truncated), not an image")
    tifffile.imwrite(tmp_path / "t.tif", RGB, photometric="rgb")
    (tmp_path / "cut.tif").write_bytes((tmp_path / "t.tif").read_bytes()[:400])
    _one_line_error(tmp_path / "cut.tif", "cut.tif: TIFF file is truncated or corrupt")


def test_nan_inf_volumes_and_tiny_images(tmp_path):
    vol = np.ones((8, 8, 4), np.float32)
    vol[2, 2, :] = np.nan  # inside the anatomy: refused
    _one_line_error(write_nifti(tmp_path / "nan.nii.gz", vol), "1 NaN value(s) inside the anatomy")
    _one_line_error(write_nifti(tmp_path / "allnan.nii.gz", np.full((8, 8, 4), np.nan, np.float32)),
                    "the slice is entirely NaN")
    _one_line_error(write_nifti(tmp_path / "inf.nii.gz", np.full((8, 8, 4), np.inf, np.float32)),
                    "NaN/inf value(s)")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "dot.png")
    _one_line_error(tmp_path / "dot.png", "image is 1x1 pixels (HxW); too small to score")


def test_nan_outside_the_head_is_background(tmp_path):
    """Skull-stripped NIfTI: NaN around the head is background; an all-NaN slice or a hole is refused."""
    yy, xx = np.mgrid[0:32, 0:32]
    head = (yy - 16) ** 2 + (xx - 16) ** 2 < 12**2
    vol = np.where(head[..., None], 100.0 + xx[..., None] + np.arange(4), np.nan).astype(np.float32)
    vol[..., 3] = np.nan  # the top slice is outside the head altogether
    vol[16, 16, 2] = np.nan  # a NaN inside the brain of slice 2
    path = write_nifti(tmp_path / "stripped.nii.gz", vol)
    t = build_transforms(32)
    out = t({"image": str(path), "slice_index": 0})["image_u8"][..., 0]
    outside = np.rot90(~head)  # a NIfTI slice is shown rotated (RAS, neurological convention)
    assert (out[outside] == 0).all()  # background: the volume's lowest finite value, the bottom of its range
    assert out[~outside].max() > 200 and len(np.unique(out[~outside])) > 10  # the head keeps its contrast
    _one_line_error(path, "the slice is entirely NaN", slice_index=3)
    _one_line_error(path, "1 NaN value(s) inside the anatomy", slice_index=2)


def test_a_directory_named_like_an_image_is_one_line(tmp_path):
    (tmp_path / "scan.png").mkdir()
    _one_line_error(tmp_path / "scan.png", "folder holds no DICOM files")


def test_near_duplicate_thumbnails_read_clinicdb_tiff_by_content(tmp_path):
    from adaptclip_med.data.layouts.duplicates import thumbnail
    from adaptclip_med.data.records import Record

    path = tmp_path / "1.tif"
    tifffile.imwrite(path, RGB, photometric="minisblack", planarconfig="contig")  # Pillow cannot open it
    record = Record(str(path), None, 0, "polyp", "test", None, "clinicdb")
    assert thumbnail(record).shape == (48, 48)
