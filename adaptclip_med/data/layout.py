"""Helpers shared by the data set loaders: folder checks, record lists with masks and problems."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataValidationError
from .records import IMAGE_SUFFIXES, SUPPORTED_SUFFIXES, Problem, Record, list_files, strip_suffix

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
                   group: Callable[[Path], str | None] | None = None, series: bool = False
                   ) -> list[Record]:
    """Records of every image in ``folder`` (sorted); problems appended for empty folders/files.

    Args:
        mask_for: finds an image's mask (``None`` = no masks in this set).
        need_mask: report abnormal images without a mask (the image is kept, without mask).
        group: patient/volume id of an image, if known.
        series: also take sub-folders holding DICOM files (one record each: the middle slice).
    """
    files = list_files(folder, tuple(suffixes))
    if series and folder.is_dir():
        from .dicom import series_files  # pydicom loads when a folder is read, not with the registry

        files = sorted(files + [p for p in folder.iterdir() if p.is_dir() and series_files(p)])
    if not files:
        problems.append((str(folder), f"empty folder: no {'/'.join(suffixes)} files"))
        return []
    out: list[Record] = []
    for path in files:
        if path.is_file() and path.stat().st_size == 0:
            problems.append((str(path), "file is empty (0 bytes); skipped"))
            continue
        mask = mask_for(path) if mask_for is not None else None
        if mask is None and need_mask and label == 1:
            problems.append((str(path), "mask missing (expected beside the other masks, same stem)"))
        out.append(Record(image=str(path), mask=None if mask is None else str(mask), label=label,
                          cls=cls, split=split, group=group(path) if group else None, dataset=dataset))
    return out
