"""``LoadMedicald``: one loader for every format, chosen by content (:mod:`adaptclip_med.data.readers.formats`).

=========  ==========================================================  =====================================
format     reader                                                      array after loading
=========  ==========================================================  =====================================
``pil``    MONAI ``PILReader(reverse_indexing=False)`` (PNG/JPEG/BMP)  ``(H, W)`` or ``(H, W, 3)``, dtype kept
``tiff``   tifffile, first page (:mod:`~adaptclip_med.data.readers.tiff`)      ``(H, W)`` or ``(H, W, 3)``, dtype kept
``dicom``  file: pydicom + its pixel plugins, ``apply_modality_lut``   ``(H, W)``, ``(F, H, W[, 3])``;
           (:mod:`~adaptclip_med.data.readers.dicom_pixels`); series     series folder: ``(H, W, N)``, slices
           folder: that reader file by file, non-images skipped,       along the slice normal
           stacked (:mod:`~adaptclip_med.data.readers.dicom_series`)
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
from monai.data import NibabelReader, PILReader
from monai.transforms import LoadImaged, MapTransform

from adaptclip_med.data.readers.dicom_header import display_info
from adaptclip_med.data.readers.dicom_pixels import read_dicom
from adaptclip_med.data.readers.dicom_series import SeriesScan, read_series
from adaptclip_med.data.readers.formats import FORMATS, image_format, truncation_problem
from adaptclip_med.data.readers.pil_modes import pil_converter
from adaptclip_med.data.readers.tiff import read_tiff
from adaptclip_med.runtime.errors import ImageReadError, exception_line

__all__ = ["FORMATS", "LoadMedicald", "image_format", "pil_converter"]

_FORMAT_NAMES = {"pil": "PNG/JPEG/BMP", "tiff": "TIFF", "dicom": "DICOM", "nifti": "NIfTI"}
_RASTER_KINDS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}


def series_meta(scan: SeriesScan) -> dict[str, object]:
    """Loader metadata of a series: the first slice's display tags, and per slice its own header.

    ``"series"`` holds ``headers`` / ``display`` (``N`` data sets and their display tags, swapped in for
    the chosen slice by :class:`~adaptclip_med.data.transforms.slicing.SelectSliced`), ``files`` (``N``
    paths in stacking order), ``positions`` (``N`` mm along the normal, or ``None``) and ``skipped``
    (``(path, reason)`` of the folder's files left out: SEG, SR, RT, multi-frame, other series).
    """
    headers = scan.headers
    display = [{**display_info(ds), "is_series": True} for ds in headers]
    return {"header": headers[0], "dicom": display[0], "bits": int(headers[0].get("BitsStored", 8) or 8),
            "series": {"headers": headers, "display": display, "files": [str(p) for p in scan.files],
                       "positions": scan.positions, "skipped": scan.skipped}}


def decode_problem(exc: BaseException, fmt: str, path: str | Path) -> str:
    """One line for a file that the ``fmt`` reader could not decode, without the file's folder.

    A cut file is named as such ("PNG file is truncated or corrupt"); other failures keep the
    innermost library message (``cannot be read as PNG/JPEG/BMP (OSError: ...)``).
    """
    kind = _RASTER_KINDS.get(Path(path).suffix.lower(), _FORMAT_NAMES[fmt]) if fmt == "pil" else _FORMAT_NAMES[fmt]
    line = exception_line(exc).replace(str(path), Path(path).name)  # MONAI names the whole path
    return truncation_problem(exc, kind) or f"cannot be read as {_FORMAT_NAMES[fmt]} ({line})"


class _NativeOrder:
    """Reader mixin: big-endian arrays (nibabel samples) → native order (torch needs it)."""

    def get_data(self, img):
        array, meta = super().get_data(img)
        if array.dtype.byteorder not in ("=", "|"):
            array = array.astype(array.dtype.newbyteorder("="))
        return array, meta


class NativeNibabelReader(_NativeOrder, NibabelReader):
    """MONAI ``NibabelReader`` returning native byte order."""


def _make_loader(key: str, fmt: str) -> LoadImaged:
    """MONAI ``LoadImaged`` for ``fmt`` ``"pil"`` or ``"nifti"`` (DICOM and TIFF have their own readers)."""
    # MONAI's LoadImage registers its fallback readers too, and its GPU DICOM decoder warns on every
    # construction that nvImageCodec is absent: not actionable here, so silence that one logger.
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    if fmt == "pil":
        reader = PILReader(reverse_indexing=False, converter=pil_converter)
    else:
        reader = NativeNibabelReader(as_closest_canonical=True)
    with warnings.catch_warnings():  # the same notice, as a UserWarning, from reader registration
        warnings.filterwarnings("ignore", message=".*nvImageCodec.*", category=UserWarning)
        return LoadImaged(keys=key, reader=reader, image_only=True, dtype=None)


class LoadMedicald(MapTransform):
    """Load each key's file with the reader of its format; keep the path and format.

    Input: ``{key: path}``. Output: ``{key: np.ndarray}`` (see the module table for shapes) and
    ``{f"{key}_meta": {"path", "format", "bits"[, "dicom", "header"[, "series"]]}}`` (``bits``: sample depth of
    colour images, for scaling; DICOM: display tags and the data set, kept in memory only and dropped
    at the end of :func:`build_transforms`). A ``None`` value is left as ``None`` (optional masks).

    ``volume_cache`` NIfTI volumes, DICOM files and series stay in memory (keyed by path, mtime and
    size; a series by its files'), so reading the slices or frames of one volume in order decodes it once.
    A series folder is read by :func:`~adaptclip_med.data.readers.dicom_series.read_series` (its meta
    as :func:`series_meta`).

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
        if fmt == "dicom" and Path(path).is_dir():
            array, scan = read_series(path)
            return array, series_meta(scan)
        if fmt == "dicom":
            array, ds = read_dicom(path)
            return array, {"header": ds, "dicom": {**display_info(ds), "is_series": False},
                           "bits": int(ds.get("BitsStored", 8) or 8)}
        if fmt == "tiff":
            array, info = read_tiff(path)
            return array, {"bits": info["bits"], "tiff": info}
        if (key, fmt) not in self._loaders:
            self._loaders[(key, fmt)] = _make_loader(str(key), fmt)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = np.asarray(self._loaders[(key, fmt)]({key: path})[key])
        except Exception as exc:  # MONAI wraps reader errors in nested RuntimeErrors: keep the root's line
            raise ImageReadError(path, decode_problem(exc, fmt, path),
                                 "re-download or re-export the complete file") from exc
        return array, {"bits": 8}

    def _read(self, key: Hashable, fmt: str, path: str) -> tuple[np.ndarray, dict[str, object]]:
        """:meth:`_load` through a small LRU cache for volumes, DICOM files and series."""
        if fmt not in ("nifti", "dicom") or self.volume_cache <= 0:
            return self._load(key, fmt, path)
        p = Path(path)
        members = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
        stats = [(f.name, f.stat()) for f in members]  # a series: any file changed, added or removed
        cache_key = (path, tuple((name, st.st_mtime_ns, st.st_size) for name, st in stats))
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
