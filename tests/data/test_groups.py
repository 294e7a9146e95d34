"""Patients and studies as groups: volume stems, DICOM PatientID (hashed), labels.csv, --group-pattern;
prompts never from a query's group; the bootstrap unit."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from adaptclip_med.data import draw_prompts, load_dataset, make_synthetic_folder
from adaptclip_med.data.cli import main
from adaptclip_med.data.layouts.groups import hash_id
from adaptclip_med.data.writers import write_dicom, write_nifti
from adaptclip_med.metrics.clinical import bootstrap_ci, sensitivity_at_specificity
from adaptclip_med.runtime.errors import DataValidationError


def test_volume_same_patient_in_normal_and_abnormal_is_one_group(tmp_path):
    rng = np.random.default_rng(0)
    for sub in ("normal", "abnormal"):
        write_nifti(tmp_path / sub / "p1.nii.gz", rng.normal(size=(8, 8, 4)).astype(np.float32))
    write_nifti(tmp_path / "normal" / "p2.nii.gz", rng.normal(size=(8, 8, 4)).astype(np.float32))
    label = np.zeros((8, 8, 4), np.uint8)
    label[2:5, 2:5, 1:3] = 1
    write_nifti(tmp_path / "masks" / "p1.nii.gz", label)
    index = load_dataset("volume", tmp_path, holdout=0, dedupe_holdout=False)
    by_file = {(r.image.split("/")[-2], r.group) for r in index.records}
    assert by_file == {("normal", "p1"), ("abnormal", "p1"), ("normal", "p2")}


def _dicom(path, patient: str, value: int = 100):
    rng = np.random.default_rng(value)
    write_dicom(path, (rng.integers(0, 200, (16, 16)) + value).astype(np.uint16))
    ds = pydicom.dcmread(path)
    ds.PatientID = patient
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_patient_id_is_the_group_and_never_stored_in_clear(tmp_path, capsys):
    root = tmp_path / "set"
    _dicom(root / "normal" / "a.dcm", "MRN-0042", 1)
    _dicom(root / "normal" / "b.dcm", "MRN-0042", 2)
    _dicom(root / "normal" / "c.dcm", "MRN-0077", 3)
    _dicom(root / "abnormal" / "d.dcm", "MRN-0077", 4)
    index = load_dataset("folder", root, holdout=0, dedupe_holdout=False)
    groups = {r.image.rsplit("/", 1)[-1]: r.group for r in index.records}
    assert groups["a.dcm"] == groups["b.dcm"] == hash_id("MRN-0042") != groups["c.dcm"] == groups["d.dcm"]
    assert main(["check", "folder", "--root", str(root), "--json", "--no-duplicates"]) == 0
    out = capsys.readouterr().out
    assert "MRN-" not in out
    assert json.loads(out)["groups"] == {"unit": "patient", "groups": 2, "records": 4, "without_group": 0}


def test_labels_csv_group_column(synth_png, tmp_path):
    import shutil

    root = tmp_path / "set"
    shutil.copytree(synth_png, root)
    names = sorted(p.name for p in (root / "normal").iterdir())
    rows = ["image,group"] + [f"normal/{n},patient {i % 2}" for i, n in enumerate(names)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    index = load_dataset("folder", root, holdout=0, dedupe_holdout=False)
    normal_groups = {r.group for r in index.records if r.label == 0}
    assert normal_groups == {hash_id("patient 0"), hash_id("patient 1")}
    assert all(r.group is None for r in index.records if r.label == 1)  # not in the CSV: image-level


def test_group_pattern_links_normal_and_abnormal_and_prompts_avoid_the_group(tmp_path, capsys):
    root = make_synthetic_folder(tmp_path / "f", n_normal=6, n_abnormal=2, size=32, seed=3)
    for i, p in enumerate(sorted((root / "normal").iterdir())):
        p.rename(p.with_name(f"p{i % 3}_n{i}.png"))
    for i, p in enumerate(sorted((root / "abnormal").iterdir())):
        (root / "masks" / p.name).rename(root / "masks" / f"p0_a{i}.png")
        p.rename(p.with_name(f"p0_a{i}.png"))
    pattern = r"^(?:normal|abnormal)/(?P<group>p\d+)_"
    index = load_dataset("folder", root, holdout=0, group_pattern=pattern)
    assert {r.group for r in index.records} == {"p0", "p1", "p2"}
    # a separate prompt pool from the same patients: the query's patient p0 is never a prompt
    index.prompt_pool = {index.classes[0]: [r for r in index.records if r.label == 0]}
    queries = [r for r in index.records if r.label == 1]
    draw = draw_prompts(index, index.classes[0], 2, seed=0, queries=queries)
    assert draw.excluded["same_group"] == 2 and {r.group for r in draw.records} <= {"p1", "p2"}
    assert main(["check", "folder", "--root", str(root), "--group-pattern", pattern, "--json",
                 "--no-duplicates"]) == 0
    summary = json.loads(capsys.readouterr().out)["groups"]
    assert summary["unit"] == "patient" and summary["groups"] == 3
    assert main(["check", "folder", "--root", str(root), "--group-pattern", "(", "--no-duplicates"]) == 2
    err = capsys.readouterr().err
    assert "not a valid regular expression" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(DataValidationError, match="group_pattern"):
        load_dataset("folder", root, group_pattern="(")


def test_no_group_means_image_level(synth_png, capsys):
    assert main(["check", "folder", "--root", str(synth_png), "--no-duplicates"]) == 0
    assert "(image-level)" in capsys.readouterr().out
    scores = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
    labels = np.array([0, 0, 1, 1, 0, 1])
    assert bootstrap_ci(sensitivity_at_specificity, scores, labels, None, n_boot=50).unit == "image-level"
    grouped = bootstrap_ci(sensitivity_at_specificity, scores, labels, np.array(["a", "a", "b", "b", "c", "c"]),
                           n_boot=50)
    assert grouped.unit == "patient"
