"""Volume outputs: the per-slice anomaly maps as a NIfTI volume on the source grid, and a slice montage.

Slices are the ones the data pipeline produced (``select_slice``: the closest-canonical (RAS) volume,
slice ``k`` along ``axis``, shown rotated by 90°). The map of each scored slice is resized to the slice's
size, rotated back and placed at ``k``; slices that were not scored stay 0. The volume is then put back
into the **source's** voxel order and written with the source's affine (and its qform/sform codes), so
voxel ``(i, j, k)`` of the map is voxel ``(i, j, k)`` of the scan, whatever its orientation (LPS, oblique),
and any viewer overlays the two.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from matplotlib.figure import Figure

from adaptclip_med.reporting.labels import mark_figure
from adaptclip_med.reporting.overlays import COLOURBAR_LABEL, resize_map
from adaptclip_med.runtime.io import atomic_path

NIFTI_ENDINGS = (".nii", ".nii.gz")


def is_nifti(path: str) -> bool:
    """True for ``.nii`` / ``.nii.gz`` files."""
    return str(path).lower().endswith(NIFTI_ENDINGS)


def volume_file_stem(source: str, pseudonymiser: Any = None) -> str:
    """A name for a volume's outputs that carries no file name or patient id.

    With a :class:`~adaptclip_med.runtime.privacy.Pseudonymiser` (``--anonymize``): the volume's salted pseudonym.
    """
    if pseudonymiser is not None:
        return pseudonymiser.path_of(source)
    return hashlib.sha1(str(source).encode()).hexdigest()[:10]


def map_volume(source: str, slice_maps: dict[int, np.ndarray], axis: int = 2) -> nib.Nifti1Image:
    """Assemble slice maps into a volume on the voxel grid of ``source``.

    Args:
        source: NIfTI file the slices came from.
        slice_maps: ``{slice index: (h, w) map}`` at any size; the index counts along ``axis`` of the
            closest-canonical (RAS) volume, as the data pipeline slices it.
        axis: slicing axis of the canonical volume (the data pipeline's ``axis``, default 2).

    Returns:
        A float32 ``Nifti1Image`` with the source's spatial shape ``(X, Y, Z)``, voxel order and affine.
    """
    src = nib.load(str(source))
    to_ras = nib.orientations.io_orientation(src.affine)  # source axes -> RAS axes (as_closest_canonical)
    shape = tuple(int(src.shape[int(a)]) for a in np.argsort(to_ras[:, 0]))  # canonical spatial shape
    vol = np.zeros(shape, dtype=np.float32)
    plane = [s for i, s in enumerate(shape) if i != axis]  # (a, b); the displayed slice is (b, a)
    for k, amap in slice_maps.items():
        shown = resize_map(np.asarray(amap, dtype=np.float32), (plane[1], plane[0]))
        index = [slice(None)] * 3
        index[axis] = int(k)
        vol[tuple(index)] = np.rot90(shown, -1)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), to_ras)
    data = np.ascontiguousarray(nib.orientations.apply_orientation(vol, back), dtype=np.float32)
    img = nib.Nifti1Image(data, src.affine)
    header = src.header
    if isinstance(header, nib.Nifti1Header):  # keep how the source declared its space (codes, qform)
        sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
        img.set_sform(header.get_sform() if sform_code else src.affine, code=sform_code or (0 if qform_code else 2))
        img.set_qform(header.get_qform() if qform_code else src.affine, code=qform_code)
    img.header.set_xyzt_units("mm")
    return img


def save_nifti(img: nib.Nifti1Image, path: Path) -> Path:
    """Write a ``.nii.gz`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(img.to_bytes(), mtime=0))
    return path


def montage_figure(slices: list[tuple[int, np.ndarray, np.ndarray]], vmin: float, vmax: float,
                   threshold: float | None = None, columns: int = 4, notice: str | None = None) -> Figure:
    """Slice montage: each panel the slice with its map overlaid (fixed colour limits).

    Args:
        slices: ``(slice index, (H, W[, 3]) uint8 image, (h, w) map)`` in display order.
        vmin, vmax: colour limits.
        threshold: map value drawn as a white contour.
        columns: panels per row.
        notice: burned in under the panels (untrained model; :mod:`adaptclip_med.reporting.labels`).
    """
    rows = -(-len(slices) // columns)
    fig = Figure(figsize=(2.2 * columns, 2.2 * rows), constrained_layout=True)
    axes = fig.subplots(rows, columns, squeeze=False)
    im = None
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (k, image, amap) in zip(axes.ravel(), slices, strict=False):
        m = resize_map(amap, image.shape[:2])
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        im = ax.imshow(m, cmap="jet", vmin=vmin, vmax=vmax, alpha=0.45)
        if threshold is not None and m.min() < threshold < m.max():
            ax.contour(m, levels=[threshold], colors="white", linewidths=0.8)
        ax.set_title(f"slice {k}", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01).set_label(COLOURBAR_LABEL)
    return mark_figure(fig, notice)
