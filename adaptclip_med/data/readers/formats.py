"""Which reader a file needs, decided by its content (magic bytes), not only by its name.

=========  ===========================================================  ======================
format     recognised by                                                read with
=========  ===========================================================  ======================
``dicom``  ``DICM`` at byte 128 (checked first: a DICOM preamble may     pydicom (a series
           look like a TIFF header); a folder (a series); no preamble    folder: the same reader,
           but a group 0002/0008 tag first and a DICOM suffix            file by file)
``tiff``   ``II*\\0``, ``MM\\0*`` (and BigTIFF ``II+\\0``, ``MM\\0+``)      tifffile
``pil``    PNG, JPEG, BMP, GIF, WebP signatures                         MONAI ``PILReader``
``nifti``  a 348/540-byte NIfTI-1/2 header (``sizeof_hdr``, magic         MONAI ``NibabelReader``
           ``n+1``/``ni1``/``n+2``), raw or inside gzip
=========  ===========================================================  ======================

A file whose content matches none of these raises a one-line :class:`ImageReadError` that says what
the content is (text, gzip without a NIfTI header, unknown binary), never a reader's traceback.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from adaptclip_med.data.records import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, has_suffix
from adaptclip_med.runtime.errors import ImageReadError

FORMATS: tuple[str, ...] = ("pil", "tiff", "dicom", "nifti")

_PIL_MAGIC: tuple[bytes, ...] = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a")
_TIFF_MAGIC: tuple[bytes, ...] = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_NIFTI_MAGIC: tuple[bytes, ...] = (b"n+1\x00", b"ni1\x00", b"n+2\x00", b"ni2\x00")
_EXPECTED = {"nifti": "NIfTI", "dicom": "DICOM", "image": "PNG/JPEG/BMP/TIFF"}

#: What a decoder raises when the bytes end early (``struct`` unpacking a cut chunk header, gzip/zlib
#: streams cut short); messages saying so ("image file is truncated", tifffile's "failed to read N bytes").
_TRUNCATION_ERRORS: tuple[type[BaseException], ...] = (struct.error, EOFError, zlib.error)
_TRUNCATION_WORDS = ("truncated", "failed to read")


def truncation_problem(exc: BaseException, kind: str) -> str | None:
    """``"<kind> file is truncated or corrupt"`` when ``exc`` (or its innermost cause) says the bytes
    ended early, else ``None`` (the caller keeps the library's own line)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if isinstance(root, _TRUNCATION_ERRORS) or any(w in str(root).lower() for w in _TRUNCATION_WORDS):
        return f"{kind} file is truncated or corrupt"
    return None


def _is_nifti_header(head: bytes) -> bool:
    """True for the first bytes of a NIfTI-1 (``sizeof_hdr`` 348) or NIfTI-2 (540) header."""
    if len(head) < 4:
        return False
    sizes = {struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]}
    if 348 in sizes:
        return len(head) < 348 or head[344:348] in _NIFTI_MAGIC
    return 540 in sizes and head[4:8] in _NIFTI_MAGIC


def _gunzip_head(path: Path, n: int = 348) -> bytes | None:
    """First ``n`` decompressed bytes of a gzip file, or ``None`` when it does not decompress."""
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError, zlib.error):
        return None


def describe_content(head: bytes) -> str:
    """A short human description of a file's first bytes (for error messages)."""
    if head[:2] == b"\x1f\x8b":
        return "gzip data"
    sample = head[:64]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return "text"
    return "unknown binary data"


def sniff(head: bytes) -> str | None:
    """Format of a file from its first 132+ bytes (``None`` when nothing matches).

    ``"gzip"`` is returned for gzip data (the caller decides whether it holds NIfTI).
    """
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_TIFF_MAGIC):
        return "tiff"
    if head.startswith(_PIL_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "pil"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if _is_nifti_header(head):
        return "nifti"
    return None


def image_format(path: str | Path) -> str:
    """Return ``"pil"``, ``"tiff"``, ``"dicom"`` or ``"nifti"`` for a file, ``"dicom"`` for a folder.

    The content decides (a PNG named ``.dcm`` is read as PNG); the suffix only breaks ties for DICOM
    files written without the 128-byte preamble.

    Raises:
        ImageReadError: missing path, empty file, or content that is no supported format (the message
            says what the content looks like, e.g. "text" for a text file named ``.nii.gz``).
    """
    p = Path(path)
    if p.is_dir():
        return "dicom"
    if not p.exists():
        raise ImageReadError(p, "file not found", "check the path (data sets are read in place)")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "file is empty (0 bytes)", "re-download or remove it")
    try:
        with p.open("rb") as fh:
            head = fh.read(352)
    except OSError as exc:
        raise ImageReadError(p, f"cannot be opened ({exc.strerror or exc})", "check its permissions") from exc
    fmt = sniff(head)
    if fmt == "gzip":
        inner = _gunzip_head(p)
        if inner is not None and _is_nifti_header(inner):
            return "nifti"
        what = "gzip data that does not decompress" if inner is None else "gzip data without a NIfTI header"
        raise ImageReadError(p, f"content is {what}", "re-download the file or export it as NIfTI again")
    if fmt is not None:
        return fmt
    if has_suffix(p, DICOM_SUFFIXES) and head[:2] in (b"\x02\x00", b"\x08\x00"):
        return "dicom"  # a DICOM data set written without preamble and file meta
    expected = ("nifti" if has_suffix(p, NIFTI_SUFFIXES) else "dicom" if has_suffix(p, DICOM_SUFFIXES)
                else "image" if has_suffix(p, IMAGE_SUFFIXES) else None)
    content = describe_content(head)
    if expected is None:
        supported = ", ".join(IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES)
        raise ImageReadError(p, f"unsupported file type {p.suffix!r} (content is {content})",
                             f"use one of {supported}")
    raise ImageReadError(p, f"not a {_EXPECTED[expected]} file: its content is {content}",
                         "re-download or re-export it")
