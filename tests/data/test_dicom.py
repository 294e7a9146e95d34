"""DICOM through build_transforms: windows derived by hand, MONOCHROME1, frames, series, VOI LUT,
pydicom's own sample files and bad input."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from adaptclip_med.data import build_transforms
from adaptclip_med.data.writers import write_dicom, write_dicom_series
from adaptclip_med.runtime.errors import ImageReadError, NotAnImageError

# stored int16 → HU with intercept −1024: [−1024, −24, 16, 56, 976]
STORED = np.array([[0, 1000, 1040, 1080, 2000]] * 2, dtype=np.int16)


def _u8(path, **kw) -> np.ndarray:
    return build_transforms(32, **kw)({"image": str(path), "slice_index": kw.pop("slice_index", None)}
                                      )["image_u8"][..., 0]


def test_window_tags_follow_the_dicom_formula(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", STORED, intercept=-1024.0, window=(40.0, 80.0))
    # PS3.3 C.11.2.1.2: ((x − 39.5)/79 + 0.5)·255 inside [0, 79]; 16 HU → 51.65, 56 HU → 180.76
    assert _u8(path)[0].tolist() == [0, 0, 52, 181, 255]


def test_preset_overrides_tags_and_monochrome1_is_inverted(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", STORED, intercept=-1024.0, window=(40.0, 80.0))
    bone = _u8(path, window="bone")[0]  # (400, 1800): 976 HU → ((976−399.5)/1799+0.5)·255 = 209.2
    assert bone.tolist()[-1] == 209 and bone[0] == 0
    mono1 = write_dicom(tmp_path / "m1.dcm", STORED, intercept=-1024.0, window=(40.0, 80.0),
                        photometric="MONOCHROME1")
    assert _u8(mono1)[0].tolist() == [255, 255, 203, 74, 0]


def test_multiframe_and_series_pick_the_requested_slice(tmp_path):
    frames = np.stack([np.full((6, 8), v, np.uint16) for v in (10, 20, 30)])
    frames[:, 0, 0] = 0  # a reference pixel so every frame has a range
    mf = write_dicom(tmp_path / "mf.dcm", frames, window=(15.0, 30.0))
    t = build_transforms(16)
    got = [t({"image": str(mf), "slice_index": i})["image_u8"][3, 3, 0] for i in range(3)]
    assert got == [88, 176, 255]  # ((v − 14.5)/29 + 0.5)·255 for v = 10, 20; 30 > 29 → 255
    assert t({"image": str(mf)})["image_u8"][3, 3, 0] == got[1]  # default rule: the middle frame
    assert build_transforms(16, dicom_frame="first")({"image": str(mf)})["image_u8"][3, 3, 0] == got[0]
    assert build_transforms(16, dicom_frame=2)({"image": str(mf)})["image_u8"][3, 3, 0] == got[2]
    with pytest.raises(ValueError, match="dicom_frame 'last' not understood"):
        build_transforms(16, dicom_frame="last")
    with pytest.raises(ImageReadError, match="slice index 3 out of range"):
        t({"image": str(mf), "slice_index": 3})
    vol = np.stack([np.full((6, 8), 100 * (i + 1), np.int16) for i in range(4)])
    series = write_dicom_series(tmp_path / "series", vol, window=(250.0, 400.0))
    planes = [t({"image": str(series), "slice_index": i})["image_u8"][2, 2, 0] for i in range(4)]
    assert planes == sorted(planes) and len(set(planes)) == 4


def test_voi_lut_sequence_is_applied(tmp_path):
    path = write_dicom(tmp_path / "voi.dcm", np.array([[0, 1, 2, 3]] * 2, np.uint16))
    ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    item.add_new(0x00283002, "US", [4, 0, 8])  # LUTDescriptor: 4 entries, first value 0, 8 bits
    item.add_new(0x00283006, "US", [0, 200, 210, 255])  # LUTData
    ds.VOILUTSequence = [item]
    ds.save_as(path)
    assert _u8(path)[0].tolist() == [0, 200, 210, 255]


def test_pydicom_mr_sample_matches_pydicom_windowing():
    from pydicom.pixels import apply_windowing

    path = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    ref = apply_windowing(ds.pixel_array.astype(np.float64), ds)
    signed = ds.PixelRepresentation == 1  # output range of apply_windowing: the stored range
    lo = -(2.0 ** (ds.BitsStored - 1)) if signed else 0.0
    hi = lo + 2.0 ** ds.BitsStored - 1
    expected = np.round((ref - lo) / (hi - lo) * 255).astype(int)
    got = build_transforms(32)({"image": path})["image_u8"][..., 0].astype(int)
    assert got.shape == ds.pixel_array.shape
    assert np.abs(got - expected).max() <= 1


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
                                  "examples_rgb_color.dcm", "examples_palette.dcm", "examples_ybr_color.dcm"])
def test_pydicom_samples_load(name):
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = build_transforms(48)({"image": path})
    assert out["image"].shape == (3, 48, 48)
    assert out["original_size"] == (ds.Rows, ds.Columns)
    assert out["image_u8"].std() > 1  # not blank


def test_palette_sample_is_colour():
    out = build_transforms(48)({"image": get_testdata_file("examples_palette.dcm")})
    u8 = out["image_u8"].astype(int)
    assert np.abs(u8[..., 0] - u8[..., 2]).max() > 20


def test_shared_dicom_copies_load(shared_datasets):
    folder = shared_datasets / "dicom_nifti" / "dicom"
    t = build_transforms(32)
    ok = 0
    for path in sorted(folder.glob("*.dcm")):
        if path.name in ("liver_1frame.dcm", "rtdose.dcm"):  # a DICOM SEG object, an RT dose grid
            what = r"DICOM (Segmentation|RT Dose) Storage object, not an image"
            with pytest.raises(NotAnImageError, match=rf"{path.name}: {what}"):
                t({"image": str(path)})
            continue
        t({"image": str(path)})
        ok += 1
    assert ok == 11


def test_truncated_file_names_the_file():
    # compressed syntaxes decode now (tests/data/test_dicom_standard.py checks them against their twins)
    with pytest.raises(ImageReadError, match=r"MR_truncated\.dcm.*less than expected"):
        build_transforms(32)({"image": get_testdata_file("MR_truncated.dcm")})


def test_png_bytes_in_a_dcm_file_are_read_by_content(tmp_path):
    from PIL import Image

    fake = tmp_path / "fake.dcm"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(fake, format="PNG")
    assert (build_transforms(32)({"image": str(fake)})["image_u8"] == 7).all()
    (tmp_path / "text.dcm").write_text("not a DICOM file\n")
    with pytest.raises(ImageReadError, match=r"text\.dcm: not a DICOM file: its content is text"):
        build_transforms(32)({"image": str(tmp_path / "text.dcm")})


def test_no_patient_identifiers_in_the_output(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", STORED, intercept=-1024.0, window=(40.0, 80.0))
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.PatientID = "Doe^Jane", "SECRET-123"
    ds.save_as(path)
    out = build_transforms(32)({"image": str(path)})
    assert "SECRET-123" not in repr({k: v for k, v in out.items() if k not in ("image", "image_u8")})
    assert set(out) == {"image", "image_u8", "original_size"}


def test_multi_window_rgb(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", STORED, intercept=-1024.0)
    out = build_transforms(32, window=["brain", "subdural", "bone"])({"image": str(path)})
    rgb = out["image_u8"][0]
    assert rgb[:, 0].tolist() == [0, 0, 52, 181, 255]  # brain 40/80
    assert rgb[:, 1].tolist() == [0, 10, 58, 105, 255]  # subdural 75/215: ((x − 74.5)/214 + 0.5)·255
    assert rgb[:, 2].tolist() == [0, 67, 73, 79, 209]  # bone 400/1800: ((x − 399.5)/1799 + 0.5)·255
    with pytest.raises(ValueError, match="each channel"):
        build_transforms(32, window=["brain", "percentile", "bone"])
