"""The ``volume`` data set: NIfTI volumes (or DICOM series folders) as per-slice records.

Layout::

    root/normal/<id>.nii.gz | <id>/ (DICOM series)   every slice normal (label 0)
    root/abnormal/<id>.nii.gz                          slices labelled from the label volume:
    root/masks/<id>.nii.gz                             a slice with any voxel > 0 is abnormal (1)

Each record keeps the patient ``group``: the volume's ``<id>`` (so ``normal/p1.nii.gz`` and
``abnormal/p1.nii.gz`` are one patient), a DICOM series' hashed PatientID, a ``labels.csv`` column or
``group_pattern`` (:mod:`~adaptclip_med.data.layouts.groups`); prompts are never drawn from a query's group
and hold-outs take whole groups. Options: ``axis`` (0/1/2 in RAS, default 2
axial; pass the same ``axis`` to :func:`build_transforms`), ``step`` (every n-th slice),
``foreground_only`` (abnormal volumes: keep only slices with foreground).

A DICOM series folder's slices are its single-frame image files in position order
(:func:`~adaptclip_med.data.readers.dicom_series.scan_series`); the other DICOM files in it (SEG, SR,
RT objects, another series, localisers, duplicate slices) are listed as problems, each under its own
path; a missing slice (a gap) is a warning naming the series folder.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from adaptclip_med.data.layouts.common import LoadedSet, require_dir
from adaptclip_med.data.layouts.groups import group_rule
from adaptclip_med.data.readers.dicom_header import series_files
from adaptclip_med.data.readers.dicom_series import scan_series
from adaptclip_med.data.readers.screen import screen_error, screen_image
from adaptclip_med.data.records import NIFTI_SUFFIXES, Problem, Record, has_suffix, list_files, strip_suffix


def canonical_shape(path: Path) -> tuple[int, ...]:
    """Shape of a NIfTI volume in closest-canonical (RAS) axis order, from the header only."""
    img = nib.load(str(path))
    ornt = nib.orientations.io_orientation(img.affine)
    shape = img.shape
    spatial = [0, 0, 0]
    for src, (dst, _) in enumerate(ornt[: min(3, len(shape))]):
        spatial[int(dst)] = shape[src]
    return tuple(spatial) + tuple(shape[3:])


def nan_note(path: Path) -> str | None:
    """A note when a float NIfTI volume holds NaN (read in full; integer volumes: header only), else ``None``.

    NaN outside the anatomy is background, a slice that is all NaN or has NaN inside the anatomy is
    refused (:func:`~adaptclip_med.data.transforms.intensity.nan_as_background`).
    """
    img = nib.load(str(path))
    if not np.issubdtype(img.get_data_dtype(), np.floating):
        return None
    data = np.asanyarray(img.dataobj)
    n = int(np.count_nonzero(np.isnan(data)))
    if not n:
        return None
    return (f"{n} NaN voxel(s) of {data.size}: NaN outside the anatomy is treated as background (the volume's "
            "lowest value); a slice that is all NaN or has NaN inside the anatomy is skipped with its reason")


def label_per_slice(mask_path: Path, axis: int) -> np.ndarray:
    """``(n_slices,)`` bool: which slices of a label volume hold foreground (> 0), RAS order."""
    img = nib.as_closest_canonical(nib.load(str(mask_path)))
    data = np.asanyarray(img.dataobj)
    other = tuple(a for a in range(data.ndim) if a != axis)
    return np.any(data > 0, axis=other)


def _volumes(folder: Path) -> list[Path]:
    files = list_files(folder, NIFTI_SUFFIXES)
    series = sorted(p for p in folder.iterdir() if p.is_dir() and (series_files(p) or has_suffix(p, NIFTI_SUFFIXES))
                    ) if folder.is_dir() else []  # a folder named x.nii.gz is listed (as a folder), not dropped
    return sorted(files + series)


def load_volumes(root: Path, *, axis: int = 2, step: int = 1, foreground_only: bool = False,
                 cls: str | None = None, label: str | None = None, **_: object) -> LoadedSet:
    """Per-slice records of every volume under ``root`` (see module docstring).

    The class is ``cls``, else the data set's ``label``, else ``"volume"`` — never the folder's name.
    """
    tree = "normal/<id>.nii.gz (or DICOM series folders), abnormal/<id>.nii.gz, masks/<id>.nii.gz"
    require_dir(root, "volume", tree)
    if not (root / "normal").is_dir() and not (root / "abnormal").is_dir():
        require_dir(root / "normal", "volume", tree)
    name = cls or label or "volume"
    axis, step = int(axis), max(1, int(step))
    problems: list[Problem] = []
    warnings: list[Problem] = []
    records: list[Record] = []
    group = group_rule(root, labels=root / "labels.csv", default=lambda p: strip_suffix(p.name))
    for sub, label in (("normal", 0), ("abnormal", 1)):
        folder = root / sub
        if not folder.is_dir():
            continue
        vols = _volumes(folder)
        if not vols:
            problems.append((str(folder), "empty folder: no NIfTI volumes or DICOM series"))
        for vol in vols:
            vid = group(vol)
            if (why := screen_image(vol, series=vol.is_dir())) is not None:
                problems.append((str(vol), why))
                continue
            try:
                if vol.is_dir():
                    scan = scan_series(vol)  # headers only: the image slices, non-images named
                    problems += scan.skipped
                    warnings += [(str(vol), note) for note in scan.notes]
                    n, per_slice = len(scan.slices), None
                else:
                    shape = canonical_shape(vol)
                    if len(shape) < 3:
                        problems.append((str(vol), f"shape {shape} is 2-D; expected a 3-D/4-D volume; skipped"))
                        continue
                    n, per_slice = shape[axis], None
                mask = None
                if label:
                    mask = next((p for p in list_files(root / "masks", NIFTI_SUFFIXES)
                                 if strip_suffix(p.name) == strip_suffix(vol.name)), None)
                    if mask is None or vol.is_dir():
                        problems.append((str(vol), "abnormal volume without a NIfTI label volume in masks/; "
                                                   "skipped (slices cannot be labelled)"))
                        continue
                    per_slice = label_per_slice(mask, axis)
                    if len(per_slice) != n:
                        problems.append((str(vol), f"label volume {mask.name} has {len(per_slice)} slices "
                                                   f"along axis {axis}, its image {n}; skipped"))
                        continue
                    if not per_slice.any():
                        problems.append((str(vol), f"label volume {mask.name} is empty (no voxel > 0) for an "
                                                   "abnormal volume; skipped"))
                        continue
            except Exception as exc:  # any header failure is a listed skip, never an abort
                problems.append((str(vol), f"{screen_error(exc)}; skipped"))
                continue
            for i in range(0, n, step):
                fg = bool(per_slice[i]) if per_slice is not None else False
                if label and foreground_only and not fg:
                    continue
                records.append(Record(str(vol), str(mask) if fg else None, int(fg), name, "test", vid,
                                      "volume", i))
    return LoadedSet(records, problems, policy="holdout", warnings=warnings)
