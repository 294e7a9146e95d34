"""Loaders of the industrial sets (publishers' trees): MVTec AD, VisA, BTAD, MPDD, MVTec 3D-AD (RGB),
Magnetic Tile Defects. Sets with a normal train split use it as the prompt pool (policy ``train``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from adaptclip_med.data.layouts.common import LoadedSet, folder_records, orphan_masks, require_dir, same_stem
from adaptclip_med.data.readers.screen import screen_image, screen_mask
from adaptclip_med.data.records import Problem, Record


def _classes(root: Path, name: str, marker: str, tree: str) -> list[Path]:
    require_dir(root, name, tree)
    classes = sorted(p for p in root.iterdir() if p.is_dir() and (p / marker).is_dir())
    if not classes:
        require_dir(root / f"<class>/{marker}", name, tree)
    return classes


def _mvtec_like(root: Path, name: str, *, good: str = "good", gt: str = "ground_truth",
                mask_suffix: str = "_mask", sub: str = "") -> LoadedSet:
    """``<cls>/train/<good>[/sub]``, ``<cls>/test/<type>[/sub]``, masks in ``<cls>/<gt>/<type>``."""
    tree = f"<class>/train/{good}/, <class>/test/<type>/, <class>/{gt}/<type>/"
    problems: list[Problem] = []
    records: list[Record] = []
    for cdir in _classes(root, name, "test", tree):
        cls = cdir.name
        train = cdir / "train" / good / sub
        if train.is_dir():
            records += folder_records(train, label=0, cls=cls, split="train", dataset=name, problems=problems)
        for tdir in sorted(p for p in (cdir / "test").iterdir() if p.is_dir()):
            label = int(tdir.name != good)
            if sub:
                mask_dir = tdir / "gt"
            else:
                mask_dir = cdir / gt / tdir.name
            finder = same_stem(mask_dir, suffix_add=mask_suffix)
            records += folder_records(tdir / sub, label=label, cls=cls, split="test", dataset=name,
                                      problems=problems, mask_for=finder if label else None,
                                      need_mask=True)
            orphan_masks(mask_dir, [tdir / sub], problems, suffix_add=mask_suffix)
    return LoadedSet(records, problems, policy="train")


def load_mvtec(root: Path, **_: object) -> LoadedSet:
    """MVTec AD: ``<cls>/train/good``, ``<cls>/test/<defect>``, ``<cls>/ground_truth/<defect>/*_mask.png``."""
    return _mvtec_like(root, "mvtec")


def load_mpdd(root: Path, **_: object) -> LoadedSet:
    """MPDD: the MVTec AD layout."""
    return _mvtec_like(root, "mpdd")


def load_btad(root: Path, **_: object) -> LoadedSet:
    """BTAD: ``<01|02|03>/train/ok``, ``test/{ok,ko}``, ``ground_truth/ko/<stem>.png|.bmp``."""
    return _mvtec_like(root, "btad", good="ok", mask_suffix="")


def load_mvtec3d(root: Path, **_: object) -> LoadedSet:
    """MVTec 3D-AD, RGB only: ``<cls>/train/good/rgb``, ``<cls>/test/<type>/{rgb,gt}`` (same names)."""
    return _mvtec_like(root, "mvtec3d", mask_suffix="", sub="rgb")


def load_visa(root: Path, **_: object) -> LoadedSet:
    """VisA: ``split_csv/1cls.csv`` (object, split, label, image, mask) over ``<cls>/Data/...``.

    Without the CSV, ``<cls>/Data/Images/{Normal,Anomaly}`` are all read as test images.
    """
    csv_path = root / "split_csv" / "1cls.csv"
    problems: list[Problem] = []
    records: list[Record] = []
    if not csv_path.is_file():
        tree = "<class>/Data/Images/{Normal,Anomaly}, <class>/Data/Masks/Anomaly (+ split_csv/1cls.csv)"
        for cdir in _classes(root, "visa", "Data", tree):
            images = cdir / "Data" / "Images"
            masks = same_stem(cdir / "Data" / "Masks" / "Anomaly")
            records += folder_records(images / "Normal", label=0, cls=cdir.name, split="test",
                                      dataset="visa", problems=problems)
            records += folder_records(images / "Anomaly", label=1, cls=cdir.name, split="test",
                                      dataset="visa", problems=problems, mask_for=masks, need_mask=True)
        return LoadedSet(records, problems, policy="holdout")
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            image = root / row["image"]
            mask = root / row["mask"] if row.get("mask") else None
            label = int(row["label"] == "anomaly")
            if not image.is_file():
                problems.append((str(image), f"listed in {csv_path.name} but missing; skipped"))
                continue
            if label and (mask is None or not mask.is_file()):
                problems.append((str(image), f"mask missing (listed in {csv_path.name}: {row.get('mask')!r}); "
                                             "skipped"))
                continue
            why = screen_image(image) or (screen_mask(mask) if label and mask else None)
            if why is not None:
                problems.append((str(image), why))
                continue
            records.append(Record(str(image), str(mask) if label and mask else None, label, row["object"],
                                  "train" if row["split"] == "train" else "test", None, "visa"))
    return LoadedSet(records, problems, policy="train")


def load_magnetic_tile(root: Path, **_: object) -> LoadedSet:
    """Magnetic Tile Defects: ``MT_<Type>/Imgs/<stem>.jpg`` + mask ``<stem>.png``; ``MT_Free`` normal."""
    tree = "MT_<Type>/Imgs/<stem>.jpg with <stem>.png masks (MT_Free = defect-free)"
    require_dir(root / "MT_Free" / "Imgs", "magnetic_tile", tree)
    problems: list[Problem] = []
    records: list[Record] = []
    for tdir in sorted(p for p in root.glob("MT_*") if (p / "Imgs").is_dir()):
        label = int(tdir.name != "MT_Free")
        imgs = tdir / "Imgs"
        records += folder_records(imgs, label=label, cls="magnetic_tile", split="test",
                                  dataset="magnetic_tile", problems=problems, suffixes=(".jpg",),
                                  mask_for=same_stem(imgs, (".png",)) if label else None, need_mask=True)
        orphan_masks(imgs, [imgs], problems, suffixes=(".png",), image_suffixes=(".jpg",))
    return LoadedSet(records, problems, policy="holdout")
