"""DICOM as PS3.3 defines it, checked against pydicom's own modality + VOI pipeline: bundled files,
files edited to carry a Modality LUT Sequence or a VOI LUT Function, compressed twins, 16-bit colour,
objects that are not images, and a transfer syntax no installed plugin decodes."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import UID

from adaptclip_med.data import build_transforms
from adaptclip_med.data.readers.dicom_pixels import decoder_hint, read_dicom
from adaptclip_med.data.writers import write_dicom
from adaptclip_med.runtime.errors import ImageReadError, NotAnImageError


def _u8(path, **kw) -> np.ndarray:
    out = build_transforms(32, **kw)({"image": str(path)})["image_u8"]
    return out[..., 0] if (out[..., 0] == out[..., 2]).all() else out


def _reference(ds: pydicom.Dataset) -> np.ndarray:
    """pydicom's modality LUT → VOI LUT, scaled from the output range PS3.3 gives it, to 8 bit.

    Output range (derived here by hand, not by pydicom): a VOI LUT Sequence spans 0..2**bits − 1; a
    window spans the modality output range: 0..2**bits − 1 of a Modality LUT Sequence, else the stored
    range (signed or not) through RescaleSlope/Intercept.
    """
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, prefer_lut=True).astype(np.float64)
    if "VOILUTSequence" in ds:
        lo, hi = 0.0, 2.0 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1
    elif "ModalityLUTSequence" in ds:
        lo, hi = 0.0, 2.0 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1
    else:
        lo = -(2.0 ** (ds.BitsStored - 1)) if ds.PixelRepresentation == 1 else 0.0
        hi = lo + 2.0 ** ds.BitsStored - 1
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return np.round((values - lo) / (hi - lo) * 255)


def _assert_matches_pydicom(path) -> None:
    ds = pydicom.dcmread(path)
    got = _u8(path).astype(int)
    expected = _reference(ds)
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
        expected = 255 - expected
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_bundled_files_match_pydicoms_modality_and_voi_pipeline(name):
    _assert_matches_pydicom(get_testdata_file(name))


@pytest.mark.parametrize(("function", "name", "window"), [
    ("SIGMOID", "MR_small.dcm", (700, 900)), ("LINEAR_EXACT", "MR_small.dcm", (700, 900)),
    ("LINEAR", "CT_small.dcm", (40, 400)), ("SIGMOID", "CT_small.dcm", (40, 400)),  # CT: rescale to HU
])
def test_voi_lut_function_of_the_file_is_honoured(tmp_path, function, name, window):
    ds = pydicom.dcmread(get_testdata_file(name))
    (ds.WindowCenter, ds.WindowWidth), ds.VOILUTFunction = window, function
    path = tmp_path / f"{function}.dcm"
    ds.save_as(path)
    _assert_matches_pydicom(path)
    if function == "SIGMOID":  # differs from a linear window: the bug this test guards against
        linear = build_transforms(32, window=window)({"image": str(path)})["image_u8"][..., 0]
        assert np.abs(linear.astype(int) - _u8(path).astype(int)).max() > 20


def _with_modality_lut(modality_lut, tmp_path, photometric: str = "MONOCHROME2"):
    """A 12-bit XA-like image whose Modality LUT Sequence is a gamma curve, windowed in LUT units."""
    stored = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))  # (8, 64)
    path = write_dicom(tmp_path / f"mlut_{photometric}.dcm", stored, modality="XA", photometric=photometric)
    return modality_lut(path, WindowCenter=40000, WindowWidth=30000)


def test_modality_lut_sequence_is_applied_before_the_window(tmp_path, modality_lut):
    path = _with_modality_lut(modality_lut, tmp_path)
    _assert_matches_pydicom(path)
    ds = pydicom.dcmread(path)
    values, _ = read_dicom(path)
    assert np.array_equal(values, apply_modality_lut(ds.pixel_array, ds))
    assert values.max() > 4095  # LUT output, not the 12-bit stored values
    # a preset window applies to the modality LUT output
    centre = (values > 40000 - 0.5 - 14999.5) & (values <= 40000 - 0.5 + 14999.5)
    got = build_transforms(32, window=(40000, 30000))({"image": str(path)})["image_u8"][..., 0]
    assert (got[~centre] % 255 == 0).all() and 0 < got[centre].mean() < 255
    _assert_matches_pydicom(_with_modality_lut(modality_lut, tmp_path, "MONOCHROME1"))


def test_compressed_files_decode_to_their_uncompressed_twins():
    plain, _ = read_dicom(get_testdata_file("MR_small.dcm"))
    for name in ("MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"):
        decoded, _ = read_dicom(get_testdata_file(name))
        assert np.array_equal(decoded, plain), name
    rgb_rle = _u8(get_testdata_file("SC_rgb_rle.dcm"))
    rgb_jpeg_lossless = _u8(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"))
    assert rgb_rle.shape == (100, 100, 3) and np.array_equal(rgb_rle, rgb_jpeg_lossless)


def test_16_bit_rgb_is_scaled_by_bits_stored_not_clipped():
    u8 = _u8(get_testdata_file("SC_rgb_rle_16bit.dcm"))
    assert np.array_equal(u8, _u8(get_testdata_file("SC_rgb_rle.dcm")))  # its 8-bit twin
    assert (u8 == 255).mean() < 0.5


def test_undecodable_transfer_syntax_names_what_to_do(tmp_path):
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset, write_file_meta_info

    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.110")  # JPEG XL: no pydicom decoder
    path = tmp_path / "jxl.dcm"
    with path.open("wb") as fh:  # pydicom's save_as refuses syntaxes it does not know: write by parts
        fh.write(b"\0" * 128 + b"DICM")
        fp = DicomFileLike(fh)
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_file_meta_info(fp, ds.file_meta, enforce_standard=False)
        write_dataset(fp, ds)
    with pytest.raises(ImageReadError) as err:
        build_transforms(32)({"image": str(path)})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path))
    assert "no pixel-data decoder for transfer syntax 1.2.840.10008.1.2.4.110 (JPEG XL Lossless)" in msg
    assert "gdcmconv --raw" in msg and "complete" not in msg
    assert "pip install pylibjpeg pylibjpeg-libjpeg" in decoder_hint(str(pydicom.uid.JPEGLSLossless))
    assert "pylibjpeg-openjpeg" in decoder_hint(str(pydicom.uid.JPEG2000Lossless))


def test_truncated_pixel_data_is_one_line():
    with pytest.raises(ImageReadError) as err:
        build_transforms(32)({"image": get_testdata_file("MR_truncated.dcm")})
    assert "\n" not in str(err.value) and "MR_truncated.dcm" in str(err.value)


def _object(tmp_path, name: str, sop_class: str, pixels: bool = False):
    path = write_dicom(tmp_path / name, np.zeros((4, 4), np.uint16))
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    if not pixels:
        del ds.PixelData
    ds.save_as(path)
    return path


@pytest.mark.parametrize(("sop", "pixels", "what"), [
    ("1.2.840.10008.5.1.4.1.1.66.4", True, "Segmentation Storage object, not an image"),
    ("1.2.840.10008.5.1.4.1.1.88.22", False, "Enhanced SR Storage object, not an image"),
    ("1.2.840.10008.5.1.4.1.1.11.1", False, "Grayscale Softcopy Presentation State Storage object"),
    ("1.2.840.10008.5.1.4.1.1.88.59", False, "Key Object Selection Document Storage object"),
    ("1.2.840.10008.5.1.4.1.1.481.3", False, "RT Structure Set Storage object, not an image"),
    ("1.2.840.10008.5.1.4.1.1.481.2", True, "RT Dose Storage object, not an image"),
    ("1.2.840.10008.5.1.4.1.1.7", False, "Secondary Capture Image Storage object without pixel data"),
])
def test_objects_that_are_not_images_are_named_by_sop_class(tmp_path, sop, pixels, what):
    path = _object(tmp_path, "obj.dcm", sop, pixels)
    with pytest.raises(NotAnImageError, match=f"obj.dcm: DICOM {what}"):
        build_transforms(32)({"image": str(path)})


def test_bundled_dicomdir_and_rt_plan_are_not_images():
    for name, what in (("DICOMDIR", "Media Storage Directory Storage"), ("rtplan.dcm", "RT Plan Storage")):
        with pytest.raises(NotAnImageError, match=f"DICOM {what} object, not an image"):
            build_transforms(32)({"image": get_testdata_file(name)})


def test_rt_image_is_an_image(tmp_path):
    path = _object(tmp_path, "rtimage.dcm", "1.2.840.10008.5.1.4.1.1.481.1", pixels=True)
    assert build_transforms(32)({"image": str(path)})["image"].shape == (3, 32, 32)


def test_enhanced_multiframe_rescale_and_window_come_from_functional_groups(tmp_path):
    frames = np.stack([np.tile(np.arange(0, 200, 10, dtype=np.uint16), (4, 1)) + 5 * i for i in range(3)])
    path = write_dicom(tmp_path / "enhanced.dcm", frames)
    ds = pydicom.dcmread(path)
    del ds.RescaleSlope, ds.RescaleIntercept
    transform, voi, shared = pydicom.Dataset(), pydicom.Dataset(), pydicom.Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, -100, "US"
    voi.WindowCenter, voi.WindowWidth = 100, 200
    shared.PixelValueTransformationSequence, shared.FrameVOILUTSequence = [transform], [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.save_as(path)
    values, _ = read_dicom(path)
    assert np.array_equal(values, frames * 2.0 - 100)
    got = build_transforms(32, dicom_frame=1)({"image": str(path)})["image_u8"][..., 0].astype(int)
    flat = pydicom.dcmread(path)
    flat.RescaleSlope, flat.RescaleIntercept, flat.WindowCenter, flat.WindowWidth = 2, -100, 100, 200
    ref = apply_voi_lut(apply_modality_lut(flat.pixel_array[1], flat), flat)
    lo, hi = 0 * 2 - 100, 65535 * 2 - 100  # unsigned 16-bit stored range through the rescale
    assert np.abs(got - np.round((ref - lo) / (hi - lo) * 255)).max() <= 1
