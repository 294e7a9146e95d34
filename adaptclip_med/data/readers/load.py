"""``LoadMedicald``: one loader for every format, chosen by content (:mod:`adaptclip_med.data.readers.formats`).

=========  ==========================================================  =====================================
format     reader                                                      array after loading
=========  ==========================================================  =====================================
``pil``    MONAI ``PILReader(reverse_indexing=False)`` (PNG/JPEG/BMP)  ``(H, W)`` or ``(H, W, 3)``, dtype kept
``tiff``   tifffile, first page (:mod:`~adaptclip_med.data.readers.tiff`)      ``(H, W)`` or ``(H, W, 3)``, dtype kept
``dicom``  file: pydicom + its pixel plugins, ``apply_modality_lut``   ``(H, W)``, ``(F, H, W[, 3])``
           (:mod:`~adaptclip_med.data.readers.dicom_pixels`); series folder:     ``(H, W, N)`` (rescale applied)
           MONAI ``PydicomReader(swap_ij=False)``
``nifti``  MONAI ``NibabelReader(as_closest_canonical=True)``          ``(X, Y, Z[, T])`` in RAS orientation
=========  ==========================================================  =====================================

``reverse_indexing=False`` keeps rows first, so a PNG is never transposed. EXIF orientation tags are
ignored (as by the benchmark code). Pillow modes are converted explicitly (:func:`pil_converter`).
Every failure is a one-line :class:`~adaptclip_med.runtime.errors.ImageReadError` (``NotAnImageError`` for
DICOM objects that are not images), never a reader's traceback.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
from monai.config import KeysCollection
from monai.data import NibabelReader, PILReader, PydicomReader
from monai.transforms import LoadImaged, MapTransform

from adaptclip_med.data.readers.dicom_header import display_info, read_header
from adaptclip_med.data.readers.dicom_pixels import check_is_image, read_dicom
from adaptclip_med.data.readers.formats import FORMATS, image_format, truncation_problem
from adaptclip_med.data.readers.pil_modes import pil_converter
from adaptclip_med.data.readers.tiff import read_tiff
from adaptclip_med.runtime.errors import ImageReadError, exception_line

__all__ = ["FORMATS", "LoadMedicald", "image_format", "pil_converter"]

_FORMAT_NAMES = {"pil": "PNG/JPEG/BMP", "tiff": "TIFF", "dicom": "DICOM", "nifti": "NIfTI"}
_RASTER_KINDS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}


def decode_problem(exc: BaseException, fmt: str, path: str | Path) -> str:
    """One line for a file that the ``fmt`` reader could not decode, without the file's folder.

    A cut file is named as such ("PNG file is truncated or corrupt"); other failures keep the
    innermost library message (``cannot be read as PNG/JPEG/BMP (OSError: ...)``).
    """
    kind = _RASTER_KINDS.get(Path(path).suffix.lower(), _FORMAT_NAMES[fmt]) if fmt == "pil" else _FORMAT_NAMES[fmt]
    line = exception_line(exc).replace(str(path), Path(path).name)  # MONAI names the whole path
    return truncation_problem(exc, kind) or f"cannot be read as {_FORMAT_NAMES[fmt]} ({line})"


class _NativeOrder:
    """Reader mixin: big-endian arrays (nibabel/pydicom samples) → native order (torch needs it)."""

    def get_data(self, img):
        array, meta = super().get_data(img)
        if array.dtype.byteorder not in ("=", "|"):
            array = array.astype(array.dtype.newbyteorder("="))
        return array, meta


class NativePydicomReader(_NativeOrder, PydicomReader):
    """MONAI ``PydicomReader`` returning native byte order."""


class NativeNibabelReader(_NativeOrder, NibabelReader):
    """MONAI ``NibabelReader`` returning native byte order."""


def _make_loader(key: str, fmt: str) -> LoadImaged:
    # MONAI's LoadImage registers its fallback readers too, and its GPU DICOM decoder warns on every
    # construction that nvImageCodec is absent: not actionable here, so silence that one logger.
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    if fmt == "pil":
        reader = PILReader(reverse_indexing=False, converter=pil_converter)
    elif fmt == "dicom":
        reader = NativePydicomReader(swap_ij=False, prune_metadata=True)
    else:
        reader = NativeNibabelReader(as_closest_canonical=True)
    with warnings.catch_warnings():  # the same notice, as a UserWarning, from reader registration
        warnings.filterwarnings("ignore", message=".*nvImageCodec.*", category=UserWarning)
        return LoadImaged(keys=key, reader=reader, image_only=True, dtype=None)


class LoadMedicald(MapTransform):
    """Load each key's file with the reader of its format; keep the path and format.

    Input: ``{key: path}``. Output: ``{key: np.ndarray}`` (see the module table for shapes) and
    ``{f"{key}_meta": {"path", "format", "bits"[, "dicom", "header"]}}`` (``bits``: sample depth of
    colour images, for scaling; DICOM: display tags and the data set, kept in memory only and dropped
    at the end of :func:`build_transforms`). A ``None`` value is left as ``None`` (optional masks).

    ``volume_cache`` NIfTI volumes, DICOM files and series stay in memory (keyed by path, mtime and
    size), so reading the slices or frames of one volume in order decodes it once.

    Raises:
        ImageReadError: unreadable, empty or unsupported file (the message names it).
        NotAnImageError: a DICOM object that is not an image (SEG, RT, SR, DICOMDIR, ...).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = True, volume_cache: int = 2) -> None:
        super().__init__(keys, allow_missing_keys)
        self._loaders: dict[tuple[Hashable, str], LoadImaged] = {}  # built on first use per format
        self._volumes: OrderedDict[tuple, tuple[np.ndarray, dict]] = OrderedDict()  # last volumes read
        self.volume_cache = volume_cache

    def _load(self, key: Hashable, fmt: str, path: str) -> tuple[np.ndarray, dict[str, object]]:
        """Array and format-specific metadata of one file or series folder."""
        if fmt == "dicom" and not Path(path).is_dir():
            array, ds = read_dicom(path)
            return array, {"header": ds, "dicom": {**display_info(ds), "is_series": False},
                           "bits": int(ds.get("BitsStored", 8) or 8)}
        if fmt == "tiff":
            array, info = read_tiff(path)
            return array, {"bits": info["bits"], "tiff": info}
        extra: dict[str, object] = {"bits": 8}
        if fmt == "dicom":
            header = read_header(path)
            check_is_image(header, path, has_pixels=False)
            extra = {"header": header, "dicom": {**display_info(header), "is_series": True},
                     "bits": int(header.get("BitsStored", 8) or 8)}
        if (key, fmt) not in self._loaders:
            self._loaders[(key, fmt)] = _make_loader(str(key), fmt)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = np.asarray(self._loaders[(key, fmt)]({key: path})[key])
        except Exception as exc:  # MONAI wraps reader errors in nested RuntimeErrors: keep the root's line
            raise ImageReadError(path, decode_problem(exc, fmt, path),
                                 "re-download or re-export the complete file") from exc
        return array, extra

    def _read(self, key: Hashable, fmt: str, path: str) -> tuple[np.ndarray, dict[str, object]]:
        """:meth:`_load` through a small LRU cache for volumes, DICOM files and series."""
        if fmt not in ("nifti", "dicom") or self.volume_cache <= 0:
            return self._load(key, fmt, path)
        st = Path(path).stat()
        cache_key = (path, st.st_mtime_ns, st.st_size)
        if cache_key in self._volumes:
            self._volumes.move_to_end(cache_key)
            return self._volumes[cache_key]
        loaded = self._load(key, fmt, path)
        self._volumes[cache_key] = loaded
        while len(self._volumes) > self.volume_cache:
            self._volumes.popitem(last=False)
        return loaded

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            path = out[key]
            if path is None:
                continue
            fmt = image_format(str(path))
            array, extra = self._read(key, fmt, str(path))
            out[key] = array
            out[f"{key}_meta"] = {"path": str(path), "format": fmt, **extra}
        return out
