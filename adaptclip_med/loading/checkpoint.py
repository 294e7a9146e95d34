"""Adapter checkpoints: our format (safetensors + JSON) and the authors' ``.pth`` format (spec §8).

Our format is a directory holding ``adapters.safetensors`` (the three adapters' state, our key
names) and ``config.json`` (:class:`AdaptCLIPConfig` + package version). The authors' format is a
torch-saved dict of three state dicts (``textual_learner``, ``visual_learner``, ``pq_learner``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from adaptclip_med.model.adaptclip import AdaptCLIP
from adaptclip_med.runtime.errors import CheckpointMismatchError
from adaptclip_med.runtime.io import atomic_path, atomic_write_json

WEIGHTS_FILE = "adapters.safetensors"
CONFIG_FILE = "config.json"
ADAPTER_PREFIXES = ("text_adapter.", "visual_adapter.", "prompt_query_adapter.")
_PREFIXES = (  # (our prefix, authors' group, authors' prefix; "{i}" = one alias per feature layer)
    ("visual_adapter.global_mlp.net.", "visual_learner", "global_adapter.fc."),
    ("visual_adapter.local_mlp.net.", "visual_learner", "local_adater.fc."),  # sic, as released
    ("prompt_query_adapter.layer_norms.", "pq_learner", "sharebn."),
    ("prompt_query_adapter.map_head.", "pq_learner", "local_adapter.{i}."),
    ("prompt_query_adapter.score_head.", "pq_learner", "global_adapter.{i}."),
)


def adapter_state(model: AdaptCLIP) -> dict[str, torch.Tensor]:
    """The adapters' tensors (parameters and BatchNorm statistics), our key names, on the CPU."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if k.startswith(ADAPTER_PREFIXES)}


def save_adapters(model: AdaptCLIP, directory: str | os.PathLike[str], extra: dict | None = None) -> Path:
    """Write ``adapters.safetensors`` + ``config.json`` into ``directory`` (atomically, file by file)."""
    from safetensors.torch import save_file

    from adaptclip_med.runtime.version import __version__

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(adapter_state(model), str(tmp))
    meta = {"format": "adaptclip_med-adapters", "package_version": __version__, **model.config.to_dict()}
    atomic_write_json(out / CONFIG_FILE, {**meta, **(extra or {})})
    return out


def from_authors_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """Map the authors' checkpoint dict to our adapter keys (aliased PQA heads read once)."""
    missing = [g for g in ("textual_learner", "visual_learner", "pq_learner") if g not in checkpoint]
    if missing:
        msg = f"not an AdaptCLIP checkpoint: missing {missing}; found keys {sorted(checkpoint)[:6]}"
        raise CheckpointMismatchError(msg)
    text = checkpoint["textual_learner"]
    state = {"text_adapter.ctx": torch.cat([text["ctx_pos"].reshape(1, *text["ctx_pos"].shape[-2:]),
                                            text["ctx_neg"].reshape(1, *text["ctx_neg"].shape[-2:])])}
    for ours, group, theirs in _PREFIXES:
        prefix = theirs.format(i=0)  # shared heads: every alias holds the same tensors
        for key, value in checkpoint[group].items():
            if key.startswith(prefix):
                state[ours + key[len(prefix):]] = value
    return state


def to_authors_state(model: AdaptCLIP) -> dict[str, dict[str, torch.Tensor]]:
    """Our adapters in the authors' layout (their tools can load the result of :func:`export_authors`)."""
    ours = adapter_state(model)
    tokens = model.text_adapter.template_tokens.cpu()
    frozen = model.text_encoder.embed_tokens(tokens.to(model.device)).detach().cpu()
    n_ctx = model.config.n_ctx
    textual = {}
    for row, tag in enumerate(("pos", "neg")):
        textual[f"ctx_{tag}"] = ours["text_adapter.ctx"][row].reshape(1, 1, n_ctx, -1).clone()
        textual[f"token_prefix_{tag}"] = frozen[:1].reshape(1, 1, 1, -1).clone()
        textual[f"token_suffix_{tag}"] = frozen[1 + n_ctx:].reshape(1, 1, -1, frozen.shape[-1]).clone()
        textual[f"tokenized_prompts_{tag}"] = tokens.to(torch.int32).reshape(1, 1, -1).clone()
    groups: dict[str, dict[str, torch.Tensor]] = {"visual_learner": {}, "pq_learner": {}}
    aliases = range(len(model.config.feature_layers))
    for prefix, group, theirs in _PREFIXES:
        names = [theirs.format(i=i) for i in aliases] if "{i}" in theirs else [theirs]
        for key, value in ours.items():
            if key.startswith(prefix):
                for name in names:
                    groups[group][name + key[len(prefix):]] = value
    return {"textual_learner": textual, **groups}


def export_authors(model: AdaptCLIP, path: str | os.PathLike[str]) -> Path:
    """Save the adapters in the authors' ``.pth`` format (atomically)."""
    with atomic_path(path) as tmp:
        torch.save(to_authors_state(model), tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """Read either format; return (our-key state, config dict — empty for the authors' format).

    ``path``: a folder from :meth:`AdaptCLIP.save_adapters`, its ``adapters.safetensors`` file (the
    folder's ``config.json`` is read too), another ``.safetensors`` file of ours, or an authors' ``.pth``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointMismatchError: the file is neither format.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":  # our weights file itself: its folder has the config
        path = path.parent if path.name == WEIGHTS_FILE else path
    if path.is_file() and path.suffix == ".safetensors":  # renamed: adapters without their config.json
        from safetensors.torch import load_file

        return load_file(str(path)), {}
    if path.is_dir():
        from safetensors.torch import load_file

        if not (path / WEIGHTS_FILE).is_file():
            msg = f"{path}: no {WEIGHTS_FILE}; expected a directory written by model.save_adapters"
            raise CheckpointMismatchError(msg)
        config = json.loads((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else {}
        return load_file(str(path / WEIGHTS_FILE)), config
    if not path.is_file():
        msg = f"adapter checkpoint {path} does not exist"
        raise FileNotFoundError(msg)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = f"{path}: cannot be read as an AdaptCLIP checkpoint ({type(exc).__name__}: {exc})"
        raise CheckpointMismatchError(msg) from exc
    if not isinstance(raw, dict):
        msg = f"{path}: holds a {type(raw).__name__}; expected the authors' dict of three state dicts"
        raise CheckpointMismatchError(msg)
    return from_authors_state(raw), {}


def load_adapter_state(model: AdaptCLIP, state: dict[str, torch.Tensor], source: str) -> None:
    """Load our-key adapter ``state`` into ``model`` after checking every shape.

    Raises:
        CheckpointMismatchError: a width, context length or layer count differs, naming both sides.
    """
    expected = adapter_state(model)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    expected_keys = {k for k in expected if not k.endswith("num_batches_tracked")}
    ctx = state.get("text_adapter.ctx")
    if ctx is not None and ctx.shape != expected["text_adapter.ctx"].shape:
        theirs, ours = tuple(ctx.shape), tuple(expected["text_adapter.ctx"].shape)
        msg = (f"{source}: text contexts of shape {theirs} (text width {theirs[-1]}) do not fit backbone "
               f"{model.config.backbone!r} (needs {ours}, text width {ours[-1]}); use a checkpoint trained "
               "for this backbone, or pass the matching backbone")
        raise CheckpointMismatchError(msg)
    for key, value in state.items():
        if key in expected and expected[key].shape != value.shape:
            msg = (f"{source}: {key} has shape {tuple(value.shape)} but backbone {model.config.backbone!r} "
                   f"(embed dim {model.backbone.embed_dim}) needs {tuple(expected[key].shape)}; the checkpoint "
                   "was made for another backbone or adapter size")
            raise CheckpointMismatchError(msg)
    missing, unexpected = sorted(expected_keys - set(state)), sorted(set(state) - expected_keys)
    if missing or unexpected:
        msg = f"{source}: missing adapter tensors {missing[:5]}, unexpected {unexpected[:5]}"
        raise CheckpointMismatchError(msg)
    model.load_state_dict(state, strict=False)
