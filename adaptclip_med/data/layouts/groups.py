"""Patient / study group ids of records: the unit that prompts avoid and the bootstrap resamples.

Sources, first match wins (documented per data set in datasets/README.md and docs/data.md):

1. ``group_pattern`` (``--group-pattern REGEX``, any data set): ``re.search`` on the image path
   relative to the data set root (``/`` separators); the named group ``group`` if the pattern has
   one, else the first capture group, else the whole match. Files it does not match keep the
   next source's id.
2. A ``labels.csv`` column (folder layout): ``root/labels.csv`` with a path column (``image``,
   ``path``, ``file`` or ``filename``: relative to the root, or the bare file name) and a group
   column (``group``, ``patient``, ``patient_id``, ``study``). Stored hashed with a key (:func:`hash_id`).
3. DICOM ``PatientID`` (else ``StudyInstanceUID``) of a DICOM file or series: stored hashed with a
   key, never in clear.
4. The loader's own rule (``volume``: the volume's file stem, so ``normal/p1.nii.gz`` and
   ``abnormal/p1.nii.gz`` are one patient; ``meta``: the items' ``group`` key).

Records without any id have ``group=None``: each image is its own unit, and clinical intervals say
"image-level".
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import re
from collections.abc import Callable
from pathlib import Path

from adaptclip_med.data.records import Record
from adaptclip_med.runtime.errors import DataValidationError
from adaptclip_med.runtime.privacy import installation_secret

GroupRule = Callable[[Path], "str | None"]

PATH_COLUMNS: tuple[str, ...] = ("image", "path", "file", "filename")
GROUP_COLUMNS: tuple[str, ...] = ("group", "patient", "patient_id", "study")


def hash_id(value: str, kind: str = "pt") -> str:
    """``kind-`` + the first 16 hex digits of HMAC-SHA-256 of ``value``, keyed with this installation's secret.

    The identifier is never kept in clear, and the id cannot be recomputed from a guessed patient id
    without the key, which never leaves this machine
    (:func:`adaptclip_med.runtime.privacy.installation_secret`, created 0600 in the user cache folder).
    Stable from run to run on this machine, so a re-run groups alike; shared outputs add the run's salted
    pseudonym on top (``--anonymize``).
    """
    digest = hmac.new(installation_secret(), f"adaptclip_med {kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind}-{digest[:16]}"


def compile_pattern(pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    """Compile ``--group-pattern``; one-line error for an invalid expression.

    Raises:
        DataValidationError: the pattern does not compile.
    """
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(str(pattern))
    except re.error as exc:
        msg = (f"group_pattern {pattern!r} is not a valid regular expression ({exc}); "
               "e.g. '^(?:normal|abnormal)/(p\\d+)_'")
        raise DataValidationError(msg) from exc


def pattern_group(pattern: re.Pattern[str], relative: str) -> str | None:
    """The group id ``pattern`` extracts from a root-relative path, or ``None`` (no match / empty)."""
    m = pattern.search(relative)
    if m is None:
        return None
    if "group" in pattern.groupindex:
        value = m.group("group")
    elif pattern.groups:
        value = m.group(1)
    else:
        value = m.group(0)
    return value or None


def dicom_group(path: Path) -> str | None:
    """Hashed ``PatientID`` (else ``StudyInstanceUID``) of a DICOM file or a series folder's first file."""
    import pydicom

    from adaptclip_med.data.readers.dicom_header import series_files

    target = path
    if path.is_dir():
        files = series_files(path)
        if not files:
            return None
        target = files[0]
    try:
        ds = pydicom.dcmread(target, stop_before_pixels=True, specific_tags=["PatientID", "StudyInstanceUID"])
    except Exception:  # an unreadable header is the decode pass's problem, not a grouping one
        return None
    patient = str(ds.get("PatientID", "") or "").strip()
    if patient:
        return hash_id(patient, "pt")
    study = str(ds.get("StudyInstanceUID", "") or "").strip()
    return hash_id(study, "st") if study else None


def csv_groups(path: Path, root: Path) -> dict[str, str]:
    """``{relative path or file name: hashed group}`` from a ``labels.csv`` with a group column.

    Returns ``{}`` when the file has no group column (e.g. a labels-only CSV).

    Raises:
        DataValidationError: a group column but no path column.
    """
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        fields = {f.strip().lower(): f for f in reader.fieldnames or []}
        gcol = next((fields[c] for c in GROUP_COLUMNS if c in fields), None)
        if gcol is None:
            return {}
        pcol = next((fields[c] for c in PATH_COLUMNS if c in fields), None)
        if pcol is None:
            msg = (f"{path}: has a group column {gcol!r} but no path column; expected one of "
                   f"{', '.join(PATH_COLUMNS)} (path relative to {root} or the file name)")
            raise DataValidationError(msg)
        return {row[pcol].strip(): hash_id(row[gcol].strip(), "pt")
                for row in reader if row.get(pcol) and row.get(gcol, "").strip()}


def group_rule(root: Path, *, labels: Path | None = None, dicom: bool = True,
               default: GroupRule | None = None) -> GroupRule:
    """A function ``path -> group id | None``: ``labels.csv`` column, DICOM ids, then ``default``.

    (``group_pattern`` is applied over every loader's records by :func:`apply_pattern`.)
    """
    table = csv_groups(labels, root) if labels is not None and labels.is_file() else {}

    def rule(path: Path) -> str | None:
        if table and (g := table.get(_relative(path, root)) or table.get(path.name)) is not None:
            return g
        if dicom and _is_dicom(path) and (g := dicom_group(path)) is not None:
            return g
        return default(path) if default is not None else None

    return rule


def apply_pattern(records: list[Record], root: Path, pattern: str | re.Pattern[str]) -> list[Record]:
    """Records with ``group`` replaced where ``pattern`` matches their image path (any data set)."""
    regex = compile_pattern(pattern)
    out = []
    for rec in records:
        g = pattern_group(regex, _relative(Path(rec.image), root))
        out.append(rec if g is None else Record(rec.image, rec.mask, rec.label, rec.cls, rec.split, g,
                                                 rec.dataset, rec.slice_index))
    return out


def group_summary(records: list[Record]) -> dict[str, object]:
    """``{"unit", "groups", "records", "without_group"}``: ``unit`` is ``"patient"`` or ``"image-level"``."""
    groups = {r.group for r in records if r.group}
    without = sum(1 for r in records if not r.group)
    return {"unit": "patient" if groups else "image-level", "groups": len(groups), "records": len(records),
            "without_group": without}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _is_dicom(path: Path) -> bool:
    from adaptclip_med.data.readers.screen import is_dicom_file

    return path.is_dir() or is_dicom_file(path)
