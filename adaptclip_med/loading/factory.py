"""``load_model``: the one entry point that reads weights and returns a ready :class:`AdaptCLIP`."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Protocol

import open_clip
import torch
from open_clip.model import CLIP, CustomTextCLIP

from adaptclip_med.data.transforms.pixels import ModelInput
from adaptclip_med.engines.session import calibration_images, check_engine, open_engine
from adaptclip_med.loading.checkpoint import load_adapter_state, read_checkpoint
from adaptclip_med.loading.model_registry import (
    BACKBONES,
    CHECKPOINTS,
    DEFAULT_BACKBONE,
    DEFAULT_PRETRAINED,
    BackboneSpec,
    canonical_backbone,
)
from adaptclip_med.loading.text_cache import static_text_features
from adaptclip_med.loading.weights import (
    WEIGHTS_DIR_ENV,
    find_local,
    hub_cached,
    hub_download,
    hub_files_of,
    looks_like_path,
    not_found,
    openai_weights,
    read_state_dict,
    resolve_clip_weights,
)
from adaptclip_med.model.adaptclip import AdaptCLIP, AdaptCLIPConfig
from adaptclip_med.model.backbone import FrozenCLIPVision
from adaptclip_med.model.text_encoder import FrozenTextEncoder, static_prompts
from adaptclip_med.model.winclip import WinCLIP
from adaptclip_med.runtime.errors import AdaptCLIPError, CheckpointMismatchError, WeightsNotFoundError
from adaptclip_med.runtime.io import sha256_file

TEMPLATE_PROMPT_WORD = "X"
#: Accepted ``precision`` values: fp32, autocast of the backbone to bf16 / fp16, or an int8 graph of an
#: exported engine (``engine="onnxruntime"`` / ``"openvino"``).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")


class ModelSettings(Protocol):
    """What :func:`load_model_for` reads from a run config (``EvalConfig`` has all of it)."""

    backbone: str
    pretrained: str | None
    checkpoint: str | None
    image_size: int | None
    device: str
    precision: str
    allow_random_backbone: bool
    engine: str
    int8: str | None
    int8_calibration: str | None


def _model_config(backbone: str) -> tuple[dict, BackboneSpec | None]:
    """Return (open_clip model config, registry spec or None) for a name or a JSON path."""
    spec = canonical_backbone(backbone)
    if spec is not None and spec.config_file:
        return json.loads(spec.config_text() or "{}"), spec
    if spec is None and backbone.endswith(".json"):
        path = Path(backbone)
        if not path.is_file():
            msg = f"backbone config {path} does not exist; pass an open_clip model name or a model-config JSON"
            raise FileNotFoundError(msg)
        cfg = json.loads(path.read_text())
        return cfg.get("model_cfg", cfg), None
    name = spec.open_clip_name if spec else backbone
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        msg = (f"unknown backbone {backbone!r}; registered: {sorted(BACKBONES)}; any open_clip ViT name "
               "(open_clip.list_models()) or a path to an open_clip model-config JSON also works")
        raise ValueError(msg)
    return copy.deepcopy(cfg), spec


def config_sha256(cfg: dict) -> str:
    """SHA-256 of a backbone config's content (canonical JSON): the ``backbone_config`` part of reuse keys."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def _build_clip(cfg: dict, quick_gelu: bool, seed: int) -> torch.nn.Module:
    cfg = dict(cfg)
    cfg["quick_gelu"] = bool(cfg.get("quick_gelu", False) or quick_gelu)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    for key in ("multimodal_cfg", "init_logit_bias"):
        cfg.pop(key, None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return (CustomTextCLIP if custom_text else CLIP)(**cfg)


def _clip_weights_path(backbone: str, spec: BackboneSpec | None, pretrained: str) -> Path:
    """Resolve ``pretrained`` (a file or a tag) to a local file (downloading a tag's file if allowed)."""
    if Path(pretrained).expanduser().is_file():
        return Path(pretrained).expanduser()
    if looks_like_path(pretrained):
        hit, searched = find_local([Path(pretrained).name])
        if hit is not None:
            return hit
        raise not_found(f"CLIP weights file {pretrained!r}", [pretrained], [str(Path(pretrained)), *searched],
                        "file does not exist", "check the path")
    name = spec.open_clip_name if spec and spec.open_clip_name else backbone
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    local = [spec.tags[pretrained]] if spec and pretrained in spec.tags else []
    if tag_cfg.get("url"):
        local.append(Path(tag_cfg["url"]).name)
    if not tag_cfg and not local:
        tags = open_clip.list_pretrained_tags_by_model(name)
        msg = f"unknown pretrained tag {pretrained!r} for {name!r}; known tags: {tags or 'none'}; or pass a file path"
        raise ValueError(msg)
    local.append(f"{name}/{pretrained}/open_clip_model.safetensors")
    hub = hub_files_of(tag_cfg["hf_hub"]) if tag_cfg.get("hf_hub") else []
    return resolve_clip_weights(name, pretrained, list(dict.fromkeys(local)), hub, tag_cfg.get("url", ""))


def _checkpoint_path(checkpoint: str | os.PathLike[str]) -> tuple[Path, str]:
    """Resolve a registered checkpoint name or a path; return (path, display name)."""
    name = str(checkpoint)
    if name not in CHECKPOINTS:
        return Path(name).expanduser(), name
    spec = CHECKPOINTS[name]
    hit, searched = find_local([spec.hf_filename, f"{name}.pth"])
    files = [(spec.hf_repo, spec.hf_filename)]
    path = hit or hub_cached(files, searched)
    error = ""
    if path is None:
        path, error = hub_download(files)
    if path is None:
        fix = (f"download {spec.hf_filename} from huggingface.co/{spec.hf_repo} and put it in "
               f"${WEIGHTS_DIR_ENV}/{spec.hf_filename} (or ${WEIGHTS_DIR_ENV}/{name}.pth) or the hub cache "
               f"(hf download {spec.hf_repo} {spec.hf_filename}), or pass "
               "checkpoint='/path/to/epoch_15.pth'; behind a proxy set HTTPS_PROXY")
        raise not_found(f"adapter checkpoint {name!r} ({spec.trained_on})", [spec.hf_filename], searched,
                        error, fix)
    return path, name


def _adapter_sizes(state: dict[str, torch.Tensor], embed_dim: int, text_width: int, source: str) -> dict:
    """Infer n_ctx / reduction / PQA width / layer count from checkpoint tensors; check the widths."""
    try:
        ctx = state["text_adapter.ctx"]
        hidden, dim = state["visual_adapter.global_mlp.net.0.weight"].shape
        width = state["prompt_query_adapter.map_head.0.weight"].shape[0]
    except KeyError as exc:
        msg = f"{source}: adapter tensor {exc} missing; not a complete AdaptCLIP checkpoint"
        raise CheckpointMismatchError(msg) from exc
    if dim != embed_dim or ctx.shape[-1] != text_width:
        msg = (f"{source} was trained for a backbone with embed dim {dim} and text width {ctx.shape[-1]}, "
               f"but this backbone has embed dim {embed_dim} and text width {text_width}; use the backbone "
               "it was trained with (the released checkpoints need ViT-L-14-336) or another checkpoint")
        raise CheckpointMismatchError(msg)
    layers = len({k.split(".")[2] for k in state if k.startswith("prompt_query_adapter.layer_norms.")})
    return {"n_ctx": int(ctx.shape[1]), "reduction": int(dim // hidden), "pqa_width": int(width),
            "n_layers": layers}


def load_model(
    backbone: str = DEFAULT_BACKBONE,
    pretrained: str | None = DEFAULT_PRETRAINED,
    checkpoint: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    *,
    allow_random_backbone: bool = False,
    feature_layers: tuple[int, ...] | None = None,
    vv_start: int | None = None,
    precision: str = "fp32",
    seed: int = 0,
    engine: str = "torch",
    int8: str | None = None,
    calibration: str | os.PathLike[str] | list | torch.Tensor | None = None,
) -> AdaptCLIP:
    """Build AdaptCLIP on a frozen open_clip backbone, in eval mode.

    Args:
        backbone: registered name (``"ViT-L-14-336"``, ``"adaptclip-tiny"``), any open_clip ViT name,
            or a path to an open_clip model-config JSON.
        pretrained: open_clip tag (``"openai"``), a local weights file (OpenAI ``.pt``, open_clip
            ``.bin``/``.safetensors``), or None for random weights (needs ``allow_random_backbone``).
        checkpoint: None (fresh adapters), ``"adaptclip-mvtec"``/``"adaptclip-visa"``, a directory from
            :func:`adaptclip_med.save_adapters`, or an authors' ``.pth``.
        image_size: run-time side ``S`` (default: the backbone's registered size, 518 for ViT-L).
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or a torch device.
        allow_random_backbone: permit ``pretrained=None`` (tests, offline pipeline demos).
        feature_layers: 1-indexed feature blocks (default: 4 evenly spaced, from the depth).
        vv_start: first V-V block (default: the first feature layer).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast for the backbone; fp16 is for GPUs).
        seed: seed of the random initialisation (backbone when random, fresh adapters).
        engine: what computes the frozen features: ``"torch"``, or the exported graph run by
            ``"onnxruntime"`` or ``"openvino"`` (CPU; built on first use and cached on disk,
            :mod:`adaptclip_med.engines`). The adapters and scoring stay in torch.
        int8: with ``precision="int8"``: ``"weights"`` (weight-only, the default) or ``"full"``
            (weights and activations, calibrated on ``calibration``).
        calibration: normal images for ``int8="full"``: a folder, image files, or a ``(C, 3, S, S)``
            preprocessed tensor.

    Raises:
        WeightsNotFoundError: weights missing and not downloadable (offline); the message says where
            to put them.
        CheckpointMismatchError: the checkpoint was made for another backbone width.
        ValueError: unknown backbone, tag, precision or device.
    """
    if precision not in PRECISIONS:
        msg = f"precision {precision!r}; expected one of {', '.join(PRECISIONS)}"
        raise ValueError(msg)
    int8 = check_engine(engine, precision, int8)
    if engine != "torch" and _device(device).type != "cpu":
        msg = f"engine {engine!r} runs on the CPU; got device {device!r} (use engine='torch' on accelerators)"
        raise ValueError(msg)
    cfg, spec = _model_config(backbone)
    backbone_name = spec.name if spec else backbone
    if image_size is not None:
        check_image_size(int(image_size), int(cfg["vision_cfg"].get("patch_size", 16)), backbone_name)
    provenance: dict = {"backbone": backbone_name, "pretrained": pretrained}
    if pretrained is None and not allow_random_backbone:
        msg = (f"pretrained=None gives {backbone_name!r} random weights, which detect nothing; pass a tag "
               "or file, or allow_random_backbone=True for tests and pipeline demos")
        raise ValueError(msg)
    weights = None if pretrained is None else _clip_weights_path(backbone, spec, pretrained)
    quick_gelu = bool(spec.quick_gelu if spec else (
        pretrained and open_clip.get_pretrained_cfg(backbone, pretrained).get("quick_gelu", False)))
    if weights is not None and not quick_gelu:  # OpenAI weights given as a file were trained with QuickGELU
        quick_gelu = openai_weights(spec.open_clip_name if spec and spec.open_clip_name else backbone, weights)
    provenance["activation"] = "QuickGELU" if quick_gelu or cfg.get("quick_gelu") else "GELU"
    provenance["backbone_config_sha256"] = config_sha256(cfg)  # content, not path: an edited JSON is another key
    provenance["seed"] = seed
    clip = _build_clip(cfg, quick_gelu, seed)
    if weights is not None:
        try:
            clip.load_state_dict(read_state_dict(weights), strict=True)
        except RuntimeError as exc:
            msg = f"{weights}: does not match backbone {backbone_name!r} ({str(exc).splitlines()[0]})"
            raise CheckpointMismatchError(msg) from exc
        provenance["pretrained_file"] = str(weights)
    clip = clip.float()
    vision = FrozenCLIPVision(clip.visual, feature_layers, vv_start)
    text = FrozenTextEncoder(clip)
    state, meta, sizes = None, {}, {}
    if checkpoint is not None:
        path, shown = _checkpoint_path(checkpoint)
        state, meta = read_checkpoint(path)
        sizes = _adapter_sizes(state, vision.embed_dim, text.width, shown)
        provenance.update(checkpoint=shown, checkpoint_file=str(path),
                          checkpoint_sha256=None if path.is_dir() else sha256_file(path))
        if sizes.pop("n_layers") != len(vision.feature_layers):
            msg = f"{shown}: adapters for another number of feature layers than {vision.feature_layers}"
            raise CheckpointMismatchError(msg)
    size = int(image_size or (spec.image_size if spec else cfg["vision_cfg"].get("image_size", 224)))
    config = AdaptCLIPConfig(
        backbone=backbone_name, pretrained=pretrained if pretrained is None else str(pretrained),
        image_size=size, embed_dim=vision.embed_dim, feature_layers=vision.feature_layers,
        vv_start=vision.vv_start, pqa_context=bool(meta.get("pqa_context", True)), **sizes,
    )
    normal, anomalous = static_prompts()
    context = int(cfg.get("text_cfg", {}).get("context_length", 77))
    static_tokens = open_clip.tokenize(normal + anomalous, context_length=context)
    template = open_clip.tokenize([" ".join([TEMPLATE_PROMPT_WORD] * config.n_ctx) + "."], context)[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AdaptCLIP(vision, text, static_tokens, len(normal), template, config,
                          static_features=static_text_features(text, static_tokens, key_parts={
                              "backbone_config": provenance["backbone_config_sha256"],
                              "architecture": {"activation": provenance["activation"]}}))
    if state is not None:
        load_adapter_state(model, state, provenance["checkpoint"])
    model.provenance = provenance
    model.precision = precision
    model.preprocessor = ModelInput(size)
    if engine != "torch":
        cal = calibration_images(calibration, size) if int8 == "full" else None
        model.backbone.engine = open_engine(vision, size, engine, int8, calibration=cal, source=provenance)
        provenance["engine"] = model.backbone.engine.identity()
    return model.to(_device(device)).eval()


def check_image_size(size: int, patch: int, backbone: str) -> None:
    """Refuse a run-time size the backbone's patch grid cannot tile (every image would be unusable).

    Raises:
        ValueError: ``size`` is not a multiple of ``patch`` (or below two patches), naming the nearest valid sizes.
    """
    if size % patch == 0 and size >= 2 * patch:
        return
    lower, upper = (size // patch) * patch, (size // patch + 1) * patch
    nearest = [s for s in (lower, upper) if s >= 2 * patch] or [2 * patch]
    msg = (f"image size {size} does not fit backbone {backbone!r}: its patches are {patch} px, so the size must be "
           f"a multiple of {patch} (at least {2 * patch}); nearest valid: {' or '.join(map(str, nearest))}")
    raise ValueError(msg)


def load_model_for(config: ModelSettings) -> AdaptCLIP:
    """``load_model`` with a run config's backbone, weights, size, device and precision.

    Every load failure becomes one :class:`AdaptCLIPError` line (the CLIs print it and exit 2).

    Raises:
        AdaptCLIPError: random weights without ``allow_random_backbone``, unknown backbone / tag,
            weights not found (offline), checkpoint for another backbone, no such device.
    """
    if config.pretrained is None and not config.allow_random_backbone:
        msg = (f"backbone {config.backbone!r} with --pretrained none: random weights give meaningless "
               "scores; pass a pretrained tag or weights file, or --allow-random-backbone for a pipeline test")
        raise AdaptCLIPError(msg)
    try:
        return load_model(backbone=config.backbone, pretrained=config.pretrained, checkpoint=config.checkpoint,
                          image_size=config.image_size, device=config.device, precision=config.precision,
                          allow_random_backbone=config.allow_random_backbone,
                          engine=getattr(config, "engine", "torch"), int8=getattr(config, "int8", None),
                          calibration=getattr(config, "int8_calibration", None))
    except AdaptCLIPError:
        raise
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as err:
        msg = f"cannot load the model (backbone {config.backbone!r}, checkpoint {config.checkpoint!r}): {err}"
        raise AdaptCLIPError(msg) from err


def load_winclip(model: AdaptCLIP | None = None, **load_kwargs: object) -> WinCLIP:
    """WinCLIP / WinCLIP+ on the frozen backbone of ``model`` (or of ``load_model(**load_kwargs)``).

    Nothing is copied: the vision tower is the same module, the text features are AdaptCLIP's static ones
    (the same compositional prompt ensemble), the preprocessor, size, device and precision are its own.
    """
    model = model if model is not None else load_model(**load_kwargs)  # type: ignore[arg-type]
    win = WinCLIP(model.backbone, model.static_text_features, model.image_size)
    win.provenance = {**getattr(model, "provenance", {}), "method": "winclip"}
    win.precision = model.precision
    win.preprocessor = model.preprocessor
    return win.to(model.device).eval()


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = "device='cuda' but no CUDA GPU is available; use device='cpu'"
        raise ValueError(msg)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        msg = "device='mps' but Metal is not available; use device='cpu'"
        raise ValueError(msg)
    return dev


__all__ = ["PRECISIONS", "WeightsNotFoundError", "load_model", "load_model_for", "load_winclip"]
