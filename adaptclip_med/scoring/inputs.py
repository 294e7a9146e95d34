"""What ``score`` reads: image files, NIfTI volumes, DICOM series (grouped by SeriesInstanceUID), folders of them.

Every input becomes :class:`Study` objects, each holding the 2-D :class:`Unit` images that are scored:

=============  ==========================================  =====================================
kind           source                                      units
=============  ==========================================  =====================================
``image``      PNG / JPEG / BMP / TIFF, single-frame DICOM   the image
``nifti``      ``.nii`` / ``.nii.gz`` (3-D, or 4-D: t = 0)  axial slices of the RAS volume
``series``     DICOM files sharing a SeriesInstanceUID     one slice per file, sorted by position
``multiframe`` one DICOM file with NumberOfFrames > 1       its frames
=============  ==========================================  =====================================

A series is sorted as a series folder is read (:func:`~adaptclip_med.data.readers.dicom_series.sort_slices`):
by ImagePositionPatient projected on the slice normal (from ImageOrientationPatient), else by
InstanceNumber, else by file name. A single DICOM file of its own series is an ``image``.
Files that cannot be read or are of another type are returned as ``(path, reason)`` problems.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from nibabel.filebasedimages import ImageFileError
from pydicom.errors import InvalidDicomError

from adaptclip_med.data.readers.dicom_series import sort_slices
from adaptclip_med.data.records import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, has_suffix

Problem = tuple[str, str]


@dataclass(frozen=True)
class Unit:
    """One 2-D image to score: ``path`` (and ``slice_index`` for a NIfTI slice or a DICOM frame)."""

    path: str
    slice_index: int | None = None

    def as_sample(self) -> dict[str, object]:
        """The sample dictionary of :func:`adaptclip_med.data.build_transforms`."""
        return {"image": self.path, "slice_index": self.slice_index}


@dataclass
class Study:
    """One scored object: an image, a NIfTI volume, a DICOM series or a multi-frame DICOM file.

    Attributes:
        kind: ``"image"``, ``"nifti"``, ``"series"`` or ``"multiframe"``.
        name: its name relative to the input root (``a/b.png``, ``ct/series-<n>``); never written
            under ``--anonymize`` (a pseudonym replaces it).
        units: the 2-D images in display / position order.
        dicom_files: DICOM kinds: the file of each unit (for a multi-frame file: that one file).
    """

    kind: str
    name: str
    units: list[Unit]
    dicom_files: list[Path] = field(default_factory=list)

    @property
    def is_volume(self) -> bool:
        """True when it holds slices or frames (a volume row is added to ``scores.csv``)."""
        return self.kind != "image"


def _is_dicom(path: Path) -> bool:
    if has_suffix(path, DICOM_SUFFIXES):
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _files(root: Path) -> list[Path]:
    def visible(path: Path) -> bool:
        return not any(part.startswith(".") for part in path.relative_to(root).parts)

    return sorted(p for p in root.rglob("*") if p.is_file() and visible(p))


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else path.name


def _nifti_study(path: Path, name: str, axis: int) -> Study:
    from adaptclip_med.data.layouts.volume import canonical_shape

    shape = canonical_shape(path)
    if len(shape) < 3:
        msg = f"NIfTI of shape {shape} is 2-D; expected a 3-D or 4-D volume"
        raise ValueError(msg)
    return Study("nifti", name, [Unit(str(path), k) for k in range(int(shape[axis]))])


def _dicom_studies(dicoms: list[tuple[Path, pydicom.Dataset]], root: Path) -> list[Study]:
    by_series: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    studies = []
    for path, ds in dicoms:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            studies.append(Study("multiframe", _relative(path, root), [Unit(str(path), f) for f in range(frames)],
                                 [path]))
        else:
            by_series.setdefault(str(ds.get("SeriesInstanceUID", path)), []).append((path, ds))
    for number, (_uid, members) in enumerate(sorted(by_series.items(), key=lambda kv: str(kv[1][0][0])), 1):
        ordered = sort_slices(members)
        files = [p for p, _ in ordered]
        if len(files) == 1:
            studies.append(Study("image", _relative(files[0], root), [Unit(str(files[0]))], files))
            continue
        folder = _relative(files[0].parent, root) if files[0].parent != root else "."
        series_no = ordered[0][1].get("SeriesNumber", number)
        studies.append(Study("series", f"{folder}/series-{series_no}", [Unit(str(p)) for p in files], files))
    return studies


def discover(inputs: Iterable[str | Path], axis: int = 2) -> tuple[list[Study], list[Problem]]:
    """Find every scorable object under ``inputs`` (files or folders, searched recursively).

    Returns:
        ``(studies, problems)``: studies in input order (names unique), and ``(name, reason)`` of
        every file that is skipped (names relative to their input root, like :attr:`Study.name`).
    """
    studies: list[Study] = []
    problems: list[Problem] = []
    for item in inputs:
        given = Path(item)
        if not given.exists():
            problems.append((given.name, "no such file or folder"))
            continue
        root = given.parent  # names keep the input folder's own name: "ct/series-3", "scans/a.png"
        dicoms: list[tuple[Path, pydicom.Dataset]] = []
        for path in _files(given) if given.is_dir() else [given]:
            name = _relative(path, root)
            try:
                if path.stat().st_size == 0:
                    problems.append((name, "file is empty (0 bytes)"))
                elif has_suffix(path, NIFTI_SUFFIXES):
                    studies.append(_nifti_study(path, name, axis))
                elif has_suffix(path, IMAGE_SUFFIXES):
                    studies.append(Study("image", name, [Unit(str(path))]))
                elif _is_dicom(path):
                    dicoms.append((path, pydicom.dcmread(path, stop_before_pixels=True)))
                else:
                    problems.append((name, f"unsupported file type {path.suffix or '(no suffix)'!r}; "
                                                "expected PNG/JPEG/TIFF/DICOM/NIfTI"))
            except (InvalidDicomError, ImageFileError, EOFError, OSError, ValueError, TypeError) as exc:
                problems.append((name, f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})"))
        studies.extend(_dicom_studies(dicoms, root))
    seen: dict[str, int] = {}
    for study in studies:  # two inputs with the same relative name: keep both, numbered
        seen[study.name] = seen.get(study.name, 0) + 1
        if seen[study.name] > 1:
            study.name = f"{study.name}~{seen[study.name]}"
    return studies, problems
