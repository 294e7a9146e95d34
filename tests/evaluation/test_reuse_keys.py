"""The one reuse key (adaptclip_med.runtime.keys.reuse_key): changing any part recomputes and says why;
changing nothing reuses. Real runs of evaluate and score on the tiny random backbone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from adaptclip_med.runtime import keys as K

#: The tiny backbone, one zero-shot part, nothing but the tables.
FAST = ["--datasets", "folder", "--shots", "0", "--seeds", "1", "--batch-size", "4", "--backbone", "adaptclip-tiny",
        "--pretrained", "none", "--checkpoint", "none", "--allow-random-backbone", "--image-size", "224",
        "--bootstrap", "0", "--overlays", "0", "--no-figures"]


def _evaluate(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from adaptclip_med.evaluate import main

    capsys.readouterr()
    assert main(args) == 0
    return capsys.readouterr().out


@pytest.fixture
def finished(synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """``(data, run)``: a copy of the synthetic set and a finished run over it."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    out = tmp_path / "run"
    assert "1 part(s) computed, 0 reused" in _evaluate([*FAST, "--root", str(data), "--out", str(out)], capsys)
    return data, out


def _edited_source(tmp_path: Path) -> list[tuple[str, Path]]:
    """The package's sources with model/prompt_query.py replaced by a temp copy where TOP_K_POOL is 1."""
    files = K.source_files()
    name, path = next(f for f in files if f[0] == "model/prompt_query.py")
    copy = tmp_path / "prompt_query.py"
    copy.write_text(path.read_text().replace("TOP_K_POOL = 10", "TOP_K_POOL = 1"))
    assert copy.read_text() != path.read_text()
    return [(n, copy if n == name else p) for n, p in files]


CHANGES = {
    "nothing": ([], None),
    "batch size": (["--batch-size", "2"], "batch size changed"),
    "precision": (["--precision", "bf16"], "precision changed"),
    "a result setting": (["--target-specificity", "0.9"], "setting 'target_specificity' changed"),
    "patient groups": ([], "patient groups changed"),
    "device": ([], "device type changed"),
    "code": ([], "the package's source code changed"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_evaluate_recomputes_a_part_when_its_key_changes_and_says_why(
        change: str, finished: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    data, run = finished
    out = tmp_path / "copy"
    shutil.copytree(run, out)  # re-run into a copy of a finished run folder
    extra, why = CHANGES[change]
    if change == "patient groups":  # image -> patient: the bootstrap would resample patients now
        rows = [f"{p.relative_to(data).as_posix()},p{i // 2}" for i, p in enumerate(sorted(data.glob("*/*.png")))]
        (data / "labels.csv").write_text("image,group\n" + "\n".join(rows) + "\n")
    if change == "device":  # as if this run were on a GPU: results of another device are not mixed in
        monkeypatch.setattr(K, "device_type", lambda device: "cuda")
    if change == "code":  # an edited copy of one source file (the production function hashes the real ones)
        edited = _edited_source(tmp_path)
        monkeypatch.setattr(K, "source_files", lambda root=None: edited)
        K.code_fingerprint.cache_clear()
    try:
        printed = _evaluate([*FAST, *extra, "--root", str(data), "--out", str(out)], capsys)
    finally:
        K.code_fingerprint.cache_clear()
    if why is None:
        assert "0 part(s) computed, 1 reused" in printed
    else:
        assert "1 part(s) computed, 0 reused" in printed and why in printed, printed


def test_evaluate_keys_a_backbone_config_json_by_its_content(synthetic_root: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "backbone.json"
    tiny = json.loads((K.PACKAGE_ROOT / "loading" / "model_configs" / "adaptclip-tiny.json").read_text())
    config.write_text(json.dumps({**tiny, "quick_gelu": True}))
    args = [*FAST, "--backbone", str(config), "--root", str(synthetic_root), "--out", str(tmp_path / "run")]
    assert "1 part(s) computed" in _evaluate(args, capsys)
    assert "0 part(s) computed, 1 reused" in _evaluate(args, capsys)
    config.write_text(json.dumps({**tiny, "quick_gelu": False}))  # edited in place: GELU, same weights bytes
    printed = _evaluate(args, capsys)
    assert "1 part(s) computed, 0 reused" in printed
    assert "backbone config content changed" in printed and "backbone architecture changed" in printed


# ---------------------------------------------------------------------------------------------- score
def _tiny_weights(path: Path, seed: int) -> Path:
    """An open_clip state dict of the tiny backbone (random, ``seed``), as a weights file."""
    from adaptclip_med.loading.factory import _build_clip, _model_config

    cfg, _ = _model_config("adaptclip-tiny")
    save_file({k: v.contiguous() for k, v in _build_clip(cfg, True, seed).state_dict().items()}, str(path))
    return path


def _score(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from adaptclip_med.score import main

    capsys.readouterr()
    assert main(args) == 0
    return capsys.readouterr().out


def test_score_reuses_only_under_the_same_key_and_says_why(synthetic_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    weights = _tiny_weights(tmp_path / "tiny.safetensors", seed=0)
    args = [str(synthetic_root / "abnormal"), "--out", str(tmp_path / "score"), "--threshold", "0.5",
            "--overlays", "none", "--backbone", "adaptclip-tiny", "--pretrained", str(weights), "--checkpoint",
            "none", "--image-size", "224", "--batch-size", "4"]
    assert "4 image(s) scored, 0 reused" in _score(args, capsys)
    printed = _score(args, capsys)
    assert "0 image(s) scored, 4 reused" in printed and "scored again" not in printed

    _tiny_weights(weights, seed=1)  # other weights at the same path
    printed = _score(args, capsys)
    assert "4 image(s) scored, 0 reused" in printed and "backbone weights bytes changed" in printed

    printed = _score([*args, "--batch-size", "2"], capsys)
    assert "4 image(s) scored, 0 reused" in printed and "batch size changed" in printed

    monkeypatch.setattr(K, "device_type", lambda device: "cuda")
    printed = _score([*args, "--batch-size", "2"], capsys)
    assert "4 image(s) scored, 0 reused" in printed and "device type changed" in printed


def test_score_feature_cache_shares_the_store_with_evaluate(synthetic_root: Path, tmp_path: Path,
                                                           encode_calls: list[int],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    printed = _evaluate([*FAST, "--root", str(synthetic_root), "--out", str(tmp_path / "run"),
                         "--feature-cache", str(store)], capsys)
    assert "1 part(s) computed" in printed and sum(encode_calls) > 0
    encode_calls.clear()
    printed = _score([str(synthetic_root / "abnormal"), "--out", str(tmp_path / "score"), "--threshold", "0.5",
                      "--overlays", "none", "--backbone", "adaptclip-tiny", "--pretrained", "none", "--checkpoint",
                      "none", "--allow-random-backbone", "--image-size", "224", "--feature-cache", str(store)], capsys)
    assert "4 image(s) scored" in printed and sum(encode_calls) == 0  # every image from evaluate's store
    assert f"feature store {store}: 4 image(s) reused, 0 computed" in printed


def test_code_fingerprint_hashes_the_package_sources() -> None:
    names = {name for name, _ in K.source_files()}
    assert {"runtime/keys.py", "model/prompt_query.py", "loading/model_configs/adaptclip-tiny.json"} <= names
    assert all(not n.endswith(".pyc") for n in names)
    assert K.code_fingerprint() == K.code_fingerprint() and len(K.code_fingerprint()) == 64
    assert K.reuse_key(batch_size=4).parts["code"] == K.code_fingerprint()
