"""The bad-input corpus: one ``folder`` data set of real files, most of them broken or unusable.

``build_bad_corpus(root)`` writes the generic layout (``normal/``, ``abnormal/``, ``masks/``) and
returns ``(good, bad)``:

* ``good``: the image paths every tool must read and score (unusual but valid files: JPEG-LS, RLE and
  JPEG 2000 DICOM, 16-bit RGB DICOM, a Modality LUT Sequence, palette / alpha / 16-bit PNG, CMYK
  JPEG, CVC-ClinicDB's 3-samples-per-pixel TIFFs, names with spaces and non-ASCII characters, ...);
* ``bad``: ``{path: reason}`` where ``reason`` is a regular expression (``re.search``, ignoring case)
  that the skip reason of that path must match. A bad image/mask pair is keyed by the **image**
  (the unit that is skipped); a mask without its image by the mask.

Only pydicom's bundled test files, highdicom, Pillow, tifffile and nibabel are used: nothing is read
from the network or from ``../shared``. The same corpus runs through ``datasets check`` (tests/data)
and ``evaluate`` (tests/evaluation): import it with the ``bad_corpus`` fixture of tests/conftest.py.
"""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from adaptclip_med.data.writers import write_dicom, write_nifti

SIZE = 48
_NOT_AN_IMAGE = r"not an image|no image"


def _organ(seed: int, size: int = SIZE) -> np.ndarray:
    """A seeded textured ``(size, size)`` uint8 picture (bright disc on noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    disc = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) < 0.12
    return np.clip(disc * 140 + rng.normal(60, 20, (size, size)), 0, 255).astype(np.uint8)


def _lesion_mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[size // 3: size // 2, size // 3: size // 2] = 255
    return mask


def _png(path: Path, array: np.ndarray, mode: str | None = None, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(path, format=fmt)
    return path


def _truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: max(1, int(len(data) * keep))])
    return dst


def _copy_testdata(name: str, dst: Path) -> Path:
    """Copy one of pydicom's bundled test files (installed with pydicom, no download)."""
    src = get_testdata_file(name)
    if src is None:
        msg = f"pydicom test file {name} not installed"
        raise FileNotFoundError(msg)
    shutil.copyfile(src, dst)
    return dst


def _with_file_meta(src: Path, dst: Path) -> Path:
    """Re-save a DICOM data set with the 128-byte preamble and file meta (as an archive exports it)."""
    ds = pydicom.dcmread(src, force=True)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.preamble = b"\0" * 128
    ds.save_as(dst, enforce_file_format=True)
    return dst


def _source_ct() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def _seg(dst: Path) -> Path:
    """A DICOM Segmentation (highdicom) of pydicom's CT_small: pixels, but not an image to score."""
    import highdicom as hd

    src = _source_ct()
    mask = np.zeros((1, int(src.Rows), int(src.Columns)), np.uint8)
    mask[0, 20:40, 20:40] = 1
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion",
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=[src], pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc], series_instance_uid=generate_uid(), series_number=90,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="test",
        manufacturer_model_name="bad-corpus", software_versions="1", device_serial_number="1")
    seg.save_as(dst)
    return dst


def _presentation_state(dst: Path) -> Path:
    """A Grayscale Softcopy Presentation State (highdicom): display settings, no pixels."""
    import highdicom as hd

    pr = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[_source_ct()], series_instance_uid=generate_uid(), series_number=91,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="test",
        manufacturer_model_name="bad-corpus", software_versions="1", device_serial_number="1",
        content_label="WINDOW")
    pr.save_as(dst)
    return dst


def _modality_lut_dicom(dst: Path) -> Path:
    """A DICOM whose stored values go through a Modality LUT Sequence (no rescale tags), as XA/MG."""
    stored = (_organ(7).astype(np.uint16) * 16)  # 12-bit stored values
    write_dicom(dst, stored, modality="XA")
    ds = pydicom.dcmread(dst)
    del ds.RescaleSlope, ds.RescaleIntercept
    lut = (np.sqrt(np.arange(4096) / 4095.0) * 4095).astype(np.uint16)
    item = pydicom.Dataset()
    item.LUTDescriptor = [4096, 0, 16]  # PS3.3 C.11.1.1.1: 8 or 16 bits per entry
    item.ModalityLUTType = "US"
    item.add(DataElement(0x00283006, "US", lut.tolist()))
    ds.ModalityLUTSequence = [item]
    ds.save_as(dst, enforce_file_format=True)
    return dst


def _no_pixels_dicom(dst: Path) -> Path:
    """An image-class DICOM (Secondary Capture) whose Pixel Data element is absent."""
    write_dicom(dst, _organ(8))
    ds = pydicom.dcmread(dst)
    del ds.PixelData
    ds.save_as(dst, enforce_file_format=True)
    return dst


def _nifti_gz_truncated(dst: Path) -> Path:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        img = write_nifti(dst.with_name("tmp_full.nii"), np.zeros((SIZE, SIZE, 4), np.float32))
        gz.write(img.read_bytes())
    img.unlink()
    data = buf.getvalue()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def build_bad_corpus(root: str | Path) -> tuple[list[str], dict[str, str]]:
    """Write the corpus under ``root`` (a ``folder`` data set); return ``(good, bad)`` (see module doc)."""
    root = Path(root)
    normal, abnormal, masks = root / "normal", root / "abnormal", root / "masks"
    for d in (normal, abnormal, masks):
        d.mkdir(parents=True, exist_ok=True)
    good: list[Path] = []
    bad: dict[Path, str] = {}
    rgb = np.stack([_organ(1), _organ(2), _organ(3)], axis=-1)

    # --- good: unusual but valid inputs ---------------------------------------------------------
    good.append(_png(normal / "plain grey.png", _organ(10)))                       # space in name
    good.append(_png(normal / "ünïcødé_名前.png", _organ(11)))                      # non-ASCII name
    good.append(_png(normal / "rgb.PNG", rgb))                                     # upper-case suffix
    good.append(_png(normal / "palette.png", rgb, "P"))                            # palette PNG
    good.append(_png(normal / "alpha.png", rgb, "RGBA"))                           # RGBA PNG
    good.append(_png(normal / "grey_alpha.png", _organ(12), "LA"))                 # LA PNG
    good.append(_png(normal / "grey16.png", _organ(13).astype(np.uint16) * 257))    # 16-bit PNG
    good.append(_png(normal / "all_black.png", np.zeros((SIZE, SIZE), np.uint8)))  # constant image
    good.append(_png(normal / "hash#1.png", _organ(14)))                           # '#' in a name
    good.append(_png(normal / "bitmap.bmp", _organ(15)))
    good.append(_png(normal / "png_named.dcm", _organ(42), fmt="PNG"))            # read by content, not name
    good.append(_png(normal / "photo.jpg", rgb))
    cmyk = normal / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(cmyk)                               # CMYK JPEG
    good.append(cmyk)
    planar = np.ascontiguousarray(np.moveaxis(rgb, -1, 0))  # (3, H, W): one plane per sample
    tifffile.imwrite(normal / "cvc_original.tif", planar, photometric="rgb", planarconfig="separate")
    good.append(normal / "cvc_original.tif")                                      # 3 samples, planar
    tifffile.imwrite(normal / "rgb_contig.tif", rgb, photometric="rgb")
    good.append(normal / "rgb_contig.tif")
    tifffile.imwrite(normal / "float.tif", _organ(16).astype(np.float32) / 255.0)
    good.append(normal / "float.tif")                                             # float TIFF
    good.append(write_dicom(normal / "ct.dcm", (_organ(17).astype(np.int16) * 4 - 1024),
                            intercept=0.0, window=(-600.0, 1200.0)))
    good.append(_copy_testdata("MR_small_jpeg_ls_lossless.dcm", normal / "jpeg_ls.dcm"))
    good.append(_copy_testdata("MR_small_RLE.dcm", normal / "rle.dcm"))
    good.append(_copy_testdata("JPEG2000.dcm", normal / "jpeg2000.dcm"))
    good.append(_copy_testdata("SC_rgb_rle_16bit.dcm", normal / "rgb_16bit.dcm"))
    good.append(_copy_testdata("examples_palette.dcm", normal / "palette_colour.dcm"))
    good.append(_copy_testdata("examples_ybr_color.dcm", normal / "ybr.dcm"))
    good.append(_modality_lut_dicom(normal / "modality_lut.dcm"))
    good.append(write_nifti(normal / "volume.nii.gz", np.stack([_organ(s) for s in (20, 21, 22)], -1)
                            .astype(np.float32)))
    for name, mask in (("lesion.png", _lesion_mask()),
                       ("rgb mask ü.png", np.stack([_lesion_mask()] * 3, -1))):   # RGB mask, odd name
        good.append(_png(abnormal / name, _organ(30 + len(name))))
        _png(masks / name, mask)
    Image.fromarray(_organ(50)).save(abnormal / "kvasir_like.jpg", quality=90)   # JPEG mask, > 127 rule
    Image.fromarray(_lesion_mask()).save(masks / "kvasir_like.jpg", quality=90)
    good.append(abnormal / "kvasir_like.jpg")
    tiny = np.zeros((SIZE * 2, SIZE * 2), np.uint8)
    tiny[40:44, 40:44] = 255                                                      # 4x4 px lesion
    Image.fromarray(_organ(53, SIZE * 2)).save(abnormal / "tiny_lesion.jpg", quality=95)
    Image.fromarray(tiny).save(masks / "tiny_lesion.jpg", quality=95)
    good.append(abnormal / "tiny_lesion.jpg")                                     # not "empty" at 1/8 scale
    tifffile.imwrite(abnormal / "cvc_polyp.tif", planar, photometric="rgb", planarconfig="separate")
    tifffile.imwrite(masks / "cvc_polyp.tif", np.stack([_lesion_mask()] * 3, -1), photometric="minisblack",
                     planarconfig="contig")                                       # CVC ground truth form
    good.append(abnormal / "cvc_polyp.tif")

    # --- bad: unreadable files ----------------------------------------------------------------------
    for name in ("zero.png", "zero.jpg", "zero.dcm", "zero.nii.gz", "zero.tif"):
        (normal / name).write_bytes(b"")
        bad[normal / name] = r"0 bytes"
    (abnormal / "zero.png").write_bytes(b"")                                      # the case
    bad[abnormal / "zero.png"] = r"0 bytes"
    _png(root / "full.png", _organ(40))
    bad[_truncate(root / "full.png", normal / "truncated.png")] = r"^PNG file is truncated or corrupt$"
    Image.fromarray(rgb).save(root / "full.jpg", quality=95)
    bad[_truncate(root / "full.jpg", normal / "truncated.jpg")] = r"^JPEG file is truncated or corrupt$"
    tifffile.imwrite(root / "full.tif", planar, photometric="rgb", planarconfig="separate")
    bad[_truncate(root / "full.tif", normal / "truncated.tif", 0.4)] = r"^TIFF file is truncated or corrupt$"
    for f in ("full.png", "full.jpg", "full.tif"):
        (root / f).unlink()
    bad[_copy_testdata("MR_truncated.dcm", normal / "truncated_pixels.dcm")] = r"truncat|cannot be read|pixel"
    write_dicom(root / "full.dcm", _organ(41))
    bad[_truncate(root / "full.dcm", normal / "truncated_header.dcm", 0.05)] = (
        r"^DICOM file is truncated inside its header$")
    (root / "full.dcm").unlink()
    bad[_nifti_gz_truncated(normal / "truncated.nii.gz")] = r"truncat|cannot be read|not decompress|gzip"
    (normal / "text.nii.gz").write_text("this is a text file, not a NIfTI volume\n" * 20)
    bad[normal / "text.nii.gz"] = r"text|not a nifti|cannot be read"
    (normal / "text.png").write_text("<html>not a picture</html>\n")
    bad[normal / "text.png"] = r"text|cannot be read|not a png"
    bad[write_nifti(normal / "all_nan.nii.gz", np.full((SIZE, SIZE, 3), np.nan, np.float32))] = r"nan|finite"
    bad[write_nifti(normal / "all_inf.nii.gz", np.full((SIZE, SIZE, 3), np.inf, np.float32))] = r"inf|finite"
    nan_slice = np.stack([_organ(43)] * 3, -1).astype(np.float32)
    nan_slice[..., 1] = np.nan                                                    # the middle slice
    bad[write_nifti(normal / "nan_middle_slice.nii.gz", nan_slice)] = r"nan|finite"
    bad[write_nifti(normal / "flat.nii.gz", _organ(44).astype(np.float32))] = r"2-d|3-d|shape"
    bad[_no_pixels_dicom(normal / "no_pixels.dcm")] = r"pixel data|no pixel|not an image"

    # --- bad: readable, but not an image to score ------------------------------------------------
    bad[_seg(normal / "segmentation.dcm")] = _NOT_AN_IMAGE + r"|segmentation"
    bad[_presentation_state(normal / "presentation_state.dcm")] = _NOT_AN_IMAGE + r"|presentation state"
    bad[_copy_testdata("test-SR.dcm", normal / "report.dcm")] = _NOT_AN_IMAGE + r"|\bSR\b|structured report"
    bad[_with_file_meta(Path(get_testdata_file("rtstruct.dcm")), normal / "rtstruct.dcm")] = (
        _NOT_AN_IMAGE + r"|rt structure")
    bad[_with_file_meta(Path(get_testdata_file("rtplan.dcm")), normal / "rtplan.dcm")] = _NOT_AN_IMAGE + r"|rt plan"
    bad[_copy_testdata("rtdose.dcm", normal / "rtdose.dcm")] = _NOT_AN_IMAGE + r"|rt dose"  # a dose grid
    bad[_copy_testdata("dicomdirtests/DICOMDIR", normal / "DICOMDIR")] = _NOT_AN_IMAGE + r"|dicomdir|directory"
    (normal / "looks_like_an_image.png").mkdir()                                  # a folder named .png
    bad[normal / "looks_like_an_image.png"] = r"folder|directory"
    (normal / "notes.txt").write_text("scanner export notes\n")
    bad[normal / "notes.txt"] = r"unsupported|not an image|\.txt"

    # --- bad: unusable content --------------------------------------------------------------------
    bad[_png(normal / "one_pixel.png", np.full((1, 1), 128, np.uint8))] = r"1x1|too small"
    bad[write_nifti(normal / "one_voxel_wide.nii.gz", np.ones((1, 1, 5), np.float32))] = r"1x1|too small"
    bad[write_dicom(normal / "one_pixel.dcm", np.full((1, 1), 100, np.uint16))] = r"1x1|too small"
    good.append(_png(abnormal / "empty_mask.png", _organ(45)))  # kept: abnormal as labelled, with a warning
    _png(masks / "empty_mask.png", np.zeros((SIZE, SIZE), np.uint8))
    bad[_png(normal / "long_strip.png", np.full((8, 400), 90, np.uint8))] = r"aspect ratio 50:1"  # 8x400
    bad[_png(abnormal / "wrong_size_mask.png", _organ(46))] = r"mask.*(size|\d+x\d+)"
    _png(masks / "wrong_size_mask.png", _lesion_mask(SIZE // 2))
    bad[_png(abnormal / "no_mask.png", _organ(47))] = r"mask missing|without (its|a) mask"
    bad[_png(masks / "orphan.png", _lesion_mask())] = r"without its image|no image"
    bad[_png(abnormal / "broken_mask.png", _organ(48))] = r"mask"
    (masks / "broken_mask.png").write_text("not a mask\n")
    bad[_png(abnormal / "zero_byte_mask.png", _organ(49))] = r"mask.*0 bytes|0 bytes"
    (masks / "zero_byte_mask.png").write_bytes(b"")
    bad[_png(abnormal / "one_pixel_lesion.png", np.full((1, 1), 200, np.uint8))] = r"1x1|too small"
    _png(masks / "one_pixel_lesion.png", np.full((1, 1), 255, np.uint8))
    Image.fromarray(_organ(51)).save(abnormal / "faint_jpeg_mask.jpg", quality=90)
    Image.fromarray(np.full((SIZE, SIZE), 100, np.uint8)).save(masks / "faint_jpeg_mask.jpg", quality=90)
    good.append(abnormal / "faint_jpeg_mask.jpg")  # JPEG mask ≤ 127 only: empty, kept with a warning
    bad[_png(abnormal / "mask_is_a_folder.png", _organ(52))] = r"mask missing"
    (masks / "mask_is_a_folder.png").mkdir()
    Image.fromarray(rgb).save(normal / "animation.gif")
    bad[normal / "animation.gif"] = r"unsupported"
    (normal / "broken_link.png").symlink_to(root / "does_not_exist.png")
    bad[normal / "broken_link.png"] = r"link|not found"
    return [str(p) for p in good], {str(p): why for p, why in bad.items()}
