"""The generic ``folder`` data set for users' own images, and normal-prompt folders.

Layout (any supported format — PNG/JPEG/BMP/TIFF, DICOM, NIfTI, DICOM series sub-folders (middle
slice) — in any folder)::

    root/normal/       normal images (label 0)
    root/abnormal/     abnormal images (label 1)
    root/masks/        optional: the mask of an abnormal image under the same file stem
    root/prompts/      optional: normal images reserved as few-shot prompts (never tested)
    root/labels.csv    optional: patient/study group per image (columns ``image``, ``group``)

Without ``prompts/``, a seeded hold-out of ``normal/`` is used as the prompt pool (see
:func:`~adaptclip_med.data.layouts.dataset_registry.load_dataset`).
One class, named ``cls`` (default: the data set's label —
``--datasets my_ct=folder`` → ``my_ct``, else ``folder`` — never the input folder's name, which may
name a patient).
Groups (:mod:`~adaptclip_med.data.layouts.groups`): ``group_pattern`` / ``labels.csv`` / DICOM PatientID
(hashed), else none (image-level).
"""

from __future__ import annotations

from pathlib import Path

from adaptclip_med.data.layouts.common import LoadedSet, folder_records, orphan_masks, require_dir, same_stem
from adaptclip_med.data.layouts.groups import GroupRule, group_rule
from adaptclip_med.data.records import SUPPORTED_SUFFIXES, Problem, Record


def load_folder(root: Path, *, cls: str | None = None, label: str | None = None, dataset: str = "folder",
                **_: object) -> LoadedSet:
    """Read the generic layout (see module docstring); the class is ``cls``, else ``label``, else ``dataset``."""
    tree = "normal/, abnormal/, optional masks/ and prompts/"
    require_dir(root, dataset, tree)
    name = cls or label or dataset
    problems: list[Problem] = []
    masks = same_stem(root / "masks")
    has_masks = (root / "masks").is_dir()
    group = group_rule(root, labels=root / "labels.csv")
    records: list[Record] = []
    for sub, label in (("normal", 0), ("abnormal", 1)):
        if (root / sub).is_dir():
            records += folder_records(root / sub, label=label, cls=name, split="test", dataset=dataset,
                                      problems=problems, mask_for=masks if label else None,
                                      suffixes=SUPPORTED_SUFFIXES, need_mask=has_masks, series=True,
                                      other_files=True, group=group)
    if not (root / "normal").is_dir() and not (root / "abnormal").is_dir():
        require_dir(root / "normal", dataset, tree)
    orphan_masks(root / "masks", [root / "normal", root / "abnormal"], problems)
    policy = "holdout"
    if (root / "prompts").is_dir():
        records += prompt_folder_records(root / "prompts", cls=name, dataset=dataset, problems=problems,
                                         group=group)
        policy = "train"
    return LoadedSet(records, problems, policy=policy)


def prompt_folder_records(folder: Path, *, cls: str, dataset: str, problems: list[Problem],
                          group: GroupRule | None = None) -> list[Record]:
    """Normal prompt candidates from a flat folder of images (split ``"prompt_pool"``, label 0)."""
    return folder_records(folder, label=0, cls=cls, split="prompt_pool", dataset=dataset, problems=problems,
                          suffixes=SUPPORTED_SUFFIXES, series=True, other_files=True, group=group)
