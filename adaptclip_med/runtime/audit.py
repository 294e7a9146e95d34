"""The end-of-run privacy audit of ``--anonymize``: what must not appear in a run's outputs, and a scan of
every output byte for it.

:func:`collect_identifiers` lists the forbidden values: what PS3.15 Annex E removes or replaces in the
inputs' DICOM attributes (:func:`adaptclip_med.runtime.deid.forbidden_values`, of the :data:`AUDITED_VRS`),
input file and folder names and absolute paths — never values that :func:`can_identify` rejects (``----``,
``000000000``). :func:`find_identifiers` scans the bytes of every output file (gzip, zip/npz members, PNG
text chunks and base64 data URIs decoded); :func:`audit_run` fails the run, naming files and kinds only.
Pseudonyms, the key file and the scrubber live in :mod:`adaptclip_med.runtime.privacy`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from adaptclip_med.runtime.deid import forbidden_values
from adaptclip_med.runtime.privacy import can_identify, relative_path

#: Value representations of the DICOM attributes the audit looks for (text, dates, UIDs): numbers, codes,
#: ages and times are left out (they match any table of numbers by chance and cannot name anyone).
AUDITED_VRS: frozenset[str] = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "DA", "DT", "UI", "AE", "UR"})
#: Folder names of the publishers' layouts: structure, not patient data (never flagged by the audit).
LAYOUT_WORDS: frozenset[str] = frozenset({
    "normal", "abnormal", "good", "test", "train", "training", "testing", "validation", "val", "images",
    "image", "masks", "mask", "ground_truth", "groundtruth", "gt", "yes", "no", "prompt_pool", "prompts",
    "data", "dicom", "nifti", "series", "volumes", "labels", "label",
})


def dicom_identifiers(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{value: keyword}`` of what a DICOM file carries that PS3.15 Annex E removes or replaces.

    Every attribute (nested ones too) whose profile action is not "keep"
    (:func:`adaptclip_med.runtime.deid.forbidden_values`), of the :data:`AUDITED_VRS`; person names also
    give their components (``DOE^JOHN`` → ``DOE``, ``JOHN``: split at ``^`` and ``=``); values that
    :func:`can_identify` rejects, or that the profile keeps elsewhere in the file, are left out. Files
    pydicom cannot read give ``{}``.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        values = forbidden_values(ds, AUDITED_VRS, unless_kept=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError, KeyError):
        return {}
    found: dict[str, str] = {}
    for text, keyword in values.items():
        for part in [text, *re.split(r"[\^=]+", text)]:
            if can_identify(part):
                found.setdefault(part, keyword)
    return found


def collect_identifiers(paths: Iterable[str], roots: Mapping[str, str | os.PathLike[str]],
                        allowed: Iterable[str] = ()) -> dict[str, str]:
    """What an anonymised run must not contain: ``{value: kind}`` (kinds name the category only).

    Args:
        paths: input files (image keys ``path#slice`` accepted); DICOM files (and the DICOM files of a
            series folder) give their identifier tags.
        roots: ``{label: folder}`` of the data sets; the absolute roots, the absolute and root-relative
            input paths, and every file / folder name below a root are listed.
        allowed: names that are structure, not patient data (data set labels, class names); with
            :data:`LAYOUT_WORDS` and strings shorter than 4 characters they are not listed.
    """
    keep = {a.lower() for a in allowed} | LAYOUT_WORDS
    found: dict[str, str] = {}

    def add(value: str, kind: str) -> None:
        if can_identify(value) and value.lower() not in keep:
            found.setdefault(value, kind)

    for folder in roots.values():
        add(str(Path(folder).expanduser().resolve()), "absolute path of a data folder")
        add(str(folder), "path of a data folder")
    seen: set[str] = set()
    for key in paths:
        text, sep, index = str(key).rpartition("#")
        path = Path(text if sep and index.isdigit() else str(key))
        if str(path) in seen:
            continue
        seen.add(str(path))
        add(str(path.expanduser().resolve()), "absolute input path")
        rel = relative_path(path, roots)
        add(rel, "input path")
        for part in Path(rel).parts:
            add(part, "input file or folder name")
            stem = part.split(".", 1)[0]
            add(stem, "input file or folder name")
        files = sorted(path.iterdir())[:1] if path.is_dir() else [path]
        for file in files:
            if file.is_file() and (file.suffix.lower() in (".dcm", ".dicom", "") or path.is_dir()):
                for value, keyword in dicom_identifiers(file).items():
                    add(value, f"DICOM {keyword}")
    return found


#: A base64 data URI (images embedded in ``index.html``): scanned decoded, as its encoded text holds any
#: 4-letter value by chance (about once per 17 M characters per value).
_DATA_URI = re.compile(rb"base64,([A-Za-z0-9+/]+={0,2})")


def _payloads(path: Path) -> list[bytes]:
    """The raw bytes of a file, plus what gzip / zip (npz) members / PNG text chunks / base64 data URIs
    decode to (a data URI's encoded text is left out of the raw bytes)."""
    return _decoded(path.read_bytes(), nested=True)


def _decoded(raw: bytes, nested: bool) -> list[bytes]:
    uris = list(_DATA_URI.finditer(raw)) if nested else []
    out = [_DATA_URI.sub(b"base64,", raw) if uris else raw]
    try:
        if raw[:2] == b"\x1f\x8b":
            out.append(gzip.decompress(raw))
        elif raw[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                out += [name.encode() for name in zf.namelist()]
                out += [zf.read(name) for name in zf.namelist()]
        elif raw[:8] == b"\x89PNG\r\n\x1a\n":
            from PIL import Image

            with Image.open(io.BytesIO(raw)) as im:
                out += [f"{k}={v}".encode("utf-8", "replace") for k, v in im.info.items() if isinstance(v, str)]
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        pass  # a damaged archive is still scanned as raw bytes
    for uri in uris:
        try:
            out += _decoded(base64.b64decode(uri.group(1), validate=True), nested=False)
        except binascii.Error:
            out.append(uri.group(1))  # not valid base64: scanned as written
    return out


def find_identifiers(run_dir: str | os.PathLike[str], forbidden: Mapping[str, str],
                     files: Iterable[str | os.PathLike[str]] | None = None) -> list[tuple[str, str]]:
    """Scan every file under ``run_dir`` (or only ``files``, inside it) — name and bytes — for ``forbidden``.

    Returns:
        ``[(file relative to run_dir, kind)]`` for each hit (the value itself is not repeated, so the
        result can be printed); ``[]`` when the folder is clean.
    """
    root = Path(run_dir)
    # UTF-16/32 too: numpy stores string arrays (npz) as UTF-32, DICOM and Windows tools use UTF-16
    needles = [([value.encode(enc) for enc in ("utf-8", "utf-16-le", "utf-32-le")], kind)
               for value, kind in forbidden.items() if value]
    hits: list[tuple[str, str]] = []
    chosen = root.rglob("*") if files is None else (Path(f) for f in files)
    for file in sorted(p for p in chosen if p.is_file()):
        rel = file.relative_to(root).as_posix()
        blobs = [rel.encode("utf-8"), *_payloads(file)]
        for encoded, kind in needles:
            if any(needle in blob for needle in encoded for blob in blobs):
                hits.append((rel, kind))
    return hits


def audit_run(run_dir: str | os.PathLike[str], inputs: Iterable[str], roots: Mapping[str, str | os.PathLike[str]],
              allowed: Iterable[str] = ()) -> None:
    """The last step of an ``--anonymize`` run: fail when any output still holds patient data.

    Raises:
        AdaptCLIPError: names the files and the kind of identifier found (never the value).
    """
    from adaptclip_med.runtime.errors import AdaptCLIPError

    hits = find_identifiers(run_dir, collect_identifiers(inputs, roots, allowed))
    if hits:
        shown = "; ".join(f"{f} ({kind})" for f, kind in hits[:5])
        msg = (f"--anonymize: {len(hits)} output file(s) of {run_dir} still contain patient data: {shown}"
               f"{' ...' if len(hits) > 5 else ''}; do not share this folder (please report this as a bug)")
        raise AdaptCLIPError(msg)


__all__ = ["AUDITED_VRS", "LAYOUT_WORDS", "audit_run", "collect_identifiers", "dicom_identifiers", "find_identifiers"]
