"""TIFF through tifffile: multi-sample RGB (CVC-ClinicDB ``Original/*.tif``, which Pillow cannot open),
8/16/32-bit integer, float, palette, min-is-white, and ``Ground Truth/*.tif`` masks.

The first page (image file directory) is read; its samples are brought to ``(H, W)`` or ``(H, W, 3)``:
planar (``SYX``) layouts are moved to samples-last, extra samples (alpha) are dropped, two-sample
(grey + alpha) images keep the grey sample, palette images are mapped through their colour map, and
MINISWHITE grey is inverted so that high = bright. Values keep their dtype; the display step
(:mod:`adaptclip_med.data.transforms.display`) scales colour by ``bits`` and windows grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adaptclip_med.data.readers.formats import truncation_problem
from adaptclip_med.data.readers.pil_modes import pil_converter
from adaptclip_med.runtime.errors import ImageReadError, exception_line


def read_tiff(path: str | Path) -> tuple[np.ndarray, dict[str, object]]:
    """Return ``(array, info)``: ``(H, W)`` or ``(H, W, 3)`` and ``{"bits", "photometric", "pages"}``.

    Raises:
        ImageReadError: truncated or corrupt file, unsupported compression, or an unexpected layout.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            array = np.asarray(page.asarray())
            axes = page.axes
            photometric = page.photometric.name if page.photometric is not None else "MINISBLACK"
            bits = int(page.bitspersample)
            colormap = page.colormap
            n_pages = len(tif.pages)
    except ValueError as exc:
        if "imagecodecs" not in str(exc):
            raise _unreadable(path, exc) from exc
        return _read_with_pillow(path, exc)
    except Exception as exc:  # tifffile raises TiffFileError, struct.error, ... on bad files
        raise _unreadable(path, exc) from exc
    array = _to_samples_last(array, axes, path, cmyk=photometric == "SEPARATED")
    if photometric == "PALETTE" and colormap is not None and array.ndim == 2:
        cmap = np.asarray(colormap)  # (3, 2**bits), 16-bit entries
        array = cmap[:, array].transpose(1, 2, 0)
        bits = 16
    elif photometric == "MINISWHITE" and array.ndim == 2:
        top = (2**bits - 1) if np.issubdtype(array.dtype, np.integer) else float(np.nanmax(array))
        array = (top - array.astype(np.float64)).astype(array.dtype) if top else array
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array), {"bits": bits, "photometric": photometric, "pages": n_pages}


def _unreadable(path: str | Path, exc: BaseException) -> ImageReadError:
    problem = truncation_problem(exc, "TIFF") or f"cannot be read as TIFF ({exception_line(exc)})"
    return ImageReadError(path, problem, "re-export or re-download the complete file")


def _read_with_pillow(path: str | Path, cause: Exception) -> tuple[np.ndarray, dict[str, object]]:
    """LZW/JPEG-compressed TIFF without the optional ``imagecodecs`` package: Pillow decodes those."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            array = np.asarray(pil_converter(img))
    except Exception as exc:
        raise ImageReadError(path, f"TIFF compression not decodable here ({exception_line(cause)})",
                             "pip install imagecodecs") from exc
    bits = 16 if mode.startswith("I;16") else 32 if mode in ("I", "F") else 8
    return np.ascontiguousarray(array), {"bits": bits, "photometric": mode, "pages": 1}


def _to_samples_last(array: np.ndarray, axes: str, path: str | Path, cmyk: bool = False) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` out of one page's array and its tifffile ``axes`` string.

    CMYK (``SEPARATED``) is converted to RGB as ``(max − C)(max − K)/max`` per channel.
    """
    squeezed_axes = "".join(a for a, n in zip(axes, array.shape, strict=True) if n != 1 or a in "YX")
    array = array.reshape([n for a, n in zip(axes, array.shape, strict=True) if n != 1 or a in "YX"])
    if squeezed_axes.startswith("S") and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if cmyk and array.ndim == 3 and array.shape[-1] >= 4:
        top = float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
        c = array[..., :4].astype(np.float64)
        rgb = (top - c[..., :3]) * (top - c[..., 3:4]) / top
        array = np.round(rgb).astype(array.dtype) if top > 1 else rgb
    if array.ndim == 3 and array.shape[-1] == 2:
        array = array[..., 0]  # grey + alpha
    elif array.ndim == 3 and array.shape[-1] >= 4:
        array = array[..., :3]  # RGB + alpha / extra samples
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        msg = f"TIFF page of shape {tuple(array.shape)} (axes {axes}); expected a grey or RGB image"
        raise ImageReadError(path, msg, "save one 2-D grey or RGB image per file")
    return array
