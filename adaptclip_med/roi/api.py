"""``anatomy_mask`` / ``anatomy_regions``: one image → its anatomy ROI on the source pixel grid.

Every method runs on a working grid (long side 256 px; smaller pictures as they are) and the mask is
brought back to the source grid by nearest neighbour, so the time per image is bounded whatever the
source size.
"""

from __future__ import annotations

import numpy as np

from adaptclip_med.roi import chest, endoscopy, head
from adaptclip_med.roi.modality import detect_modality
from adaptclip_med.roi.morphology import to_source_grid, to_working_grid
from adaptclip_med.roi.source import ImageLike, display_image
from adaptclip_med.runtime.errors import ImageReadError

MODALITIES: tuple[str, ...] = ("auto", "mri", "ct", "xray", "endoscopy")
_ALIASES = {"mr": "mri"}


def anatomy_regions(image: ImageLike, modality: str = "auto",
                    slice_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(roi, ignore)``: ``(H, W)`` bool arrays on the source pixel grid of ``image``.

    Args:
        image: a path (any format the data package reads; volumes and multi-frame files give their
            default slice / frame, or ``slice_index``), or one 2-D picture as the readers return it:
            ``(H, W)`` grey or ``(H, W, 3)`` colour, any dtype (non-uint8 arrays get the display mapping).
        modality: ``"mri"``, ``"ct"``, ``"xray"``, ``"endoscopy"`` or ``"auto"``
            (:func:`~adaptclip_med.roi.modality.detect_modality`; ``"mr"`` is accepted for ``"mri"``).
        slice_index: slice / frame of a volume or multi-frame path.

    Returns:
        ``roi``: the anatomy (MRI/CT: head or body with its holes; X-ray: the lung fields; endoscopy:
        the field of view). ``ignore``: pixels of the ROI to leave out of scoring (endoscopy: specular
        highlights; empty for the other modalities). ``ignore`` is a subset of ``roi``.

    Raises:
        ValueError: unknown ``modality``.
        ImageReadError: unreadable file, or a blank picture (a single value everywhere: there is no
            anatomy to find; the message names the image and the value).
    """
    kind = _ALIASES.get(modality.lower(), modality.lower()) if isinstance(modality, str) else modality
    if kind not in MODALITIES:
        msg = f"modality {modality!r} unknown; expected one of {', '.join(MODALITIES)}"
        raise ValueError(msg)
    picture, dicom_modality, source = display_image(image, slice_index)
    if picture.max() == picture.min():
        raise ImageReadError(source, f"blank picture (every pixel is {int(picture.min())}): no anatomy to outline")
    if kind == "auto":
        kind = detect_modality(picture, dicom_modality)
    shape = picture.shape[:2]
    if kind == "xray":
        roi = chest.lung_fields(to_working_grid(picture, chest.WORK_SIDE))
        return to_source_grid(roi, shape), np.zeros(shape, dtype=bool)
    if kind == "endoscopy":
        work = to_working_grid(picture, endoscopy.WORK_SIDE)
        roi = endoscopy.field_of_view(work)
        ignore = endoscopy.specular(work, roi)
        return to_source_grid(roi, shape), to_source_grid(ignore, shape)
    roi = head.head_mask(to_working_grid(picture, head.WORK_SIDE))
    return to_source_grid(roi, shape), np.zeros(shape, dtype=bool)


def anatomy_mask(image: ImageLike, modality: str = "auto", slice_index: int | None = None) -> np.ndarray:
    """The anatomy ROI of ``image`` as an ``(H, W)`` bool array on its source grid.

    Same arguments and errors as :func:`anatomy_regions` (of which it is the ``roi``).
    """
    return anatomy_regions(image, modality, slice_index)[0]
