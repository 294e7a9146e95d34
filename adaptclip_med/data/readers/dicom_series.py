"""A DICOM series folder, read file by file through the single-file reader and stacked along the slice normal.

Every DICOM file of the folder (``*.dcm`` / ``*.dicom`` or a ``DICM`` preamble:
:func:`~adaptclip_med.data.readers.dicom_header.series_files`) goes through
:func:`~adaptclip_med.data.readers.dicom_pixels.read_dicom`, the reader of a DICOM file given alone: the same
pixel plugins and pydicom's ``apply_modality_lut`` per slice (RescaleSlope/Intercept *or* a Modality LUT
Sequence), so slice ``k`` of a series holds exactly the values of its file read on its own. Each slice
keeps its own header (VOI LUT, window, VOI LUT Function, MONOCHROME1) for display.

* Objects that are not images (Segmentation, SR, RT Structure Set / Dose, presentation states, ...:
  :class:`~adaptclip_med.runtime.errors.NotAnImageError`) and multi-frame files are skipped and named in
  :attr:`SeriesScan.skipped`; so are the files of other series when image files of several
  SeriesInstanceUIDs share the folder (the series with the most slices is read).
* Order (:func:`sort_slices`): ImagePositionPatient projected on the slice normal (the cross product of
  the ImageOrientationPatient rows); without that geometry on every slice, InstanceNumber; else the
  file name. Equal keys are ordered by file name.
* A file that cannot be read, or a slice whose size differs from the others, is an
  :class:`~adaptclip_med.runtime.errors.ImageReadError` naming it (a missing slice would shift the
  volume's geometry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from adaptclip_med.data.readers.dicom_header import n_frames, series_files
from adaptclip_med.data.readers.dicom_pixels import PIXEL_KEYWORDS, check_is_image, read_dataset, read_dicom
from adaptclip_med.runtime.errors import ImageReadError, NotAnImageError

#: ``(path, data set)`` of one file of a series.
Member = tuple[Path, pydicom.Dataset]


def slice_normal(ds: pydicom.Dataset) -> np.ndarray | None:
    """``(3,)`` unit-free normal of a slice (row × column direction cosines), or ``None`` without IOP."""
    try:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        return None
    if iop.shape != (6,) or not np.isfinite(iop).all():
        return None
    return np.cross(iop[:3], iop[3:])


def slice_position(ds: pydicom.Dataset, normal: np.ndarray | None = None) -> float | None:
    """Position of a slice along ``normal`` (default: its own), in mm; ``None`` without geometry tags."""
    normal = slice_normal(ds) if normal is None else normal
    try:
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        return None
    if normal is None or ipp.shape != (3,) or not np.isfinite(ipp).all():
        return None
    return float(np.dot(normal, ipp))


def _normal(members: list[Member]) -> np.ndarray | None:
    """The normal of the series: the first slice (by file name) that has one."""
    for _, ds in sorted(members, key=lambda m: str(m[0])):
        if (normal := slice_normal(ds)) is not None:
            return normal
    return None


def _instance(ds: pydicom.Dataset) -> int | None:
    try:
        return int(ds.InstanceNumber)
    except (AttributeError, TypeError, ValueError):
        return None


def sort_slices(members: list[Member]) -> list[Member]:
    """Slices in stacking order: by position along the series' normal; else InstanceNumber; else path.

    Positions are projected on one normal (the first slice's, by file name) so that every slice is
    measured along the same axis. Equal keys are ordered by path.
    """
    normal = _normal(members)
    positions = [slice_position(ds, normal) for _, ds in members] if normal is not None else [None]
    if None not in positions:
        keyed = zip(positions, members, strict=True)
        return [m for _, m in sorted(keyed, key=lambda t: (t[0], str(t[1][0])))]
    numbers = [_instance(ds) for _, ds in members]
    if None not in numbers:
        keyed = zip(numbers, members, strict=True)
        return [m for _, m in sorted(keyed, key=lambda t: (t[0], str(t[1][0])))]
    return sorted(members, key=lambda m: str(m[0]))


@dataclass(frozen=True)
class SeriesScan:
    """The image slices of a series folder in stacking order, and the files left out.

    Attributes:
        folder: the series folder.
        slices: ``N`` ``(path, data set)`` pairs in stacking order (headers: no pixel data kept).
        skipped: ``(path, reason)`` of every DICOM file of the folder that is not stacked.
        positions: ``N`` positions along the slice normal (mm), or ``None`` when the slices were
            ordered by InstanceNumber or file name.
    """

    folder: Path
    slices: list[Member]
    skipped: list[tuple[str, str]]
    positions: list[float] | None

    @property
    def files(self) -> list[Path]:
        """The ``N`` slice files in stacking order."""
        return [p for p, _ in self.slices]

    @property
    def headers(self) -> list[pydicom.Dataset]:
        """The ``N`` slice data sets in stacking order."""
        return [ds for _, ds in self.slices]


def _scan(folder: Path, read: Callable[[Path], pydicom.Dataset]) -> SeriesScan:
    """Read every DICOM file of ``folder`` with ``read``, keep the largest series' single-frame images."""
    files = series_files(folder)
    if not files:
        raise ImageReadError(folder, "folder holds no DICOM files", "point to a DICOM series folder")
    skipped: list[tuple[str, str]] = []
    by_series: dict[str, list[Member]] = {}
    for path in files:
        try:
            ds = read(path)
        except NotAnImageError as exc:
            skipped.append((str(path), f"{exc.problem}; skipped (not a slice of the series)"))
            continue
        if n_frames(ds) > 1:
            skipped.append((str(path), f"multi-frame DICOM file ({n_frames(ds)} frames) inside a series folder; "
                                       "skipped (read it on its own)"))
            continue
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    if not by_series:
        raise ImageReadError(folder, f"folder holds no single-frame DICOM image ({len(skipped)} file(s) skipped: "
                                     f"{skipped[0][1]})", "point to a DICOM series folder")
    groups = sorted(by_series.values(), key=lambda g: (-len(g), str(g[0][0])))
    for other in groups[1:]:
        skipped += [(str(p), f"another series in the folder ({len(other)} file(s)); skipped (the folder's "
                             f"largest series, {len(groups[0])} file(s), is read)") for p, _ in other]
    ordered = sort_slices(groups[0])
    normal = _normal(ordered)
    positions = [slice_position(ds, normal) for _, ds in ordered] if normal is not None else [None]
    along = [float(z) for z in positions if z is not None] if None not in positions else None
    return SeriesScan(folder, ordered, sorted(skipped), along)


def _header(path: Path) -> pydicom.Dataset:
    ds = read_dataset(path, pixels=False)
    check_is_image(ds, path, has_pixels=False)
    return ds


def scan_series(folder: str | Path) -> SeriesScan:
    """The slices of a series folder from the headers only (no pixel data read): count, order, skips.

    Raises:
        ImageReadError: no DICOM file, no single-frame image among them, an unreadable header.
    """
    return _scan(Path(folder), _header)


def read_series(folder: str | Path) -> tuple[np.ndarray, SeriesScan]:
    """Read a series folder: ``(volume, scan)``, slice ``k`` = ``read_dicom(scan.files[k])[0]``.

    Returns:
        ``volume``: ``(H, W, N)`` modality values (grey; float64 when any slice is rescaled, else the
        slices' common integer type) or ``(H, W, 3, N)`` colour stored values, stacked along the last
        axis in :func:`sort_slices` order; ``scan``: the slices' headers (pixel data dropped) and skips.

    Raises:
        ImageReadError: as :func:`scan_series`, an undecodable slice, or slices of different sizes.
    """
    arrays: dict[Path, np.ndarray] = {}

    def read(path: Path) -> pydicom.Dataset:
        arrays[path], ds = read_dicom(path)
        for keyword in PIXEL_KEYWORDS:  # decoded: keep N headers, not N more copies of the pixels
            if keyword in ds:
                delattr(ds, keyword)
        return ds

    scan = _scan(Path(folder), read)
    planes = [arrays[p] for p in scan.files]
    first = planes[0].shape
    for path, plane in zip(scan.files, planes, strict=True):
        if plane.shape != first:
            msg = (f"slice {path.name} is {'x'.join(map(str, plane.shape))} but the series' first slice "
                   f"{scan.files[0].name} is {'x'.join(map(str, first))}")
            raise ImageReadError(scan.folder, msg, "keep one series of equal-sized slices per folder")
    return np.stack(planes, axis=-1), scan
