"""``score`` on a tiny model whose batches above 2 images raise a real ``torch.OutOfMemoryError``: the
same scores and maps as an uninterrupted run, one line when it backs off, one ``error:`` line at batch 1."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from adaptclip_med.score import main

from .conftest import TINY


def _score(score_inputs: dict[str, Path], out: Path) -> int:
    return main([str(score_inputs["nifti"]), "--normals", str(score_inputs["normals"]), "--batch-size", "4",
                 "--overlays", "none", "--out", str(out), *TINY])


def test_score_backs_off_with_the_results_of_an_uninterrupted_run(score_inputs: dict[str, Path], tmp_path: Path,
                                                                  oom_above: object,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _score(score_inputs, tmp_path / "reference") == 0
    capsys.readouterr()
    sizes = oom_above(2)
    assert _score(score_inputs, tmp_path / "bounded") == 0
    err = capsys.readouterr().err
    assert err.count("memory: encoding 4 images at a time did not fit; using 2") == 1
    assert sizes.count(4) == 1 and max(s for s in sizes if s != 4) == 2  # 6 slices: 4 (refused), 2, 2, 2
    ref, ours = (pd.read_csv(tmp_path / name / "scores.csv") for name in ("reference", "bounded"))
    pd.testing.assert_frame_equal(ours, ref)
    maps = sorted((tmp_path / "reference" / "volumes").rglob("*.nii.gz"))
    assert maps  # the volume's map on its source grid
    for path in maps:
        twin = tmp_path / "bounded" / path.relative_to(tmp_path / "reference")
        np.testing.assert_array_equal(np.asanyarray(nib.load(twin).dataobj), np.asanyarray(nib.load(path).dataobj))
    runs = [json.loads((tmp_path / name / "run.json").read_text()) for name in ("reference", "bounded")]
    assert [r["device_batch"] for r in runs] == [4, 2]
    assert runs[0]["threshold"] == runs[1]["threshold"]


def test_score_out_of_memory_at_batch_one_is_one_error_line(score_inputs: dict[str, Path], tmp_path: Path,
                                                            oom_above: object,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    oom_above(0)
    assert _score(score_inputs, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err == ("error: out of CPU memory even at batch 1 with adaptclip-tiny at 224 px; "
                   "try --precision bf16 or a smaller --image-size\n")
