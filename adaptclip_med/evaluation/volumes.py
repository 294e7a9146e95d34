"""Bounded memory for volumes: NIfTI slice maps stream into one ``.npy`` memmap per volume on disk.

A part of a 4,000-slice data set would otherwise hold every slice map until it ends (≈ 2 GB). Here each
scored slice's map goes straight into ``parts/<stem>.volumes/<hash>.npy`` (float16, one row per query
slice of that volume); when the part ends, each volume is read back on its own, written as a NIfTI map
on the source grid with its montage, and the ``.npy`` files are removed. Only slot numbers stay in memory.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adaptclip_med.data.records import Record
from adaptclip_med.reporting import volumes as V
from adaptclip_med.reporting.overlays import save_png
from adaptclip_med.reporting.provenance import slug


@dataclass
class VolumeSink:
    """Where one part's NIfTI slice maps go while it is scored.

    Attributes:
        folder: ``parts/<stem>.volumes``.
        slots: ``{record key: (volume file, row)}`` for every NIfTI slice among the queries.
        sizes: ``{volume file: rows}``.
    """

    folder: Path
    slots: dict[str, tuple[str, int]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    records: dict[str, Record] = field(default_factory=dict)
    pseudonymiser: Any = None

    @classmethod
    def for_part(cls, folder: Path, queries: list[Record], pseudonymiser: Any = None) -> VolumeSink | None:
        """A sink for the NIfTI slices among ``queries``; None when there are none (``pseudonymiser``:
        ``--anonymize`` names the volume files by the volume's pseudonym)."""
        sink = cls(folder, pseudonymiser=pseudonymiser)
        for rec in queries:
            if rec.slice_index is not None and V.is_nifti(rec.image):
                row = sink.sizes.get(rec.image, 0)
                sink.slots[rec.key] = (rec.image, row)
                sink.sizes[rec.image] = row + 1
                sink.records[rec.key] = rec
        return sink if sink.slots else None

    def _file(self, source: str) -> Path:
        return self.folder / f"{V.volume_file_stem(source, self.pseudonymiser)}.npy"

    def write(self, recs: list[Record], maps: np.ndarray) -> None:
        """Store ``maps (B, S, S)`` of the batch's slices in their volumes' memmaps (flushed, closed)."""
        by_volume: dict[str, list[tuple[int, int]]] = {}
        for j, rec in enumerate(recs):
            if rec.key in self.slots:
                source, row = self.slots[rec.key]
                by_volume.setdefault(source, []).append((row, j))
        for source, pairs in by_volume.items():
            path = self._file(source)
            shape = (self.sizes[source], *maps.shape[1:])
            if not path.is_file():
                _create(path, shape)
            mm = np.lib.format.open_memmap(path, mode="r+")
            for row, j in pairs:
                mm[row] = maps[j].astype(np.float16)
            mm.flush()
            del mm

    def finish(self, out: Path, part: Any, transform: Any, map_range: tuple[float, float],
               threshold: float | None, skipped: set[str], max_panels: int = 12, notice: str | None = None
               ) -> list[str]:
        """Write each volume's NIfTI map and montage (one volume in memory at a time); remove the memmaps.

        Returns:
            the written ``.nii.gz`` paths, relative to ``out``.
        """
        written = []
        folder = out / "volumes" / part.dataset / slug(part.cls) / f"k{part.shots}"
        for source in self.sizes:
            path = self._file(source)
            if not path.is_file():
                continue
            stored = np.load(path, mmap_mode="r")
            rows = sorted((rec.slice_index, row, key) for key, (src, row) in self.slots.items()
                          if src == source and key not in skipped
                          for rec in (self.records[key],))
            if not rows:
                continue
            stem = V.volume_file_stem(source, self.pseudonymiser)
            V.save_nifti(V.map_volume(source, {k: np.asarray(stored[row], dtype=np.float32) for k, row, _ in rows}),
                         folder / f"{stem}.nii.gz")
            picks = sorted({round(float(x)) for x in np.linspace(0, len(rows) - 1, min(max_panels, len(rows)))})
            panels = [(rows[p][0], np.asarray(transform(self.records[rows[p][2]].as_dict())["image_u8"]),
                       np.asarray(stored[rows[p][1]], dtype=np.float32)) for p in picks]
            save_png(V.montage_figure(panels, *map_range, threshold=threshold), folder / f"{stem}_montage.png",
                     notice=notice)
            del stored
            written.append(str((folder / f"{stem}.nii.gz").relative_to(out)))
        shutil.rmtree(self.folder, ignore_errors=True)
        return written


def _create(path: Path, shape: tuple[int, ...]) -> None:
    """Create a zeroed float16 ``.npy`` of ``shape`` at ``path`` unless another process just did.

    Written beside and hard-linked into place, so torchrun ranks writing slices of the same volume
    never truncate each other's rows.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
    del mm
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another rank created it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)
