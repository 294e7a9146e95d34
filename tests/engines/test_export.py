"""``python -m adaptclip_med.export``: ONNX and OpenVINO graphs of the tiny backbone, with their manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adaptclip_med.export import main

ARGS = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--allow-random-backbone", "--image-size", "112"]


def _manifest(out: Path) -> dict:
    info = json.loads((out / "manifest.json").read_text())
    assert info["image_size"] == 112 and info["feature_layers"] == [2, 4, 6, 8] and info["vv_start"] == 2
    assert info["opset"] >= 17 and len(info["code_fingerprint"]) == 64
    assert info["source"]["weights_sha256"] and info["source"]["random_weights_seed"] == 0
    assert info["preprocessing"]["mean"] and {"onnxruntime", "openvino", "torch"} <= set(info["versions"])
    return info


def test_onnx_export_has_a_dynamic_batch_and_matches_torch(tmp_path: Path, torch_model, images) -> None:
    import onnx
    import onnxruntime as ort

    assert main(["--format", "onnx", *ARGS, "--out", str(tmp_path)]) == 0
    info = _manifest(tmp_path)
    assert info["format"] == "onnx" and info["precision"] == "fp32" and info["int8"] is None
    graph = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(graph)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [o.name for o in graph.graph.output] == ["global", "layer_2", "layer_4", "layer_6", "layer_8"]
    # each attention is one fused node: 8 blocks of the original path + 7 of the V-V path (blocks 2..8)
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("MultiHeadAttention") == 15 and "Softmax" not in ops
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = torch_model.encode(images[:3])
    for b in (1, 3):  # one graph, any batch
        out = session.run(None, {"images": images[:b].numpy()})
        for got, want in zip(out, [ref.global_, *ref.patches], strict=True):
            assert np.abs(got - want[:b].numpy()).max() <= 1e-4


def test_openvino_int8_weights_export(tmp_path: Path) -> None:
    assert main(["--format", "openvino", "--int8", "weights", *ARGS, "--out", str(tmp_path)]) == 0
    info = _manifest(tmp_path)
    assert info["format"] == "openvino" and info["precision"] == "int8" and info["int8"] == "weights"
    assert "compress_weights" in info["method"]
    assert (tmp_path / "model.xml").is_file() and (tmp_path / "model.bin").is_file()
    assert not (tmp_path / "fp32.onnx").exists()


def test_onnxruntime_int8_weights_quantises_every_weight_product(tmp_path: Path) -> None:
    """The V-V path's output projection shares the original path's weight; it is quantised too."""
    import onnx

    assert main(["--format", "onnx", "--int8", "weights", *ARGS, "--out", str(tmp_path)]) == 0
    info = _manifest(tmp_path)
    assert info["precision"] == "int8" and "quantize_dynamic" in info["method"]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    # 8 blocks × (qkv, out, fc1, fc2) + 7 V-V output projections + 4 taps and the global feature × proj
    assert ops.count("MatMulInteger") == 44 and "MatMul" not in ops and "Identity" not in ops
    assert ops.count("MultiHeadAttention") == 15


@pytest.mark.parametrize("extra", [["--int8", "full"], ["--calibration", "x"]])
def test_export_refuses_full_without_calibration_and_calibration_without_full(tmp_path, capsys, extra) -> None:
    assert main(["--format", "onnx", *extra, *ARGS, "--out", str(tmp_path)]) == 2
    assert "calibrat" in capsys.readouterr().err


def test_a_killed_build_is_cleared_by_the_next(tmp_path: Path) -> None:
    """A build folder left by a builder that died (SIGKILL skips its clean-up) is removed by the next build
    of the same graph; a live builder's folder and folders the module did not make are left alone."""
    import os
    import socket
    import subprocess
    import sys

    from adaptclip_med import load_model
    from adaptclip_med.engines.session import BUILDER_FILE, engine_key, open_engine

    model = load_model(backbone="adaptclip-tiny", pretrained=None, allow_random_backbone=True, checkpoint=None,
                       image_size=112)
    key = engine_key(model.backbone, 112, "onnxruntime", None, None).short
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    folders = {name: tmp_path / f".{key}-{name}" for name in ("dead", "live", "unmarked")}
    for folder in folders.values():
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"partial")
    (folders["dead"] / BUILDER_FILE).write_text(f"{socket.gethostname()} {dead.stdout.strip()}\n")
    (folders["live"] / BUILDER_FILE).write_text(f"{socket.gethostname()} {os.getppid()}\n")
    encoder = open_engine(model.backbone, 112, "onnxruntime", root=tmp_path)
    assert not folders["dead"].exists()
    assert folders["live"].is_dir() and folders["unmarked"].is_dir()
    assert sorted(p.name for p in encoder.folder.iterdir()) == ["manifest.json", "model.onnx"]
