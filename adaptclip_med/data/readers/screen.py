"""Header-level screening of data set files: what a loader can tell is unusable without decoding pixels.

A loader calls :func:`screen_image` on every candidate file and :func:`screen_mask` on the mask of
every abnormal image; a non-``None`` answer is the skip reason listed in ``DatasetIndex.problems``
(the file is then left out of the records). :func:`mask_warning` names what is kept but worth a word
(``DatasetIndex.warnings``). Files that look fine here but fail to decode (truncated
pixel data, NaN volumes, ...) are found by the decode pass of ``datasets check`` and by ``evaluate``.

Rules (documented in docs/data.md, "Unreadable and unusable files"):

* a folder named like an image file (``x.png/``) that is not a DICOM series;
* an empty (0-byte) file;
* a DICOM object that holds no image to score (the reader's rule, by SOP Class): Segmentation, RT
  Structure Set / Plan / Dose, Structured Reports and Key Object Selection, presentation states,
  registrations, waveforms, encapsulated documents, raw data, DICOMDIR; or an object without Pixel Data;
* an image smaller than :data:`MIN_SIDE` pixels on a side (e.g. a 1×1 placeholder);
* an image whose long side is more than :data:`MAX_ASPECT` times its short side (e.g. 4000 × 8): squashed
  to the model's square input it means nothing (:func:`aspect_problem`);
* an abnormal image whose mask is a folder or an empty (0-byte) file.

Kept, with a warning: an image more than :data:`WARN_ASPECT` times longer than wide (up to
:data:`MAX_ASPECT`; :func:`aspect_warning`: its structures are distorted that much by the squash), and
(:func:`mask_warning`) an abnormal image whose 2-D mask (PNG/JPEG/BMP/TIFF) has
no foreground pixel. The publisher labelled it abnormal, and the authors' protocol keeps it: it counts
as abnormal in the image-level metrics, and its pixels count as normal in the pixel metrics
(Magnetic Tile holds one such image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from adaptclip_med.data.readers.formats import sniff
from adaptclip_med.data.records import DICOM_SUFFIXES, NIFTI_SUFFIXES, has_suffix
from adaptclip_med.runtime.errors import ImageReadError, NotAnImageError

#: Images smaller than this on either side are skipped ("too small"): nothing to score.
MIN_SIDE = 2
#: Images whose long side exceeds this multiple of the short side are refused: every image is squashed
#: to the model's square input, so a 4000 × 8 strip becomes 8 columns stretched 500-fold.
MAX_ASPECT = 8.0
#: Above this ratio (up to :data:`MAX_ASPECT`) an image is scored with a warning: distorted that much.
WARN_ASPECT = 3.0

_JPEG_SUFFIXES = (".jpg", ".jpeg")
_TIFF_SUFFIXES = (".tif", ".tiff")


def is_dicom_file(path: Path) -> bool:
    """True for a ``.dcm``/``.dicom`` file or any file with the ``DICM`` preamble (e.g. ``DICOMDIR``)."""
    if has_suffix(path, DICOM_SUFFIXES):
        return True
    if not path.is_file():
        return False
    with path.open("rb") as fh:
        return sniff(fh.read(132)) == "dicom"


def _dicom_reason(path: Path) -> str | None:
    """Skip reason of a DICOM file from its header, or ``None`` (unreadable headers: left to decode).

    Non-image objects are recognised by the reader's own rule
    (:func:`~adaptclip_med.data.readers.dicom_pixels.check_is_image`: SOP Class, pixel data present).
    """
    import pydicom

    from adaptclip_med.data.readers.dicom_pixels import check_is_image

    try:
        ds = pydicom.dcmread(path, defer_size=64)  # large values (pixels) stay on disk
    except Exception:  # any header failure is reported by the decode pass
        return None
    try:
        check_is_image(ds, path)
    except NotAnImageError as exc:
        return f"{exc.problem}; skipped"
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    return _size_reason(rows, cols)


def _size_reason(rows: int, cols: int) -> str | None:
    if rows and cols and min(rows, cols) < MIN_SIDE:
        return f"image is {rows}x{cols} pixels (HxW), too small (under {MIN_SIDE} px a side); skipped"
    why = aspect_problem(rows, cols)
    return f"{why}; skipped" if why else None


def _ratio(rows: int, cols: int) -> float:
    return max(rows, cols) / min(rows, cols) if rows > 0 and cols > 0 else 1.0


def aspect_problem(rows: int, cols: int) -> str | None:
    """Why an image of ``rows`` × ``cols`` is unusable at the model's square size (ratio > :data:`MAX_ASPECT`)."""
    ratio = _ratio(rows, cols)
    if ratio <= MAX_ASPECT:
        return None
    return (f"image is {rows}x{cols} pixels (HxW), aspect ratio {ratio:.0f}:1 (above {MAX_ASPECT:g}:1): "
            "meaningless when squashed to the model's square input")


def aspect_warning(rows: int, cols: int) -> str | None:
    """A warning for an image of ``rows`` × ``cols`` distorted by the square input (:data:`WARN_ASPECT` < ratio)."""
    ratio = _ratio(rows, cols)
    if not WARN_ASPECT < ratio <= MAX_ASPECT:
        return None
    return (f"image is {rows}x{cols} pixels (HxW), aspect ratio {ratio:.1f}:1 (above {WARN_ASPECT:g}:1): "
            f"squashed to the model's square input, its structures are distorted {ratio:.1f}-fold")


def image_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` of a 2-D raster image (a NIfTI slice: its first two axes) from its header, or ``None``."""
    try:
        if has_suffix(path, _TIFF_SUFFIXES):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                return int(page.imagelength), int(page.imagewidth)
        if has_suffix(path, NIFTI_SUFFIXES):
            import nibabel as nib

            shape = nib.load(str(path)).shape
            return (int(shape[0]), int(shape[1])) if len(shape) >= 2 else None
        with Image.open(path) as img:
            return int(img.height), int(img.width)
    except Exception:  # unreadable headers are reported by the decode pass
        return None


def screen_image(path: str | Path, *, series: bool = False) -> str | None:
    """Skip reason of an image candidate (see the module rules), or ``None`` when it may be used.

    Args:
        path: a file, or a folder (a DICOM series when ``series`` and it holds DICOM files).
        series: folders holding DICOM files are series (the caller found them so).
    """
    p = Path(path)
    if p.is_dir():
        if series:
            return None
        return "a folder named like an image file (not a DICOM series); skipped"
    if p.is_symlink() and not p.exists():
        return "broken symbolic link (its target is missing); skipped"
    if not p.is_file():
        return "not a regular file; skipped"
    if p.stat().st_size == 0:
        return "file is empty (0 bytes); skipped"
    if is_dicom_file(p):
        return _dicom_reason(p)
    size = image_size(p)
    return _size_reason(*size) if size else None


def screen_mask(path: str | Path) -> str | None:
    """Skip reason of an abnormal image's mask, or ``None``: a folder or an empty (0-byte) file.

    A mask without foreground is kept (:func:`mask_warning`).
    """
    p = Path(path)
    if p.is_dir():
        return f"mask {p.name} is a folder; skipped"
    if p.stat().st_size == 0:
        return f"mask {p.name} is empty (0 bytes); skipped"
    return None


def mask_warning(path: str | Path) -> str | None:
    """Warning for an abnormal image's mask without a foreground pixel (the image is kept), or ``None``.

    Foreground is the rule of the pixel pipeline: any value > 0 (> 127 for JPEG masks), any channel.
    Only 2-D raster masks are decoded here (fast); DICOM/NIfTI label volumes are checked by their
    loaders (:mod:`~adaptclip_med.data.layouts.volume`) and unreadable masks by the decode pass.
    """
    p = Path(path)
    if not p.is_file() or has_suffix(p, DICOM_SUFFIXES + NIFTI_SUFFIXES):
        return None
    threshold = 127 if has_suffix(p, _JPEG_SUFFIXES) else 0
    try:
        if has_suffix(p, _TIFF_SUFFIXES):
            import tifffile

            peak = float(np.max(tifffile.imread(p)))
        else:
            peak = _raster_peak(p, threshold)
    except Exception:  # an unreadable mask is reported by the decode pass
        return None
    if peak <= threshold:
        return (f"mask {p.name} is empty (no foreground pixel) for an abnormal image; kept: abnormal in the "
                "image-level metrics, its pixels normal in the pixel metrics (the publisher's label)")
    return None


def _raster_peak(path: Path, threshold: int) -> float:
    """Largest value of any channel of a Pillow-readable mask.

    JPEG masks are first decoded at 1/8 scale (DCT scaling averages, so a reduced value above the
    threshold proves a full-resolution one); only masks that look empty there are decoded in full.
    """
    def peak_of(img: Image.Image) -> float:
        img = img.convert("RGB") if img.mode == "P" else img
        extrema = img.getextrema()
        return float(max(e[1] for e in extrema) if isinstance(extrema[0], tuple) else extrema[1])

    if has_suffix(path, _JPEG_SUFFIXES):
        with Image.open(path) as img:
            img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            if peak_of(img) > threshold:
                return peak_of(img)
    with Image.open(path) as img:
        return peak_of(img)


def screen_error(exc: BaseException) -> str:
    """One line for any decode failure: an :class:`ImageReadError`'s problem, else ``Type: message``."""
    if isinstance(exc, ImageReadError):
        text = exc.problem
    else:
        text = f"cannot be read ({type(exc).__name__}: {exc})"
    text = " ".join(text.split())
    return text if len(text) <= 240 else text[:237].rstrip() + "..."
