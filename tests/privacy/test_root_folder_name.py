"""A data folder named like a patient: its name reaches no shared output (the class is the data set's label)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pandas as pd

from adaptclip_med.data import load_dataset, make_synthetic_folder
from adaptclip_med.runtime.audit import find_identifiers

TINY = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--checkpoint", "none", "--allow-random-backbone",
        "--image-size", "224", "--bootstrap", "20", "--shots", "0", "--seeds", "1", "--overlays", "2"]
#: Parts of the root folder's name. Each holds a character outside hex and base64 ("-", "_"): no hashed file
#: name or base64-embedded image can contain one by chance (a bare "DOE" can, in index.html's images).
NAMES = ("PAT-12345", "_DOE")


def _evaluate(args: list[str]) -> tuple[int, str]:
    from adaptclip_med.evaluate import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue()


def _patient_root(tmp_path: Path) -> Path:
    root = tmp_path / "PAT-12345_DOE"
    make_synthetic_folder(root, n_normal=6, n_abnormal=3, size=48, seed=0)
    return root


def test_single_class_layouts_are_named_by_label_or_cls(tmp_path: Path) -> None:
    root = _patient_root(tmp_path)
    assert load_dataset("folder", root).classes == ["folder"]
    assert load_dataset("folder", root, label="my_ct").classes == ["my_ct"]
    assert load_dataset("folder", root, label="my_ct", cls="liver").classes == ["liver"]  # explicit cls wins


def test_plain_run_shares_no_root_folder_name(tmp_path: Path) -> None:
    root, out = _patient_root(tmp_path), tmp_path / "run"
    code, err = _evaluate(["--datasets", "folder", "--root", str(root), *TINY, "--out", str(out)])
    assert code == 0, err
    assert set(pd.read_csv(out / "summary.csv")["class"]) <= {"folder", "Avg"}
    shared = [out / "index.html", *sorted((out / "tables").rglob("*"))]
    assert len(shared) > 2 and any((out / "overlays").iterdir()) and any((out / "figures").iterdir())
    assert find_identifiers(out, dict.fromkeys(NAMES, "root folder name"), files=shared) == []
    for folder in ("figures", "overlays"):
        for path in (out / folder).rglob("*"):
            rel = path.relative_to(out).as_posix()
            assert not [n for n in NAMES if n in rel], rel


def test_anonymized_run_has_no_root_folder_name_in_any_byte(tmp_path: Path) -> None:
    root, out, key = _patient_root(tmp_path), tmp_path / "run", tmp_path / "private" / "key.json"
    code, err = _evaluate(["--datasets", "my_ct=folder", "--root", f"my_ct={root}", *TINY, "--anonymize",
                           "--key-file", str(key), "--out", str(out)])
    assert code == 0, err
    assert set(pd.read_csv(out / "summary.csv")["class"]) <= {"my_ct", "Avg"}
    # every byte (and what gzip / npz / PNG text decompresses to) and every file name under the run
    assert find_identifiers(out, dict.fromkeys(NAMES, "root folder name")) == []
