"""DICOM de-identification by PS3.15 Annex E, for the derived objects of an ``--anonymize`` run.

Every attribute is handled by its action in the Basic Application Level Confidentiality Profile table
(E.1-1) as the maintained ``dicom-anonymizer`` package ships it (:data:`EDITION`), with its per-VR dummy,
empty and remove actions, applied at every nesting level (the package itself only applies them at the
top level) and with four choices of ours where the profile leaves one:

* **UIDs** (action U, and the UIDs inside U* sequences such as SourceImageSequence) are replaced by a
  keyed mapping, ``2.25.<128 bits of HMAC-SHA-256(salt, uid)>`` (:meth:`Pseudonymiser.uid`): the same source
  UID gives the same new UID in every run with the same key file, so the Parametric Map, Segmentation
  and Secondary Captures of one study still share Study, Frame of Reference and source references, and
  the key file maps each new UID back (a hospital holding it can re-link);
* **dates** are shifted back by a whole number of days that depends on the salt and the PatientID
  (Retain Longitudinal Temporal Information with Modified Dates Option): intervals between one patient's
  studies are kept, the calendar dates are not; the birth date is emptied; **times** get the profile's
  dummy or are removed;
* **patient**: PatientName and PatientID become one pseudonym per PatientID (``pt-`` + 12 hex digits), so
  every series of a patient gets the same one;
* **descriptors** written by the tool itself (SeriesDescription, ImageComments: no source text) are kept
  (Clean Descriptors Option); the source's descriptions are removed.

Private attributes are removed. PatientIdentityRemoved is YES and DeidentificationMethodCodeSequence
lists the profile and the two options (CID 7050).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adaptclip_med.runtime.privacy import Pseudonymiser

#: The Annex E table edition of ``dicom-anonymizer`` that is applied.
EDITION = "dicomfields_2026c"
#: CID 7050 codes declared in DeidentificationMethodCodeSequence (profile, then the options applied).
METHOD_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113105", "Clean Descriptors Option"),
)
METHOD_TEXT = "PS3.15 E.1 Basic Profile; dates shifted; keyed UIDs"
#: Attributes of a derived object whose text is the tool's own (never source text): kept after cleaning.
OWN_DESCRIPTORS = ("SeriesDescription", "ImageComments")

_BINARY = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_X_FIRST = frozenset({"X_TAGS", "X_Z_TAGS", "X_D_TAGS", "X_Z_D_TAGS"})


@functools.lru_cache(maxsize=1)
def profile_table() -> tuple[dict[tuple[int, int], str], list[tuple[tuple[int, int, int, int], str]]]:
    """``({(group, element): category}, [((group, element, group mask, element mask), category)])``.

    Categories are dicom-anonymizer's names of the Annex E actions: ``X_TAGS``, ``Z_TAGS``, ``D_TAGS``,
    ``U_TAGS``, ``Z_D_TAGS``, ``X_Z_TAGS``, ``X_D_TAGS``, ``X_Z_D_TAGS``, ``X_Z_U_STAR_TAGS``.
    """
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    tables = dicom_anonymization_database_selector(EDITION)
    exact: dict[tuple[int, int], str] = {}
    masked: list[tuple[tuple[int, int, int, int], str]] = []
    for category, tags in tables.items():
        if category == "ALL_TAGS":
            continue
        for tag in tags:
            if len(tag) == 2:
                exact[(tag[0], tag[1])] = category
            else:
                masked.append(((tag[0], tag[1], tag[2], tag[3]), category))
    return exact, masked


def category_of(tag: int, table: Any = None) -> str | None:
    """The Annex E action category of ``tag`` (None: not in the table, kept)."""
    exact, masked = table if table is not None else profile_table()
    group, element = tag >> 16, tag & 0xFFFF
    if (group, element) in exact:
        return exact[(group, element)]
    for (g, e, gm, em), category in masked:
        if group & gm == g & gm and element & em == e & em:
            return category
    return None


def _values(element: Any) -> list[Any]:
    """The values of a (possibly multi-valued) element, as a list."""
    from pydicom.multival import MultiValue

    return list(element.value) if isinstance(element.value, MultiValue | list | tuple) else [element.value]


def shift_date(value: str, days: int) -> str:
    """A DA ``YYYYMMDD`` (or the date part of a DT) ``days`` earlier; ``""`` when it is not a date."""
    try:
        day = dt.datetime.strptime(str(value)[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    return (day - dt.timedelta(days=days)).strftime("%Y%m%d")


@functools.lru_cache(maxsize=8)
def iod_types(sop_class_uid: str) -> dict[tuple[str, ...], str]:
    """``{(*sequence keywords, keyword): type}`` of the IOD of ``sop_class_uid``, the strictest over its
    modules (``"1"``, ``"2"`` or ``"3"``; conditional types count as their base type), from the standard's
    tables that highdicom ships. ``{}`` for an unknown SOP class."""
    from importlib.resources import files

    folder = files("highdicom") / "_standard"
    iod = json.loads((folder / "sop_class_iod_map.json").read_text()).get(str(sop_class_uid))
    if iod is None:
        return {}
    modules = json.loads((folder / "iod_module_map.json").read_text())[iod]
    attributes = json.loads((folder / "module_attribute_map.json").read_text())
    types: dict[tuple[str, ...], str] = {}
    for module in modules:
        for attr in attributes.get(module["key"], []):
            where = (*attr["path"], attr["keyword"])
            types[where] = min(types.get(where, "3"), str(attr["type"])[:1])
    return types


def _action(category: str, required: str) -> str:
    """The Annex E action for a category and the attribute's type here: ``"X"``, ``"Z"`` or ``"D"``.

    X/Z/D choices take the weakest action the IOD allows (remove a type 3, empty a type 2, dummy a
    type 1); Z becomes D for a type 1 attribute.
    """
    if category in _X_FIRST:
        return {"1": "D", "2": "Z"}.get(required, "X")
    if category in ("Z_TAGS", "Z_D_TAGS"):
        return "D" if required == "1" else "Z"
    return "D"


def _walk(dataset: Any, path: tuple[str, ...], visit: Callable[[Any, Any, tuple[str, ...]], None],
          seen: set[int]) -> None:
    """``visit(dataset, element, path)`` for every element, then into the items of the sequences kept.

    An item object that appears in several places (highdicom shares some) is visited once (``seen``).
    """
    if id(dataset) in seen:
        return
    seen.add(id(dataset))
    for element in list(dataset):
        visit(dataset, element, path)
        if element.tag in dataset and element.VR == "SQ":
            for item in dataset[element.tag].value:
                _walk(item, (*path, element.keyword), visit, seen)


def deidentify(ds: Any, pseudonymiser: Pseudonymiser, fallback: str) -> Any:
    """De-identify a pydicom ``Dataset`` (and its file meta) in place by the profile above; returns ``ds``.

    Args:
        ds: a derived object (Parametric Map, Segmentation, Secondary Capture) built from the source (a
            copy: elements it shares with the source datasets are changed too).
        pseudonymiser: the run's key (salt): patient pseudonym, UID mapping and date shift derive from it.
        fallback: the patient key when the source has no PatientID (e.g. the series' own pseudonym).
    """
    from dicomanonymizer import simpledicomanonymizer as lib
    from pydicom.dataset import Dataset

    table = profile_table()
    types = iod_types(str(ds.get("SOPClassUID", "")))
    patient = str(ds.get("PatientID", "") or "").strip() or fallback
    days = pseudonymiser.date_shift_days(patient)
    own = {k: ds.get(k) for k in OWN_DESCRIPTORS if k in ds}

    def visit(dataset: Any, element: Any, path: tuple[str, ...]) -> None:
        category = category_of(int(element.tag), table)
        if category is None or (dataset is ds and element.tag in (0x00100010, 0x00100020)):
            return  # kept, or set below (the patient's pseudonym)
        if category in ("U_TAGS", "X_Z_U_STAR_TAGS") and element.VR in ("UI", "SQ"):
            if element.VR == "UI":  # a U* sequence is kept: its items' UIDs are mapped as they are walked
                mapped = [pseudonymiser.uid(str(v)) if str(v) else "" for v in _values(element)]
                element.value = mapped if len(mapped) != 1 else mapped[0]
            return
        if element.tag == 0x00100030:  # PatientBirthDate: not kept by the dates option (type 2: emptied)
            element.value = ""
            return
        action = _action(category, types.get((*path, element.keyword), "3"))
        if action == "X":
            del dataset[element.tag]
        elif element.VR in ("DA", "DT"):
            element.value = shift_date(element.value, days) if element.value else ""
        elif element.VR == "SQ":
            element.value = []  # the items' contents are patient data; a type 1 sequence is not expected here
        else:
            try:
                (lib.empty if action == "Z" else lib.replace)(dataset, element.tag)
            except NotImplementedError:  # a VR the library has no dummy for: removed rather than kept
                del dataset[element.tag]

    ds.remove_private_tags()
    seen: set[int] = set()
    if getattr(ds, "file_meta", None) is not None:
        _walk(ds.file_meta, (), visit, seen)
    _walk(ds, (), visit, seen)
    name = pseudonymiser.name(patient, prefix="pt")
    ds.PatientName = name
    ds.PatientID = name
    for keyword, value in own.items():
        setattr(ds, keyword, value)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD_TEXT
    items = []
    for value, meaning in METHOD_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    return ds


def forbidden_values(ds: Any, vrs: frozenset[str] | None = None, *, unless_kept: bool = False) -> dict[str, str]:
    """``{value: keyword}`` of every attribute of ``ds`` (nested too) that the profile removes or replaces.

    Args:
        ds: a source dataset.
        vrs: only elements of these VRs (None: all but sequences and binary data).
        unless_kept: leave out values that also occur inside a value the profile keeps (e.g. pydicom's
            MR_small: InstitutionName ``TOSHIBA``, Manufacturer ``TOSHIBA_MEC``): the de-identified object
            carries them by the standard, so finding them proves no leak.
    """
    table = profile_table()
    found: dict[str, str] = {}
    kept: set[str] = set()

    def visit(_: Any, element: Any) -> None:
        if element.VR in _BINARY or element.value in (None, ""):
            return
        if category_of(int(element.tag), table) is None:
            kept.update(str(v) for v in _values(element))
        elif vrs is None or element.VR in vrs:
            for v in _values(element):
                found.setdefault(str(v).strip(), element.keyword or str(element.tag))

    ds.walk(visit)
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.walk(visit)
    return {k: v for k, v in found.items() if k and not (unless_kept and any(k in text for text in kept))}


__all__ = ["EDITION", "METHOD_CODES", "OWN_DESCRIPTORS", "category_of", "deidentify", "forbidden_values",
           "profile_table", "shift_date"]

