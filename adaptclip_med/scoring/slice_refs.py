"""Which slice a score is, named as a viewer names it, and how its overlay is turned to one display convention.

For every scored unit of a :class:`~adaptclip_med.scoring.inputs.Study`, :func:`slice_refs` gives:

* ``label``: the overlay title's name of the slice as a viewer shows it: ``InstanceNumber 4`` (a DICOM
  series slice), ``frame 2 of 5 (InstanceNumber 7)`` (a multi-frame file), ``slice index 12 (voxel k)``
  (a NIfTI slice: its index along the source's own voxel axis ``i``/``j``/``k``, as a NIfTI viewer
  counts), ``image``;
* ``columns``: the ``scores.csv`` columns ``SeriesInstanceUID``, ``SOPInstanceUID``, ``InstanceNumber``
  (DICOM; under ``--anonymize`` the UIDs are the keyed replacements the de-identified DICOM objects
  carry, :meth:`~adaptclip_med.runtime.privacy.Pseudonymiser.uid`), ``voxel_axis`` and ``voxel_index``
  (NIfTI);
* the **display**: overlay PNGs are drawn in the radiological convention: the patient's right on the
  image's left (axial, coronal), anterior on the left (sagittal), anterior (axial) or head (coronal,
  sagittal) at the top. The picture's directions come from ImageOrientationPatient (else
  PatientOrientation) for DICOM and from the NIfTI affine (``nibabel.orientations.aff2axcodes`` of the
  closest-canonical volume the pipeline slices) for NIfTI; ``flip_lr`` / ``flip_ud`` say how to turn
  the picture and map, ``letters`` the patient directions at its left, right, top and bottom edges
  (DICOM letters R/L, A/P, H/F). Plain images (PNG, JPEG) have no orientation: drawn as stored, no letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from adaptclip_med.runtime.privacy import Pseudonymiser
from adaptclip_med.scoring.inputs import Study

#: The ``scores.csv`` columns filled here (empty where they do not apply).
COLUMNS = ("SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber", "voxel_axis", "voxel_index")
#: Opposite patient directions (DICOM letters).
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "H": "F", "F": "H"}
#: nibabel's axis codes in DICOM letters.
_NIFTI_LETTER = {"R": "R", "L": "L", "A": "A", "P": "P", "S": "H", "I": "F"}
#: LPS patient axes x, y, z: (letter of the negative direction, letter of the positive direction).
_LPS = (("R", "L"), ("A", "P"), ("F", "H"))


@dataclass(frozen=True)
class SliceRef:
    """How one scored unit is named and displayed (see the module notes)."""

    label: str
    columns: dict[str, Any] = field(default_factory=dict)
    flip_lr: bool = False
    flip_ud: bool = False
    letters: tuple[str, str, str, str] | None = None  # left, right, top, bottom after the flips

    def show(self, image: np.ndarray, amap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The picture ``(H, W[, 3])`` and map ``(S, S)`` turned to the display convention."""
        if self.flip_lr:
            image, amap = image[:, ::-1], amap[:, ::-1]
        if self.flip_ud:
            image, amap = image[::-1], amap[::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(amap)


def display(column_dir: str | None, row_dir: str | None) -> tuple[bool, bool, tuple[str, str, str, str] | None]:
    """``(flip_lr, flip_ud, letters)`` of a picture whose column index runs toward ``column_dir`` and row
    index toward ``row_dir`` (patient direction letters), in the radiological convention."""
    if column_dir not in _OPPOSITE or row_dir not in _OPPOSITE:
        return False, False, None
    flip_lr, flip_ud = column_dir in ("R", "A"), row_dir in ("A", "H")
    right = _OPPOSITE[column_dir] if flip_lr else column_dir
    bottom = _OPPOSITE[row_dir] if flip_ud else row_dir
    return flip_lr, flip_ud, (_OPPOSITE[right], right, _OPPOSITE[bottom], bottom)


def _dominant(vector: np.ndarray) -> str:
    """The DICOM letter of the patient direction a (LPS) direction cosine points to most."""
    axis = int(np.argmax(np.abs(vector)))
    return _LPS[axis][int(vector[axis] > 0)]


def dicom_directions(ds: pydicom.Dataset) -> tuple[str | None, str | None]:
    """(column, row) index directions of a DICOM image: from ImageOrientationPatient (also in the
    shared / first per-frame functional groups), else the first letters of PatientOrientation."""
    iop = ds.get("ImageOrientationPatient")
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if iop is None and groups in ds and len(ds[groups].value):
            plane = ds[groups][0].get("PlaneOrientationSequence")
            iop = plane[0].get("ImageOrientationPatient") if plane else None
    if iop is not None and len(iop) == 6:
        cosines = np.asarray([float(v) for v in iop])
        return _dominant(cosines[:3]), _dominant(cosines[3:])
    orientation = [str(v)[:1] for v in (ds.get("PatientOrientation") or [])]
    return (orientation[0], orientation[1]) if len(orientation) == 2 else (None, None)


def _dicom_ref(ds: pydicom.Dataset, label: str, pseudo: Pseudonymiser | None) -> SliceRef:
    def uid(keyword: str) -> str:
        value = str(ds.get(keyword, "") or "")
        return pseudo.uid(value) if value and pseudo is not None else value

    number = ds.get("InstanceNumber")
    columns = {"SeriesInstanceUID": uid("SeriesInstanceUID"), "SOPInstanceUID": uid("SOPInstanceUID"),
               "InstanceNumber": None if number in (None, "") else int(number)}
    flip_lr, flip_ud, letters = display(*dicom_directions(ds))
    return SliceRef(label, columns, flip_lr, flip_ud, letters)


def _nifti_refs(study: Study, axis: int) -> list[SliceRef]:
    import nibabel as nib
    from nibabel.orientations import aff2axcodes, inv_ornt_aff, io_orientation

    img = nib.load(study.units[0].path)
    ornt = io_orientation(img.affine)  # source voxel axis -> (canonical axis, flip)
    source_axis = int(np.flatnonzero(ornt[:, 0] == axis)[0])
    flipped, n = ornt[source_axis, 1] < 0, int(img.shape[source_axis])
    codes = aff2axcodes(img.affine @ inv_ornt_aff(ornt, img.shape[:3]))  # the canonical volume's axes
    p0, p1 = (a for a in range(3) if a != axis)  # the slice is shown rot90: columns along p0, rows against p1
    column_dir = _NIFTI_LETTER[str(codes[p0])]
    flip_lr, flip_ud, letters = display(column_dir, _OPPOSITE[_NIFTI_LETTER[str(codes[p1])]])
    name = "ijk"[source_axis]
    refs = []
    for unit in study.units:
        k = int(unit.slice_index or 0)
        index = n - 1 - k if flipped else k
        refs.append(SliceRef(f"slice index {index} (voxel {name})", {"voxel_axis": name, "voxel_index": index},
                             flip_lr, flip_ud, letters))
    return refs


def slice_refs(study: Study, pseudo: Pseudonymiser | None = None, axis: int = 2) -> list[SliceRef]:
    """One :class:`SliceRef` per unit of ``study`` (see the module notes).

    Args:
        study: a discovered study.
        pseudo: ``--anonymize``: UIDs become their keyed replacements.
        axis: the slicing axis of NIfTI volumes (the pipeline's, 2: axial).
    """
    try:
        if study.kind == "nifti":
            return _nifti_refs(study, axis)
        if study.kind == "multiframe":
            ds = pydicom.dcmread(study.dicom_files[0], stop_before_pixels=True)
            n = len(study.units)
            number = ds.get("InstanceNumber")
            suffix = "" if number in (None, "") else f" (InstanceNumber {number})"
            return [_dicom_ref(ds, f"frame {k + 1} of {n}{suffix}", pseudo) for k in range(n)]
        if study.dicom_files:
            refs = []
            for unit in study.units:
                ds = pydicom.dcmread(Path(unit.path), stop_before_pixels=True)
                number = ds.get("InstanceNumber")
                base = "image" if study.kind == "image" else "slice"
                refs.append(_dicom_ref(ds, base if number in (None, "") else f"InstanceNumber {number}", pseudo))
            return refs
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):  # unreadable: name by position
        pass
    n = len(study.units)
    return [SliceRef("image" if study.kind == "image" else f"slice {k + 1} of {n}") for k in range(n)]
