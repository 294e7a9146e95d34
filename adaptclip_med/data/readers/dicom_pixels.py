"""Reading one DICOM file to modality values: non-image objects recognised, pixels decoded by pydicom's
plugins, then pydicom's ``apply_modality_lut`` (RescaleSlope/Intercept *or* Modality LUT Sequence).

* Objects that hold no image to score (Segmentation, RT Structure Set / Plan / Dose, Structured
  Reports, presentation states, key object selections, DICOMDIR, encapsulated documents, waveforms,
  or any object without pixel data) raise :class:`~adaptclip_med.runtime.errors.NotAnImageError` naming the
  SOP class.
* Compressed transfer syntaxes are decoded by pydicom's pixel-data plugins (pylibjpeg with its
  libjpeg / openjpeg / rle plugins, Pillow). A syntax that no installed plugin decodes raises an
  :class:`~adaptclip_med.runtime.errors.ImageReadError` that names the package to install
  (:func:`decoder_hint`), not the file.
* Enhanced (multi-frame) objects keep their rescale and window in functional groups: the shared
  group's values (else the first frame's) are copied to the top level before the LUTs are applied.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import UID

from adaptclip_med.runtime.errors import ImageReadError, NotAnImageError, exception_line

#: Words of SOP Class names (pydicom's UID dictionary) of objects that are not images to score.
NOT_IMAGE_NAMES: tuple[str, ...] = (
    "Segmentation", "SR Storage", "Presentation State", "Key Object Selection", "Media Storage Directory",
    "Encapsulated", "Waveform", "Raw Data", "Spatial Registration", "Spatial Fiducials", "Registration",
    "Real World Value Mapping", "Hanging Protocol", "Color Palette", "Implant", "Protocol Storage",
)
PIXEL_KEYWORDS: tuple[str, ...] = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

#: Transfer syntax UID prefix → (what it is, the pip package whose pydicom plugin decodes it).
DECODER_PACKAGES: dict[str, tuple[str, str]] = {
    "1.2.840.10008.1.2.4.5": ("JPEG", "pylibjpeg pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.7": ("JPEG Lossless", "pylibjpeg pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.8": ("JPEG-LS", "pylibjpeg pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.9": ("JPEG 2000", "pylibjpeg pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.20": ("HTJ2K", "pylibjpeg pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.5": ("RLE Lossless", "pylibjpeg pylibjpeg-rle"),
}
_UNNAMED_SYNTAXES: dict[str, str] = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless", "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL", "1.2.840.10008.1.2.4.100": "MPEG2", "1.2.840.10008.1.2.4.102": "MPEG-4",
}


def syntax_name(uid: str) -> str:
    """Readable name of a transfer syntax UID (``"UID (name)"`` when the name is known)."""
    name = UID(uid).name if UID(uid).name != uid else _UNNAMED_SYNTAXES.get(uid, "")
    return f"{uid} ({name})" if name else uid


def decoder_hint(uid: str) -> str:
    """The fix for an undecodable transfer syntax: the package to install, or how to convert the file."""
    for prefix, (_, package) in DECODER_PACKAGES.items():
        if uid.startswith(prefix):
            return f"install the decoder: pip install {package}"
    return ("pydicom has no decoder for this transfer syntax; convert the file to an uncompressed one "
            "(e.g. gdcmconv --raw in.dcm out.dcm, or dcmdjpeg)")


def sop_class_name(ds: pydicom.Dataset) -> str:
    """SOP Class name of a data set (DICOMDIR: its media storage class), or ``"unknown SOP class"``."""
    uid = ds.get("SOPClassUID") or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", None)
    if not uid:
        return "unknown SOP class"
    name = UID(str(uid)).name
    return name if name != str(uid) else f"SOP class {uid}"


def check_is_image(ds: pydicom.Dataset, path: str | Path, *, has_pixels: bool = True) -> None:
    """Raise :class:`NotAnImageError` for objects that hold no image to score.

    RT Image Storage is an image; every other ``RT ...`` object (structure set, plan, dose grid,
    treatment record) is not. ``has_pixels=False`` for headers read without their pixel data.
    """
    name = sop_class_name(ds)
    not_image = any(word in name for word in NOT_IMAGE_NAMES) or (name.startswith("RT ") and "Image" not in name)
    fix = "leave it out of the image folders (it annotates or describes images; it is not scored)"
    if not_image:
        raise NotAnImageError(path, f"DICOM {name} object, not an image", fix)
    if has_pixels and not any(k in ds for k in PIXEL_KEYWORDS):
        # pydicom stops silently at the end of the bytes: a file cut between two elements reads as an
        # image object (or a cut SOP Class UID) without its pixel data
        cut = "Image Storage" in name or name == "unknown SOP class" or name.startswith("SOP class ")
        hint = " (the file may be truncated)" if cut else ""
        raise NotAnImageError(path, f"DICOM {name} object without pixel data{hint}, not an image",
                              "re-export or re-download the complete file" if cut else fix)


def read_dataset(path: str | Path, *, pixels: bool) -> pydicom.Dataset:
    """``pydicom.dcmread`` with every failure turned into a one-line :class:`ImageReadError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (struct.error, EOFError) as exc:  # pydicom ran out of bytes while parsing an element
        raise ImageReadError(path, "DICOM file is truncated inside its header",
                             "re-export or re-download the complete file") from exc
    except BytesLengthException as exc:  # a header value shorter than its VR needs: cut (or corrupt) there
        raise ImageReadError(path, "DICOM file is truncated or corrupt inside its header",
                             "re-export or re-download the complete file") from exc
    except (InvalidDicomError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ImageReadError(path, f"not a readable DICOM file ({exception_line(exc)})",
                             "check that the file is a complete DICOM file") from exc


def flatten_functional_groups(ds: pydicom.Dataset) -> None:
    """Copy rescale and window of an enhanced multi-frame object to the top level (in place).

    The shared functional group wins; else the first frame's group (frames differing in their
    rescale are rare and not modelled).
    """
    groups = [ds.get("SharedFunctionalGroupsSequence"), ds.get("PerFrameFunctionalGroupsSequence")]
    for seq in groups:
        if not seq:
            continue
        item = seq[0]
        for macro, keywords in (("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept")),
                                ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction"))):
            if macro in item and item[macro].value:
                for kw in keywords:
                    if kw in item[macro][0] and kw not in ds:
                        setattr(ds, kw, item[macro][0][kw].value)


def decode_pixels(ds: pydicom.Dataset, path: str | Path) -> np.ndarray:
    """Decoded stored values ``(H, W)``, ``(F, H, W)``, ``(H, W, 3)`` or ``(F, H, W, 3)`` (YBR → RGB).

    Raises:
        ImageReadError: no decoder for the transfer syntax (names the package), corrupt or truncated
            pixel data.
    """
    from pydicom.pixels.decoders.base import get_decoder

    uid = str(getattr(ds.get("file_meta"), "TransferSyntaxUID", "") or pydicom.uid.ExplicitVRLittleEndian)
    try:
        decoder = get_decoder(UID(uid))
    except NotImplementedError as exc:
        raise ImageReadError(path, f"no pixel-data decoder for transfer syntax {syntax_name(uid)}",
                             decoder_hint(uid)) from exc
    if not decoder.is_available:
        raise ImageReadError(path, f"no installed decoder for transfer syntax {syntax_name(uid)}",
                             decoder_hint(uid))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = ds.pixel_array
    except Exception as exc:  # pydicom/plugins raise ValueError, RuntimeError, ... on bad data
        raise ImageReadError(path, f"pixel data cannot be decoded ({syntax_name(uid)}; {exception_line(exc)})",
                             "the file is truncated or corrupt; re-export it") from exc
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def is_colour(ds: pydicom.Dataset) -> bool:
    """True for RGB/YBR images (``SamplesPerPixel`` > 1)."""
    return int(ds.get("SamplesPerPixel", 1) or 1) > 1


def read_dicom(path: str | Path) -> tuple[np.ndarray, pydicom.Dataset]:
    """Read one DICOM file: ``(array, dataset)``, grey arrays after the modality LUT.

    Grey ``(H, W)`` / ``(F, H, W)`` float64 or integer modality values (HU for CT); colour
    ``(H, W, 3)`` / ``(F, H, W, 3)`` stored values (scale by ``BitsStored``); PALETTE COLOR: indices.

    Raises:
        NotAnImageError: a SEG, RT, SR, presentation state, DICOMDIR, ... or no pixel data.
        ImageReadError: unreadable file, undecodable pixel data.
    """
    from pydicom.pixels import apply_modality_lut

    ds = read_dataset(path, pixels=True)
    check_is_image(ds, path)
    flatten_functional_groups(ds)
    array = decode_pixels(ds, path)
    if is_colour(ds) or str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
        return array, ds
    try:
        return apply_modality_lut(array, ds), ds
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ImageReadError(path, f"modality LUT cannot be applied ({type(exc).__name__}: {exc})",
                             "check the Modality LUT Sequence / RescaleSlope tags") from exc
