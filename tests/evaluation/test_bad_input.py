"""Bad input: one clear message, exit code 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adaptclip_med.evaluate import main
from adaptclip_med.loading.checkpoint import save_adapters


def _fails(args: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1  # one line
    assert not out.exists()  # nothing half-written
    return err


def test_unknown_dataset(tmp_path: Path, tiny_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails(["--datasets", "br35", "--root", str(tmp_path), *tiny_args], tmp_path / "out", capsys)
    assert "unknown data set 'br35'" in err and "did you mean 'br35h'" in err


def test_root_does_not_exist(tmp_path: Path, tiny_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    err = _fails(["--datasets", "br35h", "--root", str(missing), *tiny_args], tmp_path / "out", capsys)
    assert str(missing) in err and "--root" in err


def test_root_without_expected_tree(tmp_path: Path, tiny_args: list[str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "br35h"
    (root / "yes").mkdir(parents=True)  # the 'no' folder of normal images is missing
    err = _fails(["--datasets", "br35h", "--root", str(root), *tiny_args], tmp_path / "out", capsys)
    assert str(root) in err and "no" in err


def test_random_backbone_needs_explicit_permission(synthetic_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--datasets", "folder", "--root", str(synthetic_root), "--backbone", "adaptclip-tiny",
            "--pretrained", "none", "--checkpoint", "none", "--image-size", "224"]
    err = _fails(args, tmp_path / "out", capsys)
    assert "--allow-random-backbone" in err


def test_checkpoint_for_another_backbone(synthetic_root: Path, tmp_path: Path, tiny_model: object,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = save_adapters(tiny_model, tmp_path / "tiny_adapters")
    from adaptclip_med.loading.model_registry import BACKBONES

    cfg = json.loads(BACKBONES["adaptclip-tiny"].config_text())
    cfg["embed_dim"] = 32
    other = tmp_path / "narrow_clip.json"
    other.write_text(json.dumps(cfg))
    args = ["--datasets", "folder", "--root", str(synthetic_root), "--backbone", str(other), "--pretrained", "none",
            "--checkpoint", str(ckpt), "--allow-random-backbone", "--image-size", "224"]
    err = _fails(args, tmp_path / "out", capsys)
    assert "embed dim 64" in err and "embed dim 32" in err


@pytest.mark.shared
def test_shots_on_set_without_normal_prompts(shared_datasets: Path, tmp_path: Path, tiny_args: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--datasets", "kvasir", "--root", str(shared_datasets / "kvasir_seg"), "--shots", "0", "2",
            "--limit", "2", *tiny_args]
    err = _fails(args, tmp_path / "out", capsys)
    assert "--shots 2" in err and "no normal prompts" in err


def test_help_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("normal example images", "--shots", "--limit", "resumes", "not a diagnostic device"):
        assert phrase in text


@pytest.mark.parametrize(("flag", "values", "expected"), [
    ("--map-range", ["1", "0"], "LOW < HIGH"), ("--target-specificity", ["1.5"], "in (0, 1]"),
    ("--batch-size", ["0"], ">= 1"), ("--shots", ["-1"], "k >= 0"),
])
def test_bad_option_values(synthetic_root: Path, tmp_path: Path, tiny_args: list[str], flag: str,
                           values: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--datasets", "folder", "--root", str(synthetic_root), *tiny_args, flag, *values]
    err = _fails(args, tmp_path / "out", capsys)
    assert flag in err and expected in err
