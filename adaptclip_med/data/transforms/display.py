"""``ToUint8d``: any loaded 2-D image (DICOM, NIfTI slice, 8/16-bit, float) → 8-bit grey or RGB.

See :mod:`adaptclip_med.data.transforms.intensity` for the window rules. Percentile / min-max ranges of a
slice are taken over its whole volume (cached per file), so empty slices are not stretched. NaN outside
the anatomy is background (:func:`~adaptclip_med.data.transforms.intensity.nan_as_background`: the
volume's lowest finite value); the volume's ranges are taken over its finite values.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from adaptclip_med.data.readers import dicom_header as dcm
from adaptclip_med.data.transforms.intensity import (
    DEFAULT_PERCENTILES,
    WindowSpec,
    check_finite,
    colour_to_uint8,
    nan_as_background,
    range_to_uint8,
    resolve_window,
    to_uint8,
)


class ToUint8d(MapTransform):
    """Map ``data[key]`` (``(H, W)`` or ``(H, W, 3)``, any dtype) to uint8 of the same shape.

    Args:
        keys: image keys (not masks).
        window: see :func:`~adaptclip_med.data.transforms.intensity.resolve_window`.
    """

    def __init__(self, keys: KeysCollection, window: WindowSpec = None, cache_size: int = 32,
                 allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.kind, self.params = resolve_window(window)
        self._ranges: OrderedDict[tuple, tuple[float, float]] = OrderedDict()
        self.cache_size = cache_size

    def _finite(self, meta: Mapping[str, object]) -> np.ndarray:
        """The volume's values without NaN (background); infinite values are refused."""
        volume = np.asarray(meta["volume"])
        if not np.issubdtype(volume.dtype, np.floating):
            return volume
        if np.isinf(volume).any():
            check_finite(volume, str(meta.get("path")))
        finite = volume[~np.isnan(volume)]
        if finite.size == 0:
            check_finite(volume, str(meta.get("path")))  # an all-NaN volume: nothing to score
        return finite

    def _background(self, meta: Mapping[str, object]) -> float:
        """The lowest finite value of the volume (NaN outside the anatomy takes it), cached per file."""
        volume = np.asarray(meta["volume"])
        key = (meta.get("path"), volume.shape, "background", ())
        if key not in self._ranges:
            finite = volume[np.isfinite(volume)]
            self._ranges[key] = (float(finite.min()) if finite.size else 0.0, 0.0)
        return self._ranges[key][0]

    def _volume_range(self, meta: Mapping[str, object], kind: str, params: tuple) -> tuple[float, float]:
        volume = np.asarray(meta["volume"])
        key = (meta.get("path"), volume.shape, kind, params)
        if key not in self._ranges:
            volume = self._finite(meta)
            if kind == "minmax":
                rng = (float(volume.min()), float(volume.max()))
            else:
                lo, hi = np.percentile(volume.astype(np.float32), list(params))
                rng = (float(lo), float(hi))
            self._ranges[key] = rng
            while len(self._ranges) > self.cache_size:
                self._ranges.popitem(last=False)
        return self._ranges[key]

    def convert(self, array: np.ndarray, meta: Mapping[str, object]) -> np.ndarray:
        """Return the uint8 image for one loaded 2-D array and its ``*_meta`` dict."""
        source = str(meta.get("path", "image"))
        header = meta.get("header")
        info = meta.get("dicom", {})
        kind, params = self.kind, self.params
        if header is not None and info.get("PhotometricInterpretation") == "PALETTE COLOR":
            return dcm.palette_to_rgb(array, header)
        if array.ndim == 3:
            return colour_to_uint8(array, int(meta.get("bits", 8) or 8), source)
        if np.issubdtype(array.dtype, np.floating) and np.isnan(array).any():  # NaN outside the anatomy
            array = nan_as_background(array, source, self._background(meta) if "volume" in meta else None)
        out = None
        if kind == "multi":
            out = to_uint8(array, kind, params, source)
        elif kind == "tags" and header is not None:
            check_finite(array, source)
            out = dcm.voi_to_uint8(array, header)
        if out is None:
            if kind == "tags" and array.dtype != np.uint8:
                kind, params = "percentile", DEFAULT_PERCENTILES
            if "volume" in meta and kind in ("percentile", "minmax"):
                check_finite(array, source)
                out = range_to_uint8(array, *self._volume_range(meta, kind, params))
            else:
                out = to_uint8(array, kind, params, source)
        if dcm.is_monochrome1(header):
            out = 255 - out
        return out

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            if out[key] is not None:
                out[key] = self.convert(np.asarray(out[key]), out.get(f"{key}_meta", {}))
        return out
