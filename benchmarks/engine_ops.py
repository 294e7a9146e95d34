"""Where an exported graph spends its time: ms/image and the time per node type, ONNX Runtime or OpenVINO.

Takes a graph folder written by ``python -m adaptclip_med.export`` (or one of the engine cache's
``<cache>/engines/<key>/`` folders) and runs it on random images of its size: ONNX Runtime with its
profiler, OpenVINO with its performance counters. Examples::

    python -m adaptclip_med.export --format onnx --int8 weights --backbone ViT-L-14-336 --pretrained none \\
        --allow-random-backbone --image-size 518 --out /tmp/vitl-ort-int8w
    python benchmarks/engine_ops.py /tmp/vitl-ort-int8w --threads 2
    python benchmarks/engine_ops.py /tmp/vitl-ov-int8w --threads 2 --activation-group 32   # OpenVINO's default

``--activation-group``: OpenVINO's ``DYNAMIC_QUANTIZATION_GROUP_SIZE`` for a weight-compressed graph
(default: the package's ``OPENVINO_ACTIVATION_GROUP``; 0 keeps the activations fp32).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _onnxruntime(path: Path, x: np.ndarray, threads: int) -> tuple[float, collections.Counter]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="ort-profile-")) / "run")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {"images": x})  # warm-up (profiled too: both runs are summed, then halved)
    start = time.perf_counter()
    session.run(None, {"images": x})
    ms = (time.perf_counter() - start) * 1000
    per_type: collections.Counter = collections.Counter()
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_type[event["args"]["op_name"]] += event["dur"] / 2000  # µs over two runs → ms per run
    return ms, per_type


def _openvino(path: Path, x: np.ndarray, threads: int, int8: str | None, group: int | None
              ) -> tuple[float, collections.Counter]:
    import openvino as ov

    from adaptclip_med.engines.session import openvino_config

    config = {**openvino_config(int8, threads), "PERF_COUNT": True}  # the settings the package runs it with
    if group is not None:
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = group
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    request.infer({0: x})
    start = time.perf_counter()
    request.infer({0: x})
    ms = (time.perf_counter() - start) * 1000
    per_type: collections.Counter = collections.Counter()
    for info in request.profiling_info:
        per_type[info.node_type] += info.real_time.total_seconds() * 1000
    return ms, per_type


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a graph folder (manifest.json and model.onnx or model.xml)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--top", type=int, default=12, help="node types listed")
    parser.add_argument("--activation-group", type=int, default=None, help="OpenVINO only (module docstring)")
    args = parser.parse_args()
    manifest = json.loads((args.folder / "manifest.json").read_text())
    size = int(manifest["image_size"])
    x = np.random.default_rng(0).standard_normal((args.batch, 3, size, size), dtype=np.float32)
    path = args.folder / manifest["file"]
    if manifest["engine"] == "onnxruntime":
        ms, per_type = _onnxruntime(path, x, args.threads)
    else:
        ms, per_type = _openvino(path, x, args.threads, manifest["int8"], args.activation_group)
    total = sum(per_type.values()) or 1.0
    print(f"{manifest['engine']} {manifest['precision']} int8={manifest['int8']} size={size} batch={args.batch} "
          f"threads={args.threads}: {ms / args.batch:.1f} ms/image")
    for name, t in per_type.most_common(args.top):
        print(f"  {name:<30}{t:>10.1f} ms {t / total * 100:>6.1f} %")


if __name__ == "__main__":
    main()
