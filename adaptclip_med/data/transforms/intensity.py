"""Intensity mapping to 8 bit: window presets, DICOM-style windowing, percentile clipping.

The AdaptCLIP preprocessing works on 8-bit images (spec §1), so every scan is mapped to ``[0, 255]``
here, before the Pillow resize. Rules (``window`` argument of :func:`build_transforms`):

* ``None`` (default): 8-bit images are kept bit-exact; DICOM uses its VOI LUT sequence, else its first
  WindowCenter/WindowWidth pair, else percentile clipping; everything else (16-bit PNG/TIFF, float
  TIFF, NIfTI) uses percentile clipping ``(0.5, 99.5)``.
* a preset name (:data:`WINDOW_PRESETS`, in HU, for CT): ``"brain"``, ``"subdural"``, ``"lung"``,
  ``"mediastinum"``, ``"abdomen"``, ``"bone"``.
* ``(center, width)``: an explicit window, in the units after the modality LUT.
* ``"percentile"`` or ``("percentile", low, high)``; ``"minmax"``.
* a **list** of three presets / ``(center, width)`` pairs, e.g. ``["brain", "subdural", "bone"]``:
  multi-window RGB, one window per channel (instead of repeating one grey channel).

Windowing follows DICOM PS3.3 C.11.2.1.2 (linear, with its ``-0.5`` / ``w-1`` offsets).

NaN (:func:`nan_as_background`): a grey float image (a NIfTI slice, a float TIFF) may hold NaN
*outside* the anatomy (common after skull stripping or registration): NaN connected to the image's
edge through NaN pixels is background and takes the background value (the volume's, else the image's,
lowest finite value); percentile / min-max ranges ignore it. The image is refused only when the scored
region itself is NaN: every pixel NaN, or NaN enclosed by finite pixels (a hole inside the anatomy).
Infinite values are always refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from adaptclip_med.runtime.errors import ImageReadError

#: ``name: (center, width)`` in Hounsfield units (radiology teaching values).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (50.0, 400.0),
    "bone": (400.0, 1800.0),
}
DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)

WindowSpec = str | tuple | None


def check_finite(array: np.ndarray, source: str) -> None:
    """Raise :class:`ImageReadError` naming ``source`` when ``array`` holds NaN or inf."""
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            msg = f"contains {bad} NaN/inf value(s) of {array.size}"
            raise ImageReadError(source, msg, "clean the file (e.g. replace NaN by the background value)")


def nan_as_background(array: np.ndarray, source: str, background: float | None = None) -> np.ndarray:
    """``array`` with its NaN outside the anatomy set to ``background`` (see the module notes).

    Args:
        array: ``(H, W)`` grey image; other dtypes / shapes and NaN-free images are returned unchanged.
        background: the fill value; ``None``: the lowest finite value of ``array``.

    Raises:
        ImageReadError: every pixel NaN, or NaN enclosed by finite pixels (inside the scored region).
    """
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        return array
    nan = np.isnan(array)
    if not nan.any():
        return array
    if nan.all():
        raise ImageReadError(source, f"the slice is entirely NaN ({array.size} values): nothing to score",
                             "score another slice, or fill the volume's NaN with its background value")
    from scipy import ndimage

    inside = ndimage.binary_fill_holes(~nan) & nan  # NaN not connected to the edge: a hole in the anatomy
    if inside.any():
        msg = (f"contains {int(inside.sum())} NaN value(s) inside the anatomy (enclosed by finite values; "
               f"{int(nan.sum())} NaN in all)")
        raise ImageReadError(source, msg, "clean the file (NaN is background only outside the anatomy)")
    finite = array[~nan]
    fill = float(np.min(finite[np.isfinite(finite)], initial=0.0)) if background is None else float(background)
    return np.where(nan, np.asarray(fill, dtype=array.dtype), array)


def colour_to_uint8(array: np.ndarray, bits: int, source: str) -> np.ndarray:
    """``(H, W, 3)`` colour of any depth → uint8, scaled (never clipped) by its sample depth.

    Integers are scaled by ``255 / (2**bits − 1)`` (``bits``: DICOM BitsStored, TIFF BitsPerSample;
    values above ``2**bits − 1`` widen the scale to the dtype's range); floats in ``[0, 1]`` by 255,
    other floats by their min–max. uint8 with ``bits == 8`` is returned unchanged.

    Raises:
        ImageReadError: NaN/inf values.
    """
    check_finite(array, source)
    if array.dtype == np.uint8 and bits <= 8:
        return array
    x = np.asarray(array, dtype=np.float64)
    if np.issubdtype(array.dtype, np.integer):
        top = float(2 ** max(int(bits), 1) - 1)
        if x.max(initial=0) > top:
            top = float(np.iinfo(array.dtype).max)
        return np.clip(np.round(x / top * 255.0), 0, 255).astype(np.uint8)
    if x.min(initial=0) >= 0 and x.max(initial=0) <= 1:
        return np.round(x * 255.0).astype(np.uint8)
    return range_to_uint8(x, float(x.min()), float(x.max()))


def window_to_uint8(array: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM linear window ``(center, width)`` → uint8, same shape.

    Raises:
        ValueError: ``width < 1``.
    """
    if width < 1:
        msg = f"window width {width} < 1; expected a width of at least 1"
        raise ValueError(msg)
    x = np.asarray(array, dtype=np.float64)
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    scaled = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    scaled = np.where(x <= low, 0.0, np.where(x > high, 255.0, scaled))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def range_to_uint8(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to ``[low, high]`` and scale linearly to uint8 (constant images → 0)."""
    x = np.asarray(array, dtype=np.float64)
    if high <= low:
        return np.zeros(x.shape, dtype=np.uint8)
    return np.clip(np.round((np.clip(x, low, high) - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)


def percentile_to_uint8(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip at the ``low``/``high`` percentiles of ``array`` and scale to uint8."""
    lo, hi = np.percentile(np.asarray(array, dtype=np.float64), [low, high])
    return range_to_uint8(array, float(lo), float(hi))


def resolve_window(window: WindowSpec) -> tuple[str, tuple[float, ...]]:
    """Normalise a window argument to ``(kind, params)``: kind in tags/window/percentile/minmax.

    Raises:
        ValueError: unknown preset name or malformed tuple (the message lists the valid forms).
    """
    if window is None:
        return "tags", ()
    if isinstance(window, list) and len(window) == 3:  # multi-window RGB: one window per channel
        params: list[float] = []
        for spec in window:
            kind, values = resolve_window(spec)
            if kind != "window":
                msg = f"multi-window {window!r}: each channel needs a preset or (center, width), got {spec!r}"
                raise ValueError(msg)
            params += values
        return "multi", tuple(params)
    if isinstance(window, str):
        name = window.lower()
        if name in WINDOW_PRESETS:
            return "window", WINDOW_PRESETS[name]
        if name == "percentile":
            return "percentile", DEFAULT_PERCENTILES
        if name in ("minmax", "tags"):
            return name, ()
    elif isinstance(window, Sequence) and len(window) == 3 and window[0] == "percentile":
        return "percentile", (float(window[1]), float(window[2]))
    elif isinstance(window, Sequence) and len(window) == 2:
        return "window", (float(window[0]), float(window[1]))
    valid = ", ".join(WINDOW_PRESETS)
    msg = (f"window {window!r} not understood; expected None, a preset ({valid}), (center, width), "
           f"'percentile', ('percentile', low, high), 'minmax' or a list of 3 windows")
    raise ValueError(msg)


def to_uint8(array: np.ndarray, kind: str, params: tuple[float, ...], source: str) -> np.ndarray:
    """Map a scalar image to uint8 with a resolved window (``kind="tags"`` falls back to percentile).

    8-bit input with ``kind`` ``tags`` is returned unchanged (bit-exact with the authors' pipeline).
    """
    check_finite(array, source)
    if kind == "tags" and array.dtype == np.uint8:
        return array
    if kind == "window":
        return window_to_uint8(array, params[0], params[1])
    if kind == "multi":
        return np.stack([window_to_uint8(array, params[i], params[i + 1]) for i in (0, 2, 4)], axis=-1)
    if kind == "minmax":
        return range_to_uint8(array, float(np.min(array)), float(np.max(array)))
    low, high = params if kind == "percentile" else DEFAULT_PERCENTILES
    return percentile_to_uint8(array, low, high)
