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

DICOM files are grouped by SeriesInstanceUID across all inputs
(:func:`~adaptclip_med.data.readers.dicom_series.group_series`): ``score ct/*.dcm`` (files one by one),
``score ct`` (the folder) and a mix of both give the same series. A series is tidied and sorted as a
series folder is read (:func:`~adaptclip_med.data.readers.dicom_series.check_series`): by
ImagePositionPatient projected on the slice normal (from ImageOrientationPatient), else by
InstanceNumber, else by file name; localisers (ImageType LOCALIZER or another orientation) and
duplicate slices are set apart as problems, each named with its reason; a missing slice (a gap) is a
:attr:`Study.notes` warning. A single DICOM file of its own series is an ``image``.
Files that cannot be read or are of another type are returned as ``(path, reason)`` problems.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from nibabel.filebasedimages import ImageFileError
from pydicom.errors import InvalidDicomError

from adaptclip_med.data.readers.dicom_series import check_series, group_series
from adaptclip_med.data.readers.screen import aspect_warning, image_size
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
        notes: warnings about it, one line each: a DICOM series' gaps and duplicate slices dropped, a
            NIfTI volume's NaN (background outside the anatomy), an image above 3:1 (distorted by the
            square input).
    """

    kind: str
    name: str
    units: list[Unit]
    dicom_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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


def _shape_notes(size: tuple[int, int] | None) -> list[str]:
    """The aspect-ratio warning of an image of ``size`` (H, W), if any (> 8:1 is refused when it is read)."""
    why = aspect_warning(*size) if size else None
    return [why] if why else []


def _dicom_size(ds: pydicom.Dataset) -> tuple[int, int] | None:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    return (rows, cols) if rows and cols else None


def _nifti_study(path: Path, name: str, axis: int) -> Study:
    from adaptclip_med.data.layouts.volume import canonical_shape, nan_note

    shape = canonical_shape(path)
    if len(shape) < 3:
        msg = f"NIfTI of shape {shape} is 2-D; expected a 3-D or 4-D volume"
        raise ValueError(msg)
    note = nan_note(path)  # NaN outside the head (skull stripping, registration): background, said once
    plane = [int(n) for a, n in enumerate(shape[:3]) if a != axis]
    notes = [note] if note else []
    return Study("nifti", name, [Unit(str(path), k) for k in range(int(shape[axis]))],
                 notes=notes + _shape_notes((plane[0], plane[1])))


#: A DICOM file found by :func:`discover`: path, header, its input root (for names), its input's index.
_Found = tuple[Path, pydicom.Dataset, Path, int]


def _dicom_studies(dicoms: list[_Found], problems: list[Problem]) -> list[tuple[int, Study]]:
    """``(input index, study)`` of every multi-frame file and series (grouped across inputs by UID)."""
    where = {path: (root, index) for path, _, root, index in dicoms}
    studies: list[tuple[int, Study]] = []
    singles = []
    for path, ds, root, index in dicoms:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            studies.append((index, Study("multiframe", _relative(path, root),
                                         [Unit(str(path), f) for f in range(frames)], [path],
                                         _shape_notes(_dicom_size(ds)))))
        else:
            singles.append((path, ds))
    for number, members in enumerate(group_series(singles), 1):
        tidy = check_series(members)
        problems += [(_relative(Path(p), where[Path(p)][0]), why) for p, why in tidy.set_apart]
        files = [p for p, _ in tidy.slices]
        root, index = where[files[0]][0], min(where[p][1] for p, _ in members)
        notes = tidy.notes + _shape_notes(_dicom_size(tidy.slices[0][1]))
        if len(files) == 1:
            studies.append((index, Study("image", _relative(files[0], root), [Unit(str(files[0]))], files, notes)))
            continue
        folder = _relative(files[0].parent, root) or "."
        series_no = tidy.slices[0][1].get("SeriesNumber", number)
        studies.append((index, Study("series", f"{folder}/series-{series_no}", [Unit(str(p)) for p in files],
                                     files, notes)))
    return studies


def discover(inputs: Iterable[str | Path], axis: int = 2,
             exclude: Iterable[str | Path] = ()) -> tuple[list[Study], list[Problem]]:
    """Find every scorable object under ``inputs`` (files or folders, searched recursively).

    Files under a folder of ``exclude`` (the run's own output folder) are not read.

    Returns:
        ``(studies, problems)``: studies in input order (names unique), and ``(name, reason)`` of
        every file that is skipped (names relative to their input root, like :attr:`Study.name`).
    """
    found: list[tuple[int, Study]] = []
    problems: list[Problem] = []
    dicoms: list[_Found] = []  # grouped into series after every input is read: files given one by one too
    read: set[Path] = set()  # a DICOM file given twice (alone and inside its folder) is read once
    outs = [Path(e).resolve() for e in exclude]
    for index, item in enumerate(inputs):
        given = Path(item)
        if not given.exists():
            problems.append((given.name, "no such file or folder"))
            continue
        root = given.parent  # names keep the input folder's own name: "ct/series-3", "scans/a.png"
        for path in _files(given) if given.is_dir() else [given]:
            if any(path.resolve().is_relative_to(o) for o in outs):
                continue
            name = _relative(path, root)
            try:
                if path.stat().st_size == 0:
                    problems.append((name, "file is empty (0 bytes)"))
                elif has_suffix(path, NIFTI_SUFFIXES):
                    found.append((index, _nifti_study(path, name, axis)))
                elif has_suffix(path, IMAGE_SUFFIXES):
                    found.append((index, Study("image", name, [Unit(str(path))], notes=_shape_notes(image_size(path)))))
                elif _is_dicom(path):
                    if path.resolve() not in read:
                        read.add(path.resolve())
                        dicoms.append((path, pydicom.dcmread(path, stop_before_pixels=True), root, index))
                else:
                    problems.append((name, f"unsupported file type {path.suffix or '(no suffix)'!r}; "
                                                "expected PNG/JPEG/TIFF/DICOM/NIfTI"))
            except (InvalidDicomError, ImageFileError, EOFError, OSError, ValueError, TypeError) as exc:
                problems.append((name, f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})"))
    found += _dicom_studies(dicoms, problems)
    studies = [study for _, study in sorted(found, key=lambda t: t[0])]  # stable: input order, then found
    seen: dict[str, int] = {}
    for study in studies:  # two inputs with the same relative name: keep both, numbered
        seen[study.name] = seen.get(study.name, 0) + 1
        if seen[study.name] > 1:
            study.name = f"{study.name}~{seen[study.name]}"
    return studies, problems
