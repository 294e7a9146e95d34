"""On-disk cache of the static prompt ensemble's text features (the slow part of building a model).

Encoding the 231 static prompts through the frozen text tower takes ~10 s for ViT-L-14-336 on a CPU,
on every ``load_model`` — every ``evaluate``, ``score`` and torchrun rank. The result depends only on
the text tower's weights, the prompt tokens and the code that runs them, so it is stored once under
``<cache>/text/<key>.safetensors`` and read back (bit for bit the computed ``(T, D)`` float32 tensor).

``key`` is the one reuse key (:func:`adaptclip_med.runtime.keys.reuse_key`, :func:`text_key`): the
package's code fingerprint and library versions, the text tower's parameter and buffer bytes (names,
shapes, dtypes), its architecture (activation — GELU or QuickGELU — and module structure), the
backbone config's content hash, the device type and the token ids: other weights, another activation,
an edited config JSON or other code get another entry. ``<cache>`` is ``$ADAPTCLIP_CACHE_DIR``, else
``$XDG_CACHE_HOME/adaptclip_med``, else ``~/.cache/adaptclip_med``; ``ADAPTCLIP_CACHE_DIR=none`` turns
the cache off. An unreadable entry is recomputed and an unwritable cache is skipped: the cache never
makes a load fail.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from adaptclip_med.runtime.io import atomic_path, weights_fingerprint
from adaptclip_med.runtime.keys import device_type, module_structure, reuse_key
from adaptclip_med.runtime.privacy import CACHE_OFF, user_cache_dir


def cache_root() -> Path | None:
    """The cache folder (see the module docstring), or None when turned off."""
    explicit = os.environ.get("ADAPTCLIP_CACHE_DIR")
    return None if explicit is not None and explicit.strip().lower() in CACHE_OFF else user_cache_dir()


def text_key(text_encoder: nn.Module, tokens: torch.Tensor, key_parts: Mapping[str, object] | None = None) -> str:
    """The reuse key (:func:`adaptclip_med.runtime.keys.reuse_key`) of the static text features.

    Its parts: code fingerprint and library versions, the text tower's state (names, shapes, dtypes,
    bytes), its architecture (activation and module structure), the device type, the ``tokens``, and
    ``key_parts`` (``load_model``'s ``backbone_config`` content hash and ``architecture``).
    """
    parts = dict(key_parts or {})
    ids = tokens.detach().to("cpu", torch.int64).contiguous()
    token_hash = hashlib.sha256(f"{tuple(ids.shape)}\n".encode() + ids.reshape(-1).view(torch.uint8).numpy().tobytes())
    architecture = {**dict(parts.pop("architecture", None) or {}), "modules": module_structure(text_encoder)}
    device = device_type(next(text_encoder.parameters()).device)
    return reuse_key(**parts, architecture=architecture, weights=weights_fingerprint(text_encoder), device=device,
                     tokens=token_hash.hexdigest()).digest


def static_text_features(text_encoder: nn.Module, tokens: torch.Tensor, root: Path | None = None,
                         key_parts: Mapping[str, object] | None = None) -> torch.Tensor:
    """``(T, D)`` features of the ``(T, C)`` prompt ``tokens``: ``text_encoder.encode_tokens``, cached.

    Args:
        text_encoder: the frozen text tower (a :class:`~adaptclip_med.model.text_encoder.FrozenTextEncoder`).
        tokens: the static prompt ensemble's token ids.
        root: the cache folder (default :func:`cache_root`).
        key_parts: more parts of the entry's key (:func:`text_key`): the backbone config and architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    root = cache_root() if root is None else root
    path = None if root is None else root / "text" / f"{text_key(text_encoder, tokens, key_parts)}.safetensors"
    device = next(text_encoder.parameters()).device
    if path is not None and path.is_file():
        try:
            stored = load_file(path)["features"]
            if stored.shape[0] == tokens.shape[0]:
                return stored.to(device)
        except (OSError, SafetensorError, KeyError, RuntimeError):
            pass  # damaged or foreign entry: computed again and replaced below
    with torch.no_grad():
        feats = text_encoder.encode_tokens(tokens.long().to(device))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file({"features": feats.detach().to("cpu").contiguous()}, str(tmp))
        except OSError:
            pass  # a read-only or full cache folder only costs the time saved
    return feats
