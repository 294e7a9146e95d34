"""The bad-input corpus through ``datasets check --json``: every bad file listed with its reason, no
good file flagged, one line per problem, ``--strict`` stops at the first with one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

from adaptclip_med.data import load_dataset
from adaptclip_med.data.cli import main


def test_corpus_is_large_enough(bad_corpus):
    assert len(bad_corpus.bad) >= 40 and len(bad_corpus.good) >= 25


def test_check_json_lists_every_bad_file_and_no_good_one(bad_corpus, capsys):
    assert main(["check", "folder", "--root", str(bad_corpus.root), "--json", "--no-duplicates"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    problems = {p["path"]: p["problem"] for p in report["problems"]}
    assert len(problems) == len(report["problems"])  # one entry per file
    good, bad = bad_corpus.good, bad_corpus.bad
    flagged_good = {p: problems[p] for p in good if p in problems}
    assert flagged_good == {}
    missed = sorted(set(bad) - set(problems))
    assert missed == []
    wrong = {p: (want, problems[p]) for p, want in bad.items() if not re.search(want, problems[p], re.IGNORECASE)}
    assert wrong == {}
    assert set(problems) == set(bad)  # nothing else flagged
    for why in problems.values():  # one condensed line each: no traceback, no MONAI dump
        assert "\n" not in why and "Traceback" not in why and len(why) <= 300
    good_normals = sum(1 for p in good if "/normal/" in p)
    good_abnormals = len(good) - good_normals
    counts = next(iter(report["counts"].values()))
    assert counts["abnormal"] == good_abnormals and counts["masks"] == good_abnormals
    assert counts["normal"] == good_normals  # the counts are of usable files
    assert "Traceback" not in captured.err


def test_check_text_shows_count_and_first_few(bad_corpus, capsys):
    assert main(["check", "folder", "--root", str(bad_corpus.root), "--no-duplicates"]) == 1
    out = capsys.readouterr().out
    assert f"problems: {len(bad_corpus.bad)} file(s)" in out
    assert "more (--json lists every one)" in out


def test_strict_stops_with_one_line_naming_the_file(bad_corpus, capsys):
    assert main(["check", "folder", "--root", str(bad_corpus.root), "--strict", "--no-duplicates"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "strict mode" in err
    named = err.removeprefix("error: ").split(": ", 1)[0]
    assert named in bad_corpus.bad


def test_loader_skips_header_level_problems_before_decoding(bad_corpus):
    index = load_dataset("folder", bad_corpus.root, holdout=0, dedupe_holdout=False)
    listed = dict(index.problems)
    used = {r.image for r in index.records}
    assert not used & set(listed)  # a listed file is never used
    assert set(bad_corpus.good) <= used
    for name in ("looks_like_an_image.png", "segmentation.dcm", "DICOMDIR", "one_pixel.png", "notes.txt",
                 "presentation_state.dcm", "report.dcm", "rtstruct.dcm", "zero.png", "long_strip.png"):
        assert any(p.endswith("/" + name) for p in listed), name
    warned = sorted(Path(p).name for p, why in index.warnings if "empty (no foreground pixel)" in why)
    assert warned == ["empty_mask.png", "faint_jpeg_mask.jpg"]  # kept as labelled (abnormal), listed
    assert any(p.endswith("masks/orphan.png") for p in listed)
