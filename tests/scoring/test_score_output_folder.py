"""Issue 18 items 1, 3, 5, 7: a run owns its --out, outputs point back to inputs, one-line errors, --demo-model."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from adaptclip_med.runtime.errors import WeightsNotFoundError
from adaptclip_med.score import build_parser, main
from adaptclip_med.scoring import run as score_run
from adaptclip_med.scoring.folder import MANIFEST

from .conftest import TINY

FAST = ["--threshold", "0.5", *TINY]


def _errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_a_run_deletes_only_what_an_earlier_run_recorded(score_inputs: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main([str(score_inputs["png"]), "--out", str(out), *FAST]) == 0
    first = set((out / "overlays").glob("*.png"))
    mine = out / "overlays" / "my_figure.png"
    mine.write_bytes(b"the user's own figure")
    assert main([str(score_inputs["png"]), "--out", str(out), *FAST]) == 0  # resume: nothing of ours to delete
    assert mine.is_file() and first <= set((out / "overlays").glob("*.png"))
    # other inputs: refused with one line, the earlier results kept
    assert main([str(score_inputs["nifti"]), "--out", str(out), *FAST]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "holds the results of other inputs" in err[0] and "--replace" in err[0]
    assert len(pd.read_csv(out / "scores.csv")) == 2
    assert main([str(score_inputs["nifti"]), "--out", str(out), *FAST, "--replace"]) == 0
    assert mine.is_file() and not first & set((out / "overlays").glob("*.png"))  # ours replaced, the user's kept
    recorded = json.loads((out / MANIFEST).read_text())["files"]
    assert "overlays/my_figure.png" not in recorded and all((out / f).is_file() for f in recorded)


def test_rescoring_a_series_replaces_its_dicom_objects(score_inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([str(score_inputs["ct"]), "--out", str(out), "--overlays", "none", *FAST]) == 0
    before = {p.name for p in (out / "dicom").iterdir()}
    assert main([str(score_inputs["ct"]), "--out", str(out), "--overlays", "none", "--replace",
                 "--threshold", "0.6", *TINY]) == 0
    after = {p.name for p in (out / "dicom").iterdir()}
    assert len(before) == len(after) == 1 and before != after  # one series, one set of objects


def test_an_out_folder_inside_an_input_is_not_read(score_inputs: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pngs"
    shutil.copytree(score_inputs["png"], folder)
    out = folder / "results"
    for _ in range(2):
        assert main([str(folder), "--out", str(out), *FAST]) == 0
        printed = capsys.readouterr().out
        assert "note: --out lies inside the input" in printed
        assert set(pd.read_csv(out / "scores.csv")["id"]) == {"pngs/brain_0.png", "pngs/sub/brain_1.png"}
        assert not pd.read_csv(out / "skipped.csv")["id"].str.contains("results").any()


def test_a_second_run_into_a_busy_folder_stops_with_one_line(score_inputs: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from adaptclip_med.runtime.locks import hold\n"
         f"with hold({str(out)!r}):\n    print('held', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main([str(score_inputs["png"]), "--out", str(out), *FAST]) == 2
        err = _errors(capsys)
        assert len(err) == 1 and f"another run is writing {out} (pid {holder.pid})" in err[0]
    finally:
        holder.communicate("\n", timeout=30)
    assert main([str(score_inputs["png"]), "--out", str(out), *FAST]) == 0  # released


def test_every_output_points_back_to_its_input(score_inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    inputs = [str(score_inputs[k]) for k in ("ct", "nifti", "png")]
    assert main([*inputs, "--out", str(out), *FAST]) == 0
    table = pd.read_csv(out / "scores.csv", keep_default_na=False)
    index = json.loads((out / "run.json").read_text())["outputs"]
    nifti = table[table["id"] == "head.nii.gz"].iloc[0]
    assert nifti["nifti_map"].startswith("volumes/") and (out / nifti["nifti_map"]).is_file()
    assert index["head.nii.gz"]["nifti"] == nifti["nifti_map"]
    series = table[table["level"] == "series"].iloc[0]
    objects = series["dicom"].split(";")
    assert sorted(objects) == sorted(index[series["id"]]["dicom"]) and all((out / f).is_file() for f in objects)
    slices = table[table["id"].str.startswith(f"{series['id']}#")]
    assert all(len([f for f in row.split(";") if "/overlay/" in f]) == 1 for row in slices["dicom"])
    image = table[table["id"] == "photos/brain_0.png"].iloc[0]
    assert index["photos/brain_0.png"]["overlays"] == [image["overlay"]] and (out / image["overlay"]).is_file()


def test_ctrl_c_is_one_line_and_exit_130(score_inputs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        shutil.copy(score_inputs["png"] / "brain_0.png", folder / f"copy_{i}.png")
        (folder / f"copy_{i}.png").write_bytes((folder / f"copy_{i}.png").read_bytes() + bytes([i]))  # not dupes
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a job started in the background by a shell without job control inherits SIGINT ignored (and Python
    # then installs no handler): give the child the default disposition, as a terminal's process has
    proc = subprocess.Popen([sys.executable, "-m", "adaptclip_med.score", str(folder), "--out", str(out),
                             "--batch-size", "1", *FAST], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list((out / "overlays").glob("*.png")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # progress: the first overlay is on disk (about 0.25 s each, 40 to go)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; run the same command again to resume"
    assert "Traceback" not in err


def test_output_folder_problems_are_one_line_before_the_model_loads(score_inputs: dict[str, Path], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def no_model(*_a: object, **_k: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(score_run, "load_model_for", no_model)
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):  # a file, and a folder that cannot be created (root cannot either)
        assert main([str(score_inputs["png"]), "--out", str(out), *FAST]) == 2
        err = _errors(capsys)
        assert len(err) == 1 and err[0].startswith(f"error: --out {out}") and "not a folder" in err[0]
    if os.geteuid() != 0:  # root ignores the mode bits
        locked = tmp_path / "readonly"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert main([str(score_inputs["png"]), "--out", str(locked), *FAST]) == 2
            err = _errors(capsys)
            assert len(err) == 1 and "cannot write there" in err[0]
        finally:
            locked.chmod(0o700)


def test_a_full_disk_mid_run_is_one_line(score_inputs: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: object, *_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(score_run, "atomic_write_json", full)
    assert main([str(score_inputs["png"]), "--out", str(tmp_path / "run"), *FAST]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and err[0].startswith("error: cannot write the outputs: No space left on device")


def test_bad_arguments_are_named_at_once(score_inputs: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "run")
    typo = str(tmp_path / "phtos")
    assert main([str(score_inputs["png"]), typo, "--out", out, *FAST]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and typo in err[0] and "no such file or folder" in err[0]
    assert main([str(score_inputs["png"]), "--out", out, *TINY, "--threshold", "60"]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "--threshold: got 60.0; expected in [0, 1]" in err[0]
    one = tmp_path / "one_normal"
    one.mkdir()
    shutil.copy(next(score_inputs["normals"].glob("*.png")), one)
    assert main([str(score_inputs["png"]), "--out", out, "--normals", str(one), *TINY]) == 0
    assert "note: no threshold calibrated on --normals" in capsys.readouterr().out
    epilog = build_parser().format_help()
    assert "exit codes:" in epilog and "130" in epilog


def test_missing_weights_name_the_demo_flag(score_inputs: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*_a: object, **_k: object) -> None:
        raise WeightsNotFoundError("CLIP backbone 'ViT-L-14-336' with pretrained tag 'openai': weights not found\nmore")

    with monkeypatch.context() as patched:
        patched.setattr(score_run, "load_model_for", missing)
        assert main([str(score_inputs["png"]), "--out", str(tmp_path / "real")]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "weights not found" in err[0] and "--demo-model" in err[0]
    out = tmp_path / "demo"
    assert main([str(score_inputs["png"]), "--out", str(out), "--demo-model"]) == 0
    assert "untrained backbone" in capsys.readouterr().out
    notices = pd.read_csv(out / "scores.csv")["notice"]
    assert notices.str.contains("untrained backbone").all()
    assert "untrained backbone" in json.loads((out / "run.json").read_text())["notice"]


def test_other_roi_or_gate_settings_in_the_same_out_are_refused(score_inputs: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main([str(score_inputs["png"]), "--out", str(out), "--overlays", "none", *FAST]) == 0
    capsys.readouterr()
    assert main([str(score_inputs["png"]), "--out", str(out), "--overlays", "none", "--roi", "auto", *FAST]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "settings (applicability" in err[0] and "--replace" in err[0]
