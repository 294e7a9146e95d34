"""``evaluate --engine onnxruntime`` and ``score --engine openvino`` equal their torch runs (synthetic and
shared BrainMRI / COVID-19 images); the engine and int8 mode are part of the feature store's key; an
engine's allocation failure halves the batch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

TINY = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--allow-random-backbone", "--checkpoint", "none",
        "--image-size", "112"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adaptclip_med.data import make_synthetic_folder

    path = tmp_path_factory.mktemp("engine_syn") / "syn"
    make_synthetic_folder(path, n_normal=6, n_abnormal=3, size=64, seed=0)
    return path


def _evaluate(folder: Path, out: Path, *extra: str) -> pd.DataFrame:
    from adaptclip_med.evaluate import main

    args = ["--datasets", "folder", "--root", str(folder), "--shots", "0", "2", "--seeds", "10", "--overlays", "0",
            "--no-figures", "--bootstrap", "0", *TINY, "--out", str(out), *extra]
    assert main(args) == 0
    return pd.read_csv(out / "per_image.csv")


def test_evaluate_with_onnxruntime_equals_torch(folder: Path, tmp_path: Path) -> None:
    want = _evaluate(folder, tmp_path / "torch")
    got = _evaluate(folder, tmp_path / "ort", "--engine", "onnxruntime")
    assert len(got) == len(want) > 0
    assert (got["score"] - want["score"]).abs().max() <= 1e-5


def _shared_evaluate(root: Path, out: Path, *extra: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from adaptclip_med.evaluate import main

    args = ["--datasets", "brain_mri", "--root", str(root), "--limit", "6", "--shots", "0", "2", "--seeds", "1",
            "--overlays", "0", "--no-figures", "--bootstrap", "0", *TINY, "--out", str(out), *extra]
    assert main(args) == 0
    return pd.read_csv(out / "per_image.csv"), pd.read_csv(out / "summary.csv")


def test_evaluate_on_shared_brain_mri_with_onnxruntime_equals_torch(shared_datasets: Path, tmp_path: Path) -> None:
    """The publisher's BrainMRI folder (masks none): the same images, scores within the fp32 tier (1e-5)."""
    root = shared_datasets / "brain_mri"
    want, want_summary = _shared_evaluate(root, tmp_path / "torch")
    got, got_summary = _shared_evaluate(root, tmp_path / "ort", "--engine", "onnxruntime")
    assert list(got["path"]) == list(want["path"]) and len(got) >= 8
    assert (got["score"] - want["score"]).abs().max() <= 1e-5
    assert (got_summary["I-AUROC"] - want_summary["I-AUROC"]).abs().max() <= 1e-12  # same ranking, same metric


def test_score_with_openvino_equals_torch(folder: Path, tmp_path: Path, shared_datasets: Path) -> None:
    """Synthetic PNGs and shared COVID-19 chest X-rays (JPEG, other sizes) through ``score``."""
    from adaptclip_med.score import main

    xrays = sorted((shared_datasets / "covid19").rglob("*.jp*g"))[:3]
    images = sorted(str(p) for p in folder.rglob("*.png") if "mask" not in str(p))[:3] + [str(p) for p in xrays]
    outs = {}
    for name, extra in (("torch", []), ("ov", ["--engine", "openvino"])):
        assert main([*images, *TINY, "--overlays", "none", "--out", str(tmp_path / name), *extra]) == 0
        outs[name] = pd.read_csv(tmp_path / name / "scores.csv")
    score = next(c for c in outs["torch"].columns if c in ("score", "pred_score", "image_score"))
    assert len(outs["ov"]) == len(outs["torch"]) == 6 and outs["ov"][score].notna().all()
    assert (outs["torch"][score] - outs["ov"][score]).abs().max() <= 1e-5


def test_engine_and_int8_mode_change_the_feature_store_key(tiny, torch_model, images) -> None:
    from adaptclip_med.features.store import store_spec

    specs = [store_spec(m) for m in (torch_model, tiny(engine="onnxruntime"), tiny(engine="openvino"),
                                     tiny(engine="openvino", precision="int8"),
                                     tiny(engine="openvino", precision="int8", int8="full",
                                          calibration=images[6:10]))]
    assert specs[0]["engine"] == {"engine": "torch"}
    assert len({str(sorted(s.items())) for s in specs}) == len(specs)
    assert len({s["engine"]["graph"] for s in specs[1:]}) == 4


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"precision": "int8"}, "needs an exported engine"),
    ({"engine": "onnxruntime", "precision": "bf16"}, "runs fp32 or int8"),
    ({"engine": "openvino", "int8": "full"}, "pass precision='int8'"),
    ({"engine": "tensorrt"}, "expected one of"),
])
def test_bad_engine_requests_are_refused(tiny, kwargs, words) -> None:
    with pytest.raises(ValueError, match=words):
        tiny(**kwargs)


def test_engine_out_of_memory_halves_the_batch(tiny, torch_model, images, monkeypatch) -> None:
    from adaptclip_med.features.memory import encode_bounded

    model = tiny(engine="onnxruntime")
    engine = model.backbone.engine
    run, sizes = engine._run, []

    def bounded(x):
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested buffer")
        return run(x)

    monkeypatch.setattr(engine, "_run", bounded)
    got = encode_bounded(model, images[:6], 6)
    want = torch_model.encode(images[:6])
    assert sizes[:2] == [6, 3] and max(sizes[2:]) == 2
    assert float((got.global_ - want.global_).abs().max()) <= 1e-4
