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
* Files are grouped into series by SeriesInstanceUID (:func:`group_series`), however they were given:
  ``score`` groups files named one by one, folders, or both, the same way.
* A series is tidied before it is stacked (:func:`check_series`, also used by ``score``):

  - **localisers** (ImageType value ``LOCALIZER``, or a slice whose orientation differs from the
    series' most common one) are set apart, each named with the reason: a scout is a planning image,
    not a slice of the stack (a radiologist reads it apart, and a plane of another orientation would
    break the volume's geometry). A localiser given on its own (its own series) is read as an image;
  - **duplicates** (two files at the same position: the same SOPInstanceUID or the same pixel data)
    are dropped, keeping the first by InstanceNumber / file name; two *different* slices at one
    position are set apart the same way, named ("another slice at the same position");
  - **gaps**: a step between neighbouring positions above :data:`GAP_FACTOR` × the series' spacing (the
    median step) is a missing slice: the series is read (the slices are numbered without it) and a
    note names the gap, its size and the slices around it (:attr:`SeriesScan.notes`).
* A file that cannot be read, or a slice whose size differs from the others, is an
  :class:`~adaptclip_med.runtime.errors.ImageReadError` naming it (a missing slice would shift the
  volume's geometry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from adaptclip_med.data.readers.dicom_header import n_frames, series_files
from adaptclip_med.data.readers.dicom_pixels import PIXEL_KEYWORDS, check_is_image, read_dataset, read_dicom
from adaptclip_med.runtime.errors import ImageReadError, NotAnImageError

#: ``(path, data set)`` of one file of a series.
Member = tuple[Path, pydicom.Dataset]

#: A step between neighbouring slices above this multiple of the median step is a gap (a missing slice).
GAP_FACTOR = 1.5
#: Two slices closer than this along the normal (mm) are at the same position.
SAME_POSITION_MM = 1e-3
#: Two slice normals whose angle exceeds this (degrees) are different orientations.
ORIENTATION_TOLERANCE_DEG = 1.0


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


def group_series(members: list[Member]) -> list[list[Member]]:
    """Files grouped by SeriesInstanceUID (a file without one is its own group), in order of first file.

    Members keep the order they were given within a group; :func:`check_series` orders them.
    """
    groups: dict[str, list[Member]] = {}
    for path, ds in members:
        uid = str(ds.get("SeriesInstanceUID", "") or "") or f"file:{path}"
        groups.setdefault(uid, []).append((path, ds))
    return sorted(groups.values(), key=lambda g: min(str(p) for p, _ in g))


def is_localizer(ds: pydicom.Dataset) -> bool:
    """True when ImageType holds ``LOCALIZER`` (a scout / scanogram / topogram)."""
    value = ds.get("ImageType")
    values = list(value) if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]
    return any(str(v).strip().upper() == "LOCALIZER" for v in values if v is not None)


def _same_orientation(a: np.ndarray, b: np.ndarray) -> bool:
    cos = abs(float(np.dot(a, b))) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
    return cos >= np.cos(np.deg2rad(ORIENTATION_TOLERANCE_DEG))


def _orientation_name(normal: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(normal)))
    return ("sagittal", "coronal", "axial")[axis]


def _same_pixels(a: Path, b: Path) -> bool:
    try:
        return pydicom.dcmread(a).get("PixelData") == pydicom.dcmread(b).get("PixelData")
    except Exception:  # unreadable: not provably the same slice
        return False


@dataclass(frozen=True)
class SeriesCheck:
    """One series' image files, tidied (see the module notes).

    Attributes:
        slices: the slices to stack, in stacking order.
        set_apart: ``(path, reason)`` of localisers, other orientations, duplicates (one line each).
        notes: warnings about the stacked series (gaps; duplicates dropped), one line each.
        positions: the slices' positions along the normal (mm), or ``None`` without geometry.
    """

    slices: list[Member]
    set_apart: list[tuple[str, str]]
    notes: list[str]
    positions: list[float] | None


def _localisers(members: list[Member]) -> tuple[list[Member], list[tuple[str, str]]]:
    """Members without the series' localisers and slices of another orientation, and those set apart."""
    apart: list[tuple[str, str]] = []
    if any(not is_localizer(ds) for _, ds in members):
        kept = [m for m in members if not is_localizer(m[1])]
        apart += [(str(p), "localizer (ImageType LOCALIZER) inside the series; set apart, not scored "
                           "(a planning image, not a slice of the stack; give the file alone to score it)")
                  for p, ds in members if is_localizer(ds)]
    else:
        kept = list(members)
    normals = [(m, slice_normal(m[1])) for m in kept]
    kinds: list[tuple[np.ndarray, list[Member]]] = []
    for member, normal in normals:
        if normal is None:
            continue
        for ref, group in kinds:
            if _same_orientation(ref, normal):
                group.append(member)
                break
        else:
            kinds.append((normal, [member]))
    if len(kinds) <= 1:
        return kept, apart
    main_normal, main = min(kinds, key=lambda k: (-len(k[1]), min(str(p) for p, _ in k[1])))
    for normal, group in kinds:
        if group is main:
            continue
        reason = (f"{_orientation_name(normal)} slice inside a series of {len(main)} "
                  f"{_orientation_name(main_normal)} slice(s); set apart, not scored (a localizer or reformat "
                  "of another orientation; give the file alone to score it)")
        apart += [(str(p), reason) for p, _ in group]
    others = {str(p) for _, g in kinds if g is not main for p, _ in g}
    return [m for m in kept if str(m[0]) not in others], apart


def _duplicates(ordered: list[Member], positions: list[float]) -> tuple[list[int], list[tuple[str, str]]]:
    """Indices to keep (one per position: the first by InstanceNumber, then path) and those dropped."""
    keep: list[int] = []
    dropped: list[tuple[str, str]] = []
    k = 0
    while k < len(ordered):
        j = k + 1
        while j < len(ordered) and abs(positions[j] - positions[k]) <= SAME_POSITION_MM:
            j += 1
        run = sorted(range(k, j), key=lambda i: (_instance(ordered[i][1]) or 0, str(ordered[i][0])))
        first = run[0]
        keep.append(first)
        for i in run[1:]:
            path, ds = ordered[i]
            ref, ref_ds = ordered[first]
            where = f"{positions[i]:.2f} mm along the slice normal"  # no file names: they may identify
            uid = str(ds.get("SOPInstanceUID", ""))
            if (uid and uid == str(ref_ds.get("SOPInstanceUID", ""))) or _same_pixels(path, ref):
                dropped.append((str(path), f"exact duplicate of the series' slice at {where} (the same slice "
                                           "stored twice); dropped"))
            else:
                dropped.append((str(path), f"another slice at the same position ({where}) with other pixels; "
                                           "set apart, not scored (one slice per position: the first by "
                                           "InstanceNumber is kept)"))
        k = j
    return sorted(keep), dropped


def _gaps(positions: list[float]) -> list[str]:
    """One note per step between neighbouring slices above :data:`GAP_FACTOR` × the median step."""
    steps = np.diff(np.asarray(positions, dtype=np.float64))
    if len(steps) < 2:
        return []
    spacing = float(np.median(steps))
    if spacing <= SAME_POSITION_MM:
        return []
    notes = []
    for k, step in enumerate(steps):
        if step > GAP_FACTOR * spacing:
            missing = max(1, round(step / spacing) - 1)
            notes.append(f"gap of {step:.2f} mm between slices {k} and {k + 1} (at {positions[k]:.2f} and "
                         f"{positions[k + 1]:.2f} mm), {step / spacing:.1f}x the spacing of {spacing:.2f} mm: "
                         f"about {missing} slice(s) missing; the slices are numbered without the gap")
    return notes


def check_series(members: list[Member]) -> SeriesCheck:
    """Tidy one series' single-frame image files: localisers and duplicates set apart, gaps noted.

    See the module notes for the rules. Ordering is :func:`sort_slices`'.
    """
    kept, apart = _localisers(members)
    ordered = sort_slices(kept)
    normal = _normal(ordered)
    found = [slice_position(ds, normal) for _, ds in ordered] if normal is not None else [None]
    if None in found:
        return SeriesCheck(ordered, sorted(apart), [], None)
    positions = [float(z) for z in found if z is not None]
    keep, dropped = _duplicates(ordered, positions)
    ordered, positions = [ordered[i] for i in keep], [positions[i] for i in keep]
    notes = _gaps(positions)
    exact = sum("exact duplicate" in why for _, why in dropped)
    if exact:
        notes.insert(0, f"{exact} duplicate slice file(s) dropped (the same slice stored twice)")
    return SeriesCheck(ordered, sorted(apart + dropped), notes, positions)


@dataclass(frozen=True)
class SeriesScan:
    """The image slices of a series folder in stacking order, and the files left out.

    Attributes:
        folder: the series folder.
        slices: ``N`` ``(path, data set)`` pairs in stacking order (headers: no pixel data kept).
        skipped: ``(path, reason)`` of every DICOM file of the folder that is not stacked.
        positions: ``N`` positions along the slice normal (mm), or ``None`` when the slices were
            ordered by InstanceNumber or file name.
        notes: warnings about the stacked series (:func:`check_series`: gaps, duplicates dropped).
    """

    folder: Path
    slices: list[Member]
    skipped: list[tuple[str, str]]
    positions: list[float] | None
    notes: list[str] = field(default_factory=list)

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
    images: list[Member] = []
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
        images.append((path, ds))
    if not images:
        raise ImageReadError(folder, f"folder holds no single-frame DICOM image ({len(skipped)} file(s) skipped: "
                                     f"{skipped[0][1]})", "point to a DICOM series folder")
    groups = sorted(group_series(images), key=lambda g: -len(g))  # stable: ties by first file name
    for other in groups[1:]:
        skipped += [(str(p), f"another series in the folder ({len(other)} file(s)); skipped (the folder's "
                             f"largest series, {len(groups[0])} file(s), is read)") for p, _ in other]
    tidy = check_series(groups[0])
    return SeriesScan(folder, tidy.slices, sorted(skipped + tidy.set_apart), tidy.positions, tidy.notes)


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
