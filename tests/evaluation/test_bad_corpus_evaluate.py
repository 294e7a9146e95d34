"""The bad-input corpus (tests/bad_corpus.py) through ``evaluate``: every bad file listed in skipped.csv
with its reason, no good file flagged, every good abnormal image scored, no traceback; --strict: one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from adaptclip_med.evaluate import main


def _rel(path: str, root: Path) -> str:
    return Path(path).resolve().relative_to(root.resolve()).as_posix()


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
    assert json.loads((out / "run.json").read_text())["skipped"]["count"] == len(bad)
    assert f"{len(bad)} file(s) skipped" in captured.out

    assert main([*args, "--strict", "--out", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    named = err.removeprefix("error: ").split(": ", 1)[0]
    assert _rel(named, root) in bad
