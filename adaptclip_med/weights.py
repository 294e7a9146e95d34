"""Find backbone and adapter weights: explicit file → ``ADAPTCLIP_WEIGHTS_DIR`` → caches → download.

Offline with nothing local gives one :class:`WeightsNotFoundError` that names the model, the tag,
the file expected, every place searched, and how to provide it. ``ADAPTCLIP_OFFLINE=1`` (or
``HF_HUB_OFFLINE=1``) skips download attempts.
"""

from __future__ import annotations

import os
import socket
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from .errors import WeightsNotFoundError

WEIGHTS_DIR_ENV = "ADAPTCLIP_WEIGHTS_DIR"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
_NON_TENSOR_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")  # not weights


def weights_dirs() -> list[Path]:
    """Folders searched for local weights: ``$ADAPTCLIP_WEIGHTS_DIR`` then open_clip's cache."""
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    dirs.append(Path("~/.cache/clip").expanduser())
    return dirs


def offline() -> bool:
    """True when downloads must not be tried."""
    return any(os.environ.get(v, "") not in ("", "0") for v in ("ADAPTCLIP_OFFLINE", "HF_HUB_OFFLINE"))


def network_error(host: str = "huggingface.co", timeout: float = 3.0) -> str:
    """Return "" when ``host:443`` accepts a connection quickly, else why not (no hub retry loops offline)."""
    if offline():
        return "offline mode (ADAPTCLIP_OFFLINE/HF_HUB_OFFLINE set)"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        return f"no network connection to {host} ({exc})"
    return ""


def looks_like_path(value: str) -> bool:
    """True for strings that name a file rather than a registry tag."""
    return value.endswith(WEIGHT_SUFFIXES) or os.sep in value or value.startswith(".")


def find_local(relative_names: list[str]) -> tuple[Path | None, list[Path]]:
    """Look for any of ``relative_names`` in :func:`weights_dirs`; return (hit, searched paths)."""
    searched = []
    for folder in weights_dirs():
        for name in relative_names:
            candidate = folder / name
            searched.append(candidate)
            if candidate.is_file():
                return candidate, searched
    return None, searched


def hf_cached_or_download(repo: str, filename: str, searched: list[Path]) -> tuple[Path | None, str]:
    """Try the Hugging Face cache, then (unless offline) a download; return (path, last error)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a declared dependency
        return None, "huggingface_hub is not installed"
    searched.append(Path(f"<huggingface cache>/{repo}/{filename}"))
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=True)), ""
    except Exception as exc:  # the hub raises several types for "not cached"
        error = f"{type(exc).__name__}: {exc}"
    reason = network_error()
    if reason:
        return None, reason
    try:
        return Path(hf_hub_download(repo, filename)), ""
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None, error


def not_found(what: str, expected: list[str], searched: list[Path], error: str, fix: str) -> WeightsNotFoundError:
    """Build the one actionable error for missing weights."""
    places = "\n".join(f"  - {p}" for p in searched) or "  (nothing)"
    msg = (
        f"{what}: weights not found locally and could not be downloaded ({error or 'no source'}).\n"
        f"Expected file: {' or '.join(expected)}\nSearched:\n{places}\n"
        f"Fix: {fix}"
    )
    return WeightsNotFoundError(msg)


def resolve_clip_weights(model_name: str, tag: str, local_names: list[str],
                         download: Callable[[], str] | None) -> Path:
    """Locate the CLIP weights for ``model_name`` + ``tag`` (a registry tag, not a path).

    Args:
        model_name: open_clip model name, for the message.
        tag: pretrained tag (``"openai"``).
        local_names: file names to look for in :func:`weights_dirs`.
        download: callable returning a downloaded path (open_clip's downloader), or None.

    Raises:
        WeightsNotFoundError: nothing local and the download failed or is disabled.
    """
    hit, searched = find_local(local_names)
    if hit is not None:
        return hit
    error = network_error() if download is not None else "no download source"
    if download is not None and not error:
        try:
            return Path(download())
        except Exception as exc:  # urllib/hub errors of many types
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    fix = (f"put {local_names[0]} in ${WEIGHTS_DIR_ENV} (now {os.environ.get(WEIGHTS_DIR_ENV, 'unset')}), "
           f"or pass pretrained='/path/to/{local_names[0]}', or run once with internet access")
    raise not_found(f"CLIP backbone {model_name!r} with pretrained tag {tag!r}", local_names, searched, error, fix)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a CLIP state dict (OpenAI ``.pt`` incl. TorchScript, open_clip ``.bin``/``.safetensors``).

    Never unpickles arbitrary objects (``weights_only=True``); TorchScript archives are read with
    ``torch.jit.load``. Tensors are cast to float32 (OpenAI weights are float16 on disk).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    elif _is_torchscript(path):
        with warnings.catch_warnings():  # OpenAI's .pt files are TorchScript archives
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if k not in _NON_TENSOR_KEYS}
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
