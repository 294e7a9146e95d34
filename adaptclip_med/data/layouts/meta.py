"""AnomalyCLIP-style ``meta.json`` import and export (used by APRIL-GAN, AdaCLIP, AdaptCLIP, UniVAD).

Schema::

    {"train": {cls: [item, ...]}, "test": {cls: [item, ...]}}
    item = {"img_path": str, "mask_path": str ("" if none), "cls_name": str,
            "specie_name": str ("good" for normal images), "anomaly": 0 | 1}

Paths are relative to the data root (as the peers write them) unless absolute. Export writes the test
records under ``"test"`` and the prompt pool under ``"train"``; volume slices add ``"slice_index"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from adaptclip_med.data.layouts.common import LoadedSet
from adaptclip_med.data.readers.screen import screen_image, screen_mask
from adaptclip_med.data.records import DatasetIndex, Problem, Record
from adaptclip_med.runtime.errors import DataValidationError
from adaptclip_med.runtime.io import atomic_write_json


def _item(rec: Record, root: Path, relative: bool) -> dict[str, object]:
    def rel(p: str | None) -> str:
        if not p:
            return ""
        if relative:
            try:
                return Path(p).resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                return p
        return p

    item: dict[str, object] = {
        "img_path": rel(rec.image), "mask_path": rel(rec.mask), "cls_name": rec.cls,
        "specie_name": "good" if rec.label == 0 else Path(rec.image).parent.name, "anomaly": int(rec.label),
    }
    if rec.slice_index is not None:
        item["slice_index"] = rec.slice_index
    if rec.group is not None:
        item["group"] = rec.group
    return item


def export_meta(index: DatasetIndex, path: str | Path, *, relative: bool = True) -> Path:
    """Write ``index`` as meta.json (atomically) and return the path."""
    meta: dict[str, dict[str, list[dict[str, object]]]] = {"train": {}, "test": {}}
    for rec in index.records:
        meta["test"].setdefault(rec.cls, []).append(_item(rec, index.root, relative))
    for cls, pool in index.prompt_pool.items():
        meta["train"][cls] = [_item(r, index.root, relative) for r in pool]
    atomic_write_json(path, meta)
    return Path(path)


def load_meta(root: Path, *, meta: str | Path | None = None, **_: object) -> LoadedSet:
    """Read ``meta.json`` (``root/meta.json`` or the ``meta`` path); paths resolve against ``root``.

    Raises:
        DataValidationError: the file is missing or not in the schema above.
    """
    path = Path(meta) if meta else (root / "meta.json" if root.is_dir() else root)
    base = root if root.is_dir() else root.parent
    if not path.is_file():
        msg = f"meta: {path} not found; expected an AnomalyCLIP-style meta.json (see docs/data.md)"
        raise DataValidationError(msg)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sections = {s: data.get(s, {}) for s in ("train", "test")}
    except (json.JSONDecodeError, AttributeError) as exc:
        msg = f"{path}: not a meta.json object ({exc}); expected {{'train': {{cls: [...]}}, 'test': ...}}"
        raise DataValidationError(msg) from exc
    problems: list[Problem] = []
    records: list[Record] = []
    screened: dict[str, str | None] = {}
    for split, classes in sections.items():
        for cls, items in classes.items():
            for item in items:
                try:
                    image = base / item["img_path"]
                    mask = base / item["mask_path"] if item.get("mask_path") else None
                    label = int(item["anomaly"])
                except (KeyError, TypeError, ValueError) as exc:
                    problems.append((str(path), f"item {item!r} lacks img_path/anomaly ({exc}); skipped"))
                    continue
                if not image.exists():
                    problems.append((str(image), "listed in meta.json but missing; skipped"))
                    continue
                if mask is not None and not mask.exists():
                    problems.append((str(image), f"mask {mask.name} listed in meta.json but missing; skipped"))
                    continue
                if str(image) not in screened:  # volume slices share their file: screened (and listed) once
                    screened[str(image)] = screen_image(image, series=image.is_dir())
                    if screened[str(image)] is not None:
                        problems.append((str(image), screened[str(image)]))
                if screened[str(image)] is not None:
                    continue
                if label and mask is not None and item.get("slice_index") is None and (why := screen_mask(mask)):
                    problems.append((str(image), why))
                    continue
                records.append(Record(str(image), str(mask) if mask else None, label,
                                      str(item.get("cls_name", cls)), split, item.get("group"), "meta",
                                      item.get("slice_index")))
    policy = "train" if any(r.split == "train" and r.label == 0 for r in records) else "holdout"
    return LoadedSet(records, problems, policy=policy)
