"""Helpers shared by the data set loaders: folder checks, record lists with masks and problems."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from adaptclip_med.data.readers.screen import is_dicom_file, screen_image, screen_mask
from adaptclip_med.data.records import (
    IMAGE_SUFFIXES,
    SUPPORTED_SUFFIXES,
    Problem,
    Record,
    has_suffix,
    list_files,
    strip_suffix,
)
from adaptclip_med.runtime.errors import DataValidationError

MaskFinder = Callable[[Path], Path | None]

#: How a set provides normal prompts: its own normal train split, a seeded hold-out of normal test
#: images, or none at all (polyp / lesion sets where every image is abnormal).
PROMPT_POLICIES: tuple[str, ...] = ("train", "holdout", "none")


@dataclass
class LoadedSet:
    """What a loader returns before the prompt policy is applied."""

    records: list[Record]
    problems: list[Problem] = field(default_factory=list)
    policy: str = "holdout"
    note: str = ""
    warnings: list[Problem] = field(default_factory=list)


def require_dir(path: Path, dataset: str, expected: str) -> Path:
    """Return ``path`` if it is a folder, else raise naming it and the expected tree.

    Raises:
        DataValidationError: the folder does not exist.
    """
    if not path.is_dir():
        msg = (f"{dataset}: folder {path} not found; expected the publisher's tree {expected} "
               f"(see datasets/{dataset}/README.md)")
        raise DataValidationError(msg)
    return path


def first_dir(root: Path, candidates: Iterable[str]) -> Path | None:
    """The first existing ``root / candidate`` folder, or ``None``."""
    for cand in candidates:
        if (root / cand).is_dir():
            return root / cand
    return None


def same_stem(mask_dir: Path, suffixes: Iterable[str] = SUPPORTED_SUFFIXES, suffix_add: str = ""
              ) -> MaskFinder:
    """Mask finder: ``mask_dir / (stem + suffix_add + any suffix)``; exact name first."""
    index: dict[str, Path] = {}
    if mask_dir.is_dir():
        for p in list_files(mask_dir, tuple(suffixes)):
            index.setdefault(strip_suffix(p.name), p)
            index[p.name] = p

    def find(image: Path) -> Path | None:
        if not suffix_add and image.name in index:
            return index[image.name]
        return index.get(strip_suffix(image.name) + suffix_add)

    return find


def folder_records(folder: Path, *, label: int, cls: str, split: str, dataset: str,
                   problems: list[Problem], mask_for: MaskFinder | None = None,
                   suffixes: Iterable[str] = IMAGE_SUFFIXES, need_mask: bool = False,
                   group: Callable[[Path], str | None] | None = None, series: bool = False,
                   other_files: bool = False) -> list[Record]:
    """Records of every usable image in ``folder`` (sorted); every other file goes to ``problems``.

    Each candidate is screened (:func:`~adaptclip_med.data.readers.screen.screen_image`: folders named like
    images, 0-byte files, non-image DICOM, images under 2 px) and so is the mask of an abnormal image
    (:func:`~adaptclip_med.data.readers.screen.screen_mask`: a folder or a 0-byte file; a mask without
    foreground is kept and warned of by ``load_dataset``). A skipped file is
    listed with its reason and left out of the records; nothing is dropped silently.

    Args:
        mask_for: finds an image's mask (``None`` = no masks in this set).
        need_mask: skip (and list) abnormal images without a mask.
        group: patient/volume id of an image, if known.
        series: also take sub-folders holding DICOM files (one record each: the middle slice).
        other_files: users' folders: DICOM files without a suffix (``DICOMDIR``, ``IM0001``) are
            candidates, and every other file is listed as unsupported (publishers' trees: ignored).
    """
    from adaptclip_med.data.readers.dicom_header import (
        series_files,  # pydicom loads when a folder is read, not with the registry
    )

    suffixes = tuple(suffixes)
    files = list_files(folder, suffixes)
    if folder.is_dir():  # folders named like images (x.png/) are candidates too: listed, not dropped
        dirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                and ((series and series_files(p)) or has_suffix(p, suffixes))]
        files = sorted(files + dirs)
    if folder.is_dir():  # a broken link is listed, not dropped
        files += [p for p in folder.iterdir() if p.is_symlink() and not p.exists() and has_suffix(p, suffixes)]
        files.sort()
    if other_files and folder.is_dir():
        for p in sorted(folder.iterdir()):
            if not p.is_file() or p.name.startswith(".") or has_suffix(p, suffixes):
                continue
            if is_dicom_file(p):
                files.append(p)
            else:
                problems.append((str(p), f"unsupported file type {p.suffix or '(no suffix)'!r}; expected "
                                         f"{'/'.join(suffixes)}; ignored"))
        files.sort()
    if not files:
        problems.append((str(folder), f"empty folder: no {'/'.join(suffixes)} files"))
        return []
    out: list[Record] = []
    for path in files:
        why = screen_image(path, series=series and path.is_dir() and bool(series_files(path)))
        if why is not None:
            problems.append((str(path), why))
            continue
        mask = mask_for(path) if mask_for is not None else None
        if mask is None and need_mask and label == 1:
            problems.append((str(path), "mask missing (expected beside the other masks, same stem); skipped"))
            continue
        if mask is not None and label == 1 and (why := screen_mask(mask)) is not None:
            problems.append((str(path), why))
            continue
        out.append(Record(image=str(path), mask=None if mask is None else str(mask), label=label,
                          cls=cls, split=split, group=group(path) if group else None, dataset=dataset))
    return out


def orphan_masks(mask_dir: Path, image_dirs: Iterable[Path], problems: list[Problem], *,
                 suffixes: Iterable[str] = SUPPORTED_SUFFIXES, suffix_add: str = "",
                 image_suffixes: Iterable[str] = SUPPORTED_SUFFIXES) -> None:
    """List every mask of ``mask_dir`` whose image (same stem, minus ``suffix_add``) is in no ``image_dirs``."""
    if not mask_dir.is_dir():
        return
    stems: set[str] = set()
    for d in image_dirs:
        for p in list_files(d, tuple(image_suffixes)):
            stems.add(strip_suffix(p.name))
            stems.add(p.name)
        if d.is_dir():
            stems.update(p.name for p in d.iterdir() if p.is_dir())
    for mask in list_files(mask_dir, tuple(suffixes)):
        stem = strip_suffix(mask.name)
        if suffix_add and stem.endswith(suffix_add):
            stem = stem[: -len(suffix_add)]
        if stem not in stems and mask.name not in stems:
            where = ", ".join(sorted({d.name + "/" for d in image_dirs}))
            problems.append((str(mask), f"mask without its image (no {stem}.* in {where}); ignored"))
