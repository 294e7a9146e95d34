"""DICOM display mapping: VOI LUT / window tags / presets, MONOCHROME1, palette colour, frames.

The reader (:mod:`~adaptclip_med.data.readers.dicom_pixels`) applies pydicom's ``apply_modality_lut``
(RescaleSlope/Intercept or Modality LUT Sequence: CT in HU). This module maps those values to 8 bit
the way a DICOM viewer does (PS3.3 C.11.2), with pydicom's ``apply_voi_lut``: a VOI LUT Sequence if
present, else the first WindowCenter/WindowWidth pair under the file's VOI LUT Function (LINEAR,
LINEAR_EXACT, SIGMOID); a named preset or percentile clipping chosen by the caller replaces it;
MONOCHROME1 is then inverted so that high = bright.
Patient identifiers are never read into records, file names or logs: only the display tags below are
kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

#: Display tags copied from a header; nothing identifying.
DISPLAY_TAGS: tuple[str, ...] = (
    "Modality", "PhotometricInterpretation", "SamplesPerPixel", "NumberOfFrames", "BitsStored",
    "WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept", "VOILUTFunction",
)


def series_files(folder: Path) -> list[Path]:
    """DICOM files of a series folder (``*.dcm`` or files with the ``DICM`` preamble), sorted by name.

    Every DICOM file, images or not: :func:`~adaptclip_med.data.readers.dicom_series.scan_series` keeps
    the slices.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for p in files if p.suffix.lower() in (".dcm", ".dicom") or _has_preamble(p)]


def _has_preamble(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


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
    info["has_modality_lut"] = "ModalityLUTSequence" in header
    return info


def tag_window(header: pydicom.Dataset) -> tuple[float, float] | None:
    """First ``(WindowCenter, WindowWidth)`` pair of the header, or ``None``."""
    center, width = header.get("WindowCenter"), header.get("WindowWidth")
    if center is None or width is None:
        return None
    center = center[0] if isinstance(center, pydicom.multival.MultiValue) else center
    width = width[0] if isinstance(width, pydicom.multival.MultiValue) else width
    return float(center), float(width)


def _voi_output_range(header: pydicom.Dataset) -> tuple[float, float]:
    """``(y_min, y_max)`` of pydicom's windowing for this header, asked of pydicom itself.

    The range depends on BitsStored, PixelRepresentation, rescale and a Modality LUT Sequence (PS3.3
    C.11.2.1.2); windowing two values far outside any window gives exactly its two ends.
    """
    from pydicom.pixels import apply_windowing

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ends = apply_windowing(np.array([-1e300, 1e300]), header)
    return float(ends[0]), float(ends[1])


def voi_to_uint8(array: np.ndarray, header: pydicom.Dataset) -> np.ndarray | None:
    """The file's own VOI transform (PS3.3 C.11.2) by pydicom's ``apply_voi_lut``, scaled to uint8.

    A VOI LUT Sequence is preferred; else the first WindowCenter/WindowWidth pair with the file's VOI
    LUT Function (LINEAR, LINEAR_EXACT or SIGMOID). The output range of the LUT (``2**bits − 1``) or of
    the windowing (pydicom's ``y_min..y_max``) is mapped linearly to ``[0, 255]``.

    Args:
        array: ``(H, W)`` modality values (after ``apply_modality_lut``).

    Returns:
        ``(H, W)`` uint8, or ``None`` when the header has no VOI LUT and no usable window (a width
        below 1, or 0 for LINEAR_EXACT, counts as none: the caller falls back to percentiles).
    """
    from pydicom.pixels import apply_voi_lut

    arr = np.asarray(array)
    if "VOILUTSequence" in header and header.VOILUTSequence:
        bits = int(header.VOILUTSequence[0].LUTDescriptor[2]) or 16
        if np.issubdtype(arr.dtype, np.floating) and np.array_equal(arr, np.round(arr)):
            arr = arr.astype(np.int64)  # LUTs index integers
        out = apply_voi_lut(arr, header, index=0, prefer_lut=True).astype(np.float64)
        low, high = 0.0, float(2**bits - 1)
    elif tag_window(header) is not None:
        try:
            out = apply_voi_lut(arr.astype(np.float64), header, index=0, prefer_lut=False)
            low, high = _voi_output_range(header)
        except ValueError:  # width < 1 (LINEAR) or ≤ 0 (LINEAR_EXACT): not a usable window
            return None
    else:
        return None
    if high <= low:
        return None
    scaled = (np.asarray(out, dtype=np.float64) - low) / (high - low) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def palette_to_rgb(array: np.ndarray, header: pydicom.Dataset) -> np.ndarray:
    """Map PALETTE COLOR indices to ``(H, W, 3)`` uint8 with the header's colour LUT."""
    from pydicom.pixels import apply_color_lut

    rgb = apply_color_lut(np.asarray(array).astype(np.int64), header)
    bits = int(header.RedPaletteColorLookupTableDescriptor[2])
    scale = 255.0 / float(2**bits - 1)
    return np.clip(np.round(rgb.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def is_monochrome1(header: pydicom.Dataset | None) -> bool:
    """True when low stored values are displayed bright (MONOCHROME1)."""
    return header is not None and str(header.get("PhotometricInterpretation", "")) == "MONOCHROME1"


def n_frames(header: pydicom.Dataset) -> int:
    """Number of frames of a (multi-frame) DICOM file; 1 when the tag is absent."""
    return int(header.get("NumberOfFrames", 1) or 1)
