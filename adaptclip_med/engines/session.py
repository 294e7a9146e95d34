"""Running an exported feature graph, and the on-disk cache of built graphs.

:func:`open_engine` returns the :class:`EngineEncoder` of a backbone: it looks the graph up under
``<cache>/engines/<key>/`` (``<cache>`` as the text-feature cache: ``$ADAPTCLIP_CACHE_DIR``, else
``$XDG_CACHE_HOME/adaptclip_med``, else ``~/.cache/adaptclip_med``; ``ADAPTCLIP_CACHE_DIR=none``: a
temporary folder per process), builds it on first use (:func:`adaptclip_med.engines.graph.build_graph`)
into a temporary folder renamed into place, so that concurrent processes (torchrun ranks) each see a
complete graph or none, and writes its manifest (:func:`manifest`). ``<key>`` is the one reuse key
(:func:`engine_key`): code fingerprint, library versions, the backbone's weights bytes and module
structure, image size, feature layers, V-V start, engine, int8 mode, calibration images, opset and the
engine libraries' versions.

The encoder runs on the CPU: a batch ``(B, 3, S, S)`` goes through the graph at once (the batch is
bounded by :mod:`adaptclip_med.features.memory` as with torch: an allocation failure of the engine is
raised as ``torch.OutOfMemoryError`` so that the batch is halved). As a sub-module of the backbone it
names the engine, precision, int8 mode and graph key in its ``extra_repr``, so the backbone's module
structure — part of every reuse key — differs by engine and int8 mode.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adaptclip_med.data.records import SUPPORTED_SUFFIXES, has_suffix
from adaptclip_med.data.transforms.clip_input import CLIP_MEAN, CLIP_STD
from adaptclip_med.data.transforms.pixels import ModelInput
from adaptclip_med.engines import DEFAULT_INT8, ENGINES, INT8_MODES
from adaptclip_med.engines.graph import INPUT, METHODS, MODEL_FILES, OPSET, build_graph, output_names
from adaptclip_med.model.backbone import FrozenCLIPVision, ImageFeatures
from adaptclip_med.runtime.errors import AdaptCLIPError
from adaptclip_med.runtime.io import atomic_write_json, sha256_file, weights_fingerprint
from adaptclip_med.runtime.keys import (
    Key,
    code_fingerprint,
    installed_versions,
    library_versions,
    module_structure,
    reuse_key,
)
from adaptclip_med.runtime.privacy import CACHE_OFF, user_cache_dir

#: Bumped when the cached folder's layout or the exported graph's interface changes.
GRAPH_FORMAT = 2
#: Engine libraries whose versions are part of the key and the manifest.
ENGINE_LIBRARIES = ("onnx", "onnxruntime", "openvino", "nncf")
#: OpenVINO's CPU plugin quantises the activations of weight-compressed MatMuls to int8 at run time, in
#: groups of this many input channels (its default, 32, took ViT-L at 518 px 3.87 s an image; 1024 — one
#: group per token of a 1024-wide layer — 3.28 s; 0, fp32 activations, 6.31 s). Part of the code, hence of
#: every graph key.
OPENVINO_ACTIVATION_GROUP = 1024
#: The preprocessing the graph expects (the caller's ``build_transforms`` / ``ModelInput``).
PREPROCESS = {"pipeline": "adaptclip_med.data.build_transforms / ModelInput", "resize": "pillow-bicubic-squash-8bit",
              "mean": list(CLIP_MEAN), "std": list(CLIP_STD), "layout": "NCHW float32"}


@functools.cache
def engine_versions() -> dict[str, str]:
    """``{library: version}`` of :data:`ENGINE_LIBRARIES` (``"not installed"`` when absent)."""
    return installed_versions(ENGINE_LIBRARIES)


def check_engine(engine: str, precision: str, int8: str | None) -> str | None:
    """Validate an engine request; return the int8 mode in effect (None for fp32).

    Raises:
        ValueError: unknown engine or mode, int8 on torch, bf16/fp16 on an exported engine, a mode without int8.
    """
    if engine not in ENGINES:
        msg = f"engine {engine!r}; expected one of {', '.join(ENGINES)}"
        raise ValueError(msg)
    if int8 is not None and int8 not in INT8_MODES:
        msg = f"int8 mode {int8!r}; expected one of {', '.join(INT8_MODES)}"
        raise ValueError(msg)
    if precision == "int8":
        if engine == "torch":
            msg = "precision int8 needs an exported engine: pass engine='onnxruntime' or 'openvino' (--engine)"
            raise ValueError(msg)
        return int8 or DEFAULT_INT8
    if int8 is not None:
        msg = f"int8 mode {int8!r} given with precision {precision!r}; pass precision='int8' (--precision int8)"
        raise ValueError(msg)
    if engine != "torch" and precision != "fp32":
        msg = f"engine {engine!r} runs fp32 or int8 graphs; got precision {precision!r}"
        raise ValueError(msg)
    return None


def calibration_images(source: str | os.PathLike[str] | Sequence[Any] | torch.Tensor | None,
                       image_size: int) -> torch.Tensor | None:
    """``(C, 3, S, S)`` preprocessed calibration images from a folder, files, or an already preprocessed tensor.

    Folders are searched recursively for image files (sorted by path); everything goes through the
    model's preprocessing (:class:`ModelInput`).
    """
    if source is None or isinstance(source, torch.Tensor):
        return source
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and has_suffix(f.name, SUPPORTED_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            msg = f"int8 calibration: {p} is neither an image file nor a folder"
            raise AdaptCLIPError(msg)
    if not files:
        msg = f"int8 calibration: no image files in {', '.join(map(str, items))}"
        raise AdaptCLIPError(msg)
    prep = ModelInput(image_size)
    return torch.stack([prep(str(f)) for f in files])


def tensor_sha256(images: torch.Tensor | None) -> str | None:
    """SHA-256 of a tensor's shape and float32 bytes (the calibration images' part of the key)."""
    if images is None:
        return None
    data = images.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(f"{tuple(data.shape)}\n".encode() + data.numpy().tobytes()).hexdigest()


def engine_key(backbone: FrozenCLIPVision, image_size: int, engine: str, int8: str | None,
               calibration: str | None = None) -> Key:
    """The reuse key of a built graph (see the module docstring); ``calibration``: :func:`tensor_sha256`."""
    return reuse_key(
        architecture={"modules": module_structure(backbone)}, weights=weights_fingerprint(backbone),
        settings={"image_size": int(image_size), "feature_layers": list(backbone.feature_layers),
                  "vv_start": int(backbone.vv_start), "engine": engine, "int8": int8,
                  "calibration": calibration if int8 == "full" else None, "opset": OPSET,
                  "graph_format": GRAPH_FORMAT, "engine_versions": engine_versions()})


def manifest(backbone: FrozenCLIPVision, image_size: int, engine: str, int8: str | None, key: Key, *,
             calibration: str | None = None, calibration_count: int = 0,
             source: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a built graph is: its source weights, preprocessing, size, layers, V-V start, precision, opset,
    code fingerprint and library versions (written as ``manifest.json`` next to the graph).

    Args:
        source: the model's provenance (backbone name, tag, weights file); its file is hashed here.
    """
    source = dict(source or {})
    weights_file = source.get("pretrained_file")
    grid = image_size // backbone.patch_size
    return {
        "format": "onnx" if engine == "onnxruntime" else "openvino",
        "engine": engine, "file": MODEL_FILES[engine],
        "precision": "int8" if int8 else "fp32", "int8": int8, "method": METHODS[(engine, int8)],
        "calibration": {"images": calibration_count, "sha256": calibration} if int8 == "full" else None,
        "opset": OPSET, "image_size": int(image_size), "feature_layers": list(backbone.feature_layers),
        "vv_start": int(backbone.vv_start), "patch_size": backbone.patch_size, "embed_dim": backbone.embed_dim,
        "inputs": {INPUT: ["batch", 3, image_size, image_size]},
        "outputs": {name: ["batch", backbone.embed_dim] if name == "global" else ["batch", 1 + grid * grid,
                                                                                  backbone.embed_dim]
                    for name in output_names(backbone.feature_layers)},
        "preprocessing": PREPROCESS,
        "source": {"backbone": source.get("backbone"), "pretrained": source.get("pretrained"),
                   "weights_file_sha256": sha256_file(weights_file) if weights_file else None,
                   "random_weights_seed": None if weights_file else source.get("seed"),
                   "weights_sha256": key.parts["weights"]},
        "code_fingerprint": code_fingerprint(), "versions": {**library_versions(), **engine_versions()},
        "key": key.digest, "graph_format": GRAPH_FORMAT,
    }


def export_graph(backbone: FrozenCLIPVision, image_size: int, engine: str, int8: str | None, folder: Path, *,
                 calibration: torch.Tensor | None = None, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the graph into ``folder`` and write its ``manifest.json``; return the manifest."""
    cal_sha = tensor_sha256(calibration) if int8 == "full" else None
    key = engine_key(backbone, image_size, engine, int8, cal_sha)
    build_graph(backbone, image_size, engine, int8, folder, calibration if int8 == "full" else None)
    info = manifest(backbone, image_size, engine, int8, key, calibration=cal_sha,
                    calibration_count=0 if calibration is None or int8 != "full" else int(calibration.shape[0]),
                    source=source)
    atomic_write_json(folder / "manifest.json", info)
    return info


def engine_cache_root() -> Path | None:
    """``<cache>/engines`` (module docstring), or None when the cache is turned off."""
    explicit = os.environ.get("ADAPTCLIP_CACHE_DIR")
    if explicit is not None and explicit.strip().lower() in CACHE_OFF:
        return None
    return user_cache_dir() / "engines"


def openvino_config(int8: str | None, threads: int | None = None) -> dict[str, Any]:
    """The CPU plugin's compile settings of a graph: fp32 inference precision (not bf16 on CPUs that have
    it), :data:`OPENVINO_ACTIVATION_GROUP` for a weight-only int8 graph, and the thread count when given."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if int8 == "weights":
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = OPENVINO_ACTIVATION_GROUP
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def _is_out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return any(s in text for s in ("failed to allocate", "bad_alloc", "out of memory", "cannot allocate"))


class EngineEncoder(nn.Module):
    """The exported feature graph of a backbone, run by ONNX Runtime or OpenVINO on the CPU.

    Call it like ``backbone.encode_image``: ``(B, 3, S, S)`` → :class:`ImageFeatures` (float32, CPU).

    Args:
        folder: a built graph (``manifest.json`` and the model file).
        threads: CPU threads of the engine (default: the engine's own choice).

    Attributes:
        runtime: the engine's own object (an ``onnxruntime.InferenceSession`` or an OpenVINO ``CompiledModel``).
    """

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        self.engine, self.int8 = self.manifest["engine"], self.manifest["int8"]
        self.image_size = int(self.manifest["image_size"])
        self.names = output_names(self.manifest["feature_layers"])
        path = str(self.folder / self.manifest["file"])
        if self.engine == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            self.runtime: Any = session
            self._run = lambda x: session.run(self.names, {INPUT: x})
        else:
            import openvino as ov

            compiled = ov.Core().compile_model(path, "CPU", openvino_config(self.int8, threads))
            self.runtime = compiled
            ports = [compiled.output(name) for name in self.names]
            self._run = lambda x: (lambda res: [res[p] for p in ports])(compiled(x))

    def identity(self) -> dict[str, Any]:
        """The engine's part of reuse keys: engine, precision, int8 mode and the graph's key."""
        return {"engine": self.engine, "precision": self.manifest["precision"], "int8": self.int8,
                "graph": self.manifest["key"]}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.identity().items())

    def forward(self, images: torch.Tensor) -> ImageFeatures:
        """Features of ``(B, 3, S, S)`` images: global ``(B, D)``, ``L × (B, N, D)`` float32 on the CPU.

        Raises:
            ValueError: images of another size than the graph's.
            torch.OutOfMemoryError: the engine could not allocate its buffers (the caller halves the batch).
        """
        if tuple(images.shape[1:]) != (3, self.image_size, self.image_size):
            msg = (f"the {self.engine} graph takes (B, 3, {self.image_size}, {self.image_size}) images; got "
                   f"{tuple(images.shape)} (load the model with this image size)")
            raise ValueError(msg)
        x = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        try:
            outs = self._run(x)
        except (RuntimeError, MemoryError) as err:
            if isinstance(err, MemoryError) or _is_out_of_memory(err):
                raise torch.OutOfMemoryError(f"{self.engine}: {err}") from err
            raise
        global_, *patches = (torch.from_numpy(np.array(o, dtype=np.float32)) for o in outs)
        return ImageFeatures(global_, patches)


def open_engine(backbone: FrozenCLIPVision, image_size: int, engine: str, int8: str | None = None, *,
                calibration: torch.Tensor | None = None, source: dict[str, Any] | None = None,
                root: Path | None = None, threads: int | None = None) -> EngineEncoder:
    """The :class:`EngineEncoder` of ``backbone``, from the cache or built now (module docstring).

    Args:
        engine: ``"onnxruntime"`` or ``"openvino"``.
        int8: None (fp32), ``"weights"`` or ``"full"``.
        calibration: ``(C, 3, S, S)`` preprocessed normal images, for ``full``.
        source: the model's provenance (for the manifest).
        root: cache folder (default :func:`engine_cache_root`).
    """
    if int8 == "full" and (calibration is None or calibration.shape[0] == 0):
        msg = ("int8 'full' quantisation is calibrated on normal images: pass calibration= (--int8-calibration "
               "DIR), or use int8 'weights', which needs none")
        raise AdaptCLIPError(msg)
    cal_sha = tensor_sha256(calibration) if int8 == "full" else None
    key = engine_key(backbone, image_size, engine, int8, cal_sha)
    root = engine_cache_root() if root is None else root
    temporary = root is None
    if temporary:
        root = Path(tempfile.mkdtemp(prefix="adaptclip-engine-"))
    folder = root / key.short
    if not (folder / "manifest.json").is_file():
        clear_abandoned_builds(_made(root), key.short)
        building = Path(tempfile.mkdtemp(prefix=f".{key.short}-", dir=root))
        (building / BUILDER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n", encoding="utf-8")
        try:
            export_graph(backbone, image_size, engine, int8, building, calibration=calibration, source=source)
            (building / BUILDER_FILE).unlink()  # the finished graph holds only the graph and its manifest
            try:
                building.replace(folder)
            except OSError:
                if not (folder / "manifest.json").is_file():  # not another process's complete build
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
    encoder = EngineEncoder(folder, threads)
    if temporary:
        weakref.finalize(encoder, shutil.rmtree, root, True)
    return encoder


#: File in a graph's build folder naming the process building it (``host pid``).
BUILDER_FILE = "builder"


def clear_abandoned_builds(root: Path, key_short: str) -> list[Path]:
    """Remove the build folders of ``key_short`` under ``root`` whose builder died (e.g. killed for memory
    while quantising: its ``finally`` never ran, and a ViT-L build folder holds 1.2 GB).

    Only folders this module made (``.<key>-*`` holding :data:`BUILDER_FILE`) of a process on this host that
    no longer runs are removed; a live builder's, another host's or an unmarked folder is left alone.

    Returns:
        the folders removed.
    """
    removed = []
    for folder in sorted(root.glob(f".{key_short}-*")):
        try:
            host, pid = (folder / BUILDER_FILE).read_text(encoding="utf-8").split()
        except (OSError, ValueError):
            continue
        if host == socket.gethostname() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    """True when a process ``pid`` exists on this host (one we may not signal counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
