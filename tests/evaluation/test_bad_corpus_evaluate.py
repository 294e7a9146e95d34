"""The bad-input corpus (tests/bad_corpus.py) through ``evaluate``: every bad file listed in skipped.csv
with its reason, no good file flagged, every good image scored (or held out as a prompt), no traceback;
--strict: one line. And ``--group-pattern`` reaching the clinical intervals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from adaptclip_med.data import load_dataset
from adaptclip_med.evaluate import main


def _rel(path: str, root: Path) -> str:
    """Root-relative, as the outputs list it (a symbolic link by its own name, not its target's)."""
    return Path(path).absolute().relative_to(root.absolute()).as_posix()


def test_corpus_through_evaluate(bad_corpus: object, tmp_path: Path, tiny_args: list[str],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = bad_corpus.root
    out = tmp_path / "run"
    args = ["--datasets", "folder", "--root", str(root), *tiny_args, "--shots", "0", "1", "--seeds", "1",
            "--overlays", "0", "--no-figures", "--bootstrap", "0"]
    assert main([*args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    bad = {_rel(p, root): want for p, want in bad_corpus.bad.items()}
    good = {_rel(p, root) for p in bad_corpus.good}
    skipped = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False)
    reasons = dict(zip(skipped["path"], skipped["reason"], strict=True))
    assert sorted(set(bad) - set(reasons)) == []           # every bad file listed
    assert sorted(set(reasons) & good) == []                # no good file flagged
    assert set(reasons) == set(bad)                         # nothing else
    wrong = {p: (want, reasons[p]) for p, want in bad.items() if not re.search(want, reasons[p], re.IGNORECASE)}
    assert wrong == {}
    assert all("\n" not in r and str(root) not in r for r in reasons.values())
    per_image = pd.read_csv(out / "per_image.csv", dtype={"path": str})
    scored = set(per_image["path"])
    assert scored <= good and not scored & set(bad)
    assert {p for p in good if p.startswith("abnormal/")} <= scored  # every good abnormal image scored
    held_out = {_rel(r.image, root) for pool in load_dataset("folder", root).prompt_pool.values() for r in pool}
    assert scored | held_out == good and not scored & held_out  # every good normal scored or a prompt
    assert json.loads((out / "run.json").read_text())["skipped"]["count"] == len(bad)
    assert f"{len(bad)} file(s) skipped" in captured.out
    # abnormal images whose mask is empty: scored (publisher's label), and listed as warnings, not skips
    warned = pd.read_csv(out / "warnings.csv", dtype=str, keep_default_na=False)
    assert {"abnormal/empty_mask.png", "abnormal/faint_jpeg_mask.jpg"} <= set(warned["path"]) <= scored
    assert all(re.search("empty", r, re.IGNORECASE) for r in warned["reason"])
    assert json.loads((out / "run.json").read_text())["warnings"]["count"] == len(warned)
    assert f"{len(warned)} file(s) kept with a warning" in captured.out

    assert main([*args, "--strict", "--out", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    named = err.removeprefix("error: ").split(": ", 1)[0]
    assert _rel(named, root) in bad


def test_group_pattern_reaches_evaluate(synthetic_root: Path, tmp_path: Path, tiny_args: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    root = tmp_path / "grouped"
    shutil.copytree(synthetic_root, root)
    for sub in ("normal", "abnormal"):
        for i, p in enumerate(sorted((root / sub).iterdir())):
            new = f"p{i % 3}_{sub}{i}.png"
            if sub == "abnormal":
                (root / "masks" / p.name).rename(root / "masks" / new)
            p.rename(p.with_name(new))
    args = ["--datasets", "folder", "--root", str(root), *tiny_args, "--shots", "0", "--seeds", "1",
            "--overlays", "0", "--no-figures", "--bootstrap", "20"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--group-pattern", r"^(?:normal|abnormal)/(?P<group>p\d)_", "--out", str(tmp_path / "g")]) == 0
    capsys.readouterr()
    plain = pd.read_csv(tmp_path / "plain" / "clinical.csv")
    grouped = pd.read_csv(tmp_path / "g" / "clinical.csv")
    assert set(plain["ci_unit"]) == {"image-level"} and set(grouped["ci_unit"]) == {"patient"}
    groups = pd.read_csv(tmp_path / "g" / "per_image.csv", dtype=str, keep_default_na=False)["group"]
    assert set(groups) <= {"p0", "p1", "p2"} and len(set(groups)) >= 2
