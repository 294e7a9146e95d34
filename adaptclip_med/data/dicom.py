"""DICOM display mapping: VOI LUT / window tags / presets, MONOCHROME1, palette colour, frames.

MONAI's ``PydicomReader`` already applies the *modality* LUT (RescaleSlope/Intercept, so CT is in HU).
This module maps those values to 8 bit the way a DICOM viewer does (PS3.3 C.11.2): a VOI LUT
sequence if present, else the first WindowCenter/WindowWidth pair, else a named preset or
percentile clipping chosen by the caller; MONOCHROME1 is then inverted so that high = bright.
Patient identifiers are never read into records, file names or logs: only the display tags below are
kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from ..errors import ImageReadError

#: Display tags copied from a header; nothing identifying.
DISPLAY_TAGS: tuple[str, ...] = (
    "Modality", "PhotometricInterpretation", "SamplesPerPixel", "NumberOfFrames", "BitsStored",
    "WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept",
)


def series_files(folder: Path) -> list[Path]:
    """DICOM files of a series folder (``*.dcm`` or files with the ``DICM`` preamble), sorted."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for p in files if p.suffix.lower() in (".dcm", ".dicom") or _has_preamble(p)]


def _has_preamble(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def read_header(path: str | Path) -> pydicom.Dataset:
    """Read a DICOM header (no pixels); for a series folder, the first file's header.

    Raises:
        ImageReadError: not a DICOM file (e.g. a truncated file or a PNG named ``.dcm``), empty folder.
    """
    p = Path(path)
    if p.is_dir():
        files = series_files(p)
        if not files:
            raise ImageReadError(p, "folder holds no DICOM files", "point to a DICOM series folder")
        p = files[0]
    try:
        return pydicom.dcmread(p, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise ImageReadError(p, f"not a readable DICOM file ({type(exc).__name__}: {exc})",
                             "check that the file is a complete DICOM file") from exc


def display_info(header: pydicom.Dataset) -> dict[str, object]:
    """The display tags of ``header`` as plain Python values (multi-valued tags → lists)."""
    info: dict[str, object] = {}
    for tag in DISPLAY_TAGS:
        value = header.get(tag)
        if value is None:
            continue
        if isinstance(value, pydicom.multival.MultiValue):
            info[tag] = [float(v) for v in value]
        elif isinstance(value, (pydicom.valuerep.DSfloat, pydicom.valuerep.IS, float, int)):
            info[tag] = float(value)
        else:
            info[tag] = str(value)
    info["has_voi_lut"] = "VOILUTSequence" in header
    return info


def tag_window(header: pydicom.Dataset) -> tuple[float, float] | None:
    """First ``(WindowCenter, WindowWidth)`` pair of the header, or ``None``."""
    center, width = header.get("WindowCenter"), header.get("WindowWidth")
    if center is None or width is None:
        return None
    center = center[0] if isinstance(center, pydicom.multival.MultiValue) else center
    width = width[0] if isinstance(width, pydicom.multival.MultiValue) else width
    return float(center), float(width)


def apply_voi_lut_sequence(array: np.ndarray, header: pydicom.Dataset) -> np.ndarray | None:
    """Apply the first VOI LUT of the header and scale its output to ``[0, 255]`` float; else ``None``."""
    if "VOILUTSequence" not in header:
        return None
    from pydicom.pixels import apply_voi

    item = header.VOILUTSequence[0]
    bits = int(item.LUTDescriptor[2]) or 16
    arr = np.asarray(array)
    if np.issubdtype(arr.dtype, np.floating) and np.array_equal(arr, np.round(arr)):
        arr = arr.astype(np.int64)  # MONAI returns float after the modality LUT; LUTs index integers
    out = apply_voi(arr, header, index=0).astype(np.float64)
    return np.clip(out / float(2**bits - 1) * 255.0, 0.0, 255.0)


def palette_to_rgb(array: np.ndarray, header: pydicom.Dataset, path: str) -> np.ndarray:
    """Map PALETTE COLOR indices to ``(H, W, 3)`` uint8 with the header's colour LUT."""
    from pydicom.pixels import apply_color_lut

    full = pydicom.dcmread(path)
    rgb = apply_color_lut(np.asarray(array).astype(np.int64), full)
    bits = int(full.RedPaletteColorLookupTableDescriptor[2])
    scale = 255.0 / float(2**bits - 1)
    return np.clip(np.round(rgb.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def is_monochrome1(header: pydicom.Dataset | None) -> bool:
    """True when low stored values are displayed bright (MONOCHROME1)."""
    return header is not None and str(header.get("PhotometricInterpretation", "")) == "MONOCHROME1"


def n_frames(header: pydicom.Dataset) -> int:
    """Number of frames of a (multi-frame) DICOM file; 1 when the tag is absent."""
    return int(header.get("NumberOfFrames", 1) or 1)
