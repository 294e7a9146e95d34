"""Format detection and :class:`LoadMedicald`: MONAI ``LoadImaged`` with an explicit reader per format.

=========  ====================================================  ==========================================
format     reader                                                array after loading
=========  ====================================================  ==========================================
``pil``    ``PILReader(reverse_indexing=False)`` (PNG/JPEG/TIFF)   ``(H, W)`` or ``(H, W, 3)``, dtype kept
``dicom``  ``PydicomReader(swap_ij=False)`` (file or series dir)  ``(H, W)``, ``(F, H, W[, 3])``; modality
                                                                  LUT (slope/intercept) applied by MONAI
``nifti``  ``NibabelReader(as_closest_canonical=True)``           ``(X, Y, Z[, T])`` in RAS orientation
=========  ====================================================  ==========================================

``reverse_indexing=False`` keeps rows first, so a PNG is never transposed. EXIF orientation tags are
ignored (as by the benchmark code). 16-bit PNG/TIFF keep their values (``I;16`` → int32).
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
from PIL import Image

from ..errors import ImageReadError
from .dicom import display_info, read_header
from .records import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, has_suffix

FORMATS: tuple[str, ...] = ("pil", "dicom", "nifti")


def image_format(path: str | Path) -> str:
    """Return ``"pil"``, ``"dicom"`` or ``"nifti"`` for a file (or ``"dicom"`` for a series folder).

    Raises:
        ImageReadError: missing path or unsupported suffix.
    """
    p = Path(path)
    if p.is_dir():
        return "dicom"
    if not p.exists():
        raise ImageReadError(p, "file not found", "check the path (data sets are read in place)")
    if has_suffix(p, NIFTI_SUFFIXES):
        return "nifti"
    if has_suffix(p, DICOM_SUFFIXES):
        return "dicom"
    if has_suffix(p, IMAGE_SUFFIXES):
        return "pil"
    with p.open("rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return "dicom"
    supported = ", ".join(IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES)
    raise ImageReadError(p, f"unsupported file type {p.suffix!r}", f"use one of {supported}")


def _pil_converter(image: Image.Image) -> Image.Image:
    """Bring a Pillow image to a mode MONAI turns into a plain array (L, RGB, I or F)."""
    if image.mode in ("L", "RGB", "I", "F"):
        return image
    if image.mode.startswith("I;16"):
        return image.convert("I")
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGB")


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
        reader = PILReader(reverse_indexing=False, converter=_pil_converter)
    elif fmt == "dicom":
        reader = NativePydicomReader(swap_ij=False, prune_metadata=True)
    else:
        reader = NativeNibabelReader(as_closest_canonical=True)
    return LoadImaged(keys=key, reader=reader, image_only=True, dtype=None)


class LoadMedicald(MapTransform):
    """Load each key's file with the MONAI reader of its format; keep the path and format.

    Input: ``{key: path}``. Output: ``{key: np.ndarray}`` (see the module table for shapes) and
    ``{f"{key}_meta": {"path", "format"[, "dicom", "header"]}}`` (DICOM: display tags and the
    header without pixels, kept in memory only and dropped at the end of :func:`build_transforms`).
    A ``None`` value is left as ``None`` (optional masks).

    ``volume_cache`` NIfTI volumes / DICOM series stay in memory (keyed by path, mtime and size), so
    reading the slices of one volume in order decodes it once.

    Raises:
        ImageReadError: unreadable, empty or unsupported file (the message names it).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = True, volume_cache: int = 2) -> None:
        super().__init__(keys, allow_missing_keys)
        self._loaders: dict[tuple[Hashable, str], LoadImaged] = {}  # built on first use per format
        self._volumes: OrderedDict[tuple, np.ndarray] = OrderedDict()  # last NIfTI/series arrays read
        self.volume_cache = volume_cache

    def _read(self, key: Hashable, fmt: str, path: str) -> np.ndarray:
        """Read with the format's loader; NIfTI files and DICOM series are kept in a small LRU cache."""
        cache_key = None
        if fmt == "nifti" or Path(path).is_dir():
            st = Path(path).stat()
            cache_key = (path, st.st_mtime_ns, st.st_size)
            if cache_key in self._volumes:
                self._volumes.move_to_end(cache_key)
                return self._volumes[cache_key]
        if (key, fmt) not in self._loaders:
            self._loaders[(key, fmt)] = _make_loader(str(key), fmt)
        array = np.asarray(self._loaders[(key, fmt)]({key: path})[key])
        if cache_key is not None and self.volume_cache > 0:
            self._volumes[cache_key] = array
            while len(self._volumes) > self.volume_cache:
                self._volumes.popitem(last=False)
        return array

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            path = out[key]
            if path is None:
                continue
            fmt = image_format(str(path))
            if Path(str(path)).is_file() and Path(str(path)).stat().st_size == 0:
                raise ImageReadError(path, "file is empty (0 bytes)", "re-download or remove it")
            meta: dict[str, object] = {"path": str(path), "format": fmt}
            if fmt == "dicom":
                header = read_header(str(path))
                meta["header"] = header
                meta["dicom"] = {**display_info(header), "is_series": Path(str(path)).is_dir()}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loaded = self._read(key, fmt, str(path))
            except ImageReadError:
                raise
            except Exception as exc:
                raise ImageReadError(path, f"cannot be read as {fmt} ({type(exc).__name__}: {exc})",
                                     "check that the file is complete and of the format its name says"
                                     ) from exc
            out[key] = loaded
            out[f"{key}_meta"] = meta
        return out
