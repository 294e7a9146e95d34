"""Find backbone and adapter weights: explicit file → ``ADAPTCLIP_WEIGHTS_DIR`` → caches → download.

Caches searched: ``$ADAPTCLIP_WEIGHTS_DIR``, open_clip's URL cache ``~/.cache/clip``, and the Hugging Face
hub cache where open_clip (and ``hf download``) keep their downloads (``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), read through ``huggingface_hub`` itself, so a cached
file is found offline. Downloads go through the hub client, which honours ``HTTPS_PROXY``/``HTTP_PROXY``
and ``HF_ENDPOINT``; one metadata request with a short timeout (``HF_HUB_ETAG_TIMEOUT``, default 5 s)
and no retries decides, within seconds, whether the hub is reachable. ``ADAPTCLIP_OFFLINE=1`` (or
``HF_HUB_OFFLINE=1``) skips downloads. Nothing found gives one :class:`WeightsNotFoundError` that names
the model, the tag, the file expected, every place searched, and how to provide it.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import torch

from adaptclip_med.runtime.errors import WeightsNotFoundError

WEIGHTS_DIR_ENV = "ADAPTCLIP_WEIGHTS_DIR"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
OFFLINE_ENVS = ("ADAPTCLIP_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULT_HUB_TIMEOUT = 5.0
_NON_TENSOR_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")  # not weights


def weights_dirs() -> list[Path]:
    """Folders searched for local weights: ``$ADAPTCLIP_WEIGHTS_DIR`` then open_clip's URL cache."""
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    dirs.append(Path("~/.cache/clip").expanduser())
    return dirs


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment *now* (as ``huggingface_hub`` resolves it)."""
    for env in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(env):
            return Path(os.environ[env]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = Path(os.environ["XDG_CACHE_HOME"]).expanduser() if os.environ.get("XDG_CACHE_HOME") else Path(
        "~/.cache").expanduser()
    return base / "huggingface" / "hub"


def offline() -> bool:
    """True when downloads must not be tried."""
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no") for v in OFFLINE_ENVS)


def hub_timeout() -> float:
    """Seconds the hub may take to answer the metadata request (``HF_HUB_ETAG_TIMEOUT``, default 5)."""
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT", DEFAULT_HUB_TIMEOUT))
    except ValueError:
        return DEFAULT_HUB_TIMEOUT


def _proxy_note() -> str:
    """`` via proxy host:port`` when an HTTPS proxy is configured (credentials never shown)."""
    for env in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if os.environ.get(env):
            parts = urlsplit(os.environ[env] if "://" in os.environ[env] else f"http://{os.environ[env]}")
            return f" via proxy {parts.hostname}:{parts.port or ''} (${env})"
    return ""


def looks_like_path(value: str) -> bool:
    """True for strings that name a file rather than a registry tag."""
    return value.endswith(WEIGHT_SUFFIXES) or os.sep in value or value.startswith(".")


def find_local(relative_names: Sequence[str]) -> tuple[Path | None, list[str]]:
    """Look for any of ``relative_names`` in :func:`weights_dirs`; return (hit, places searched)."""
    searched = []
    for folder in weights_dirs():
        for name in relative_names:
            candidate = folder / name
            searched.append(str(candidate))
            if candidate.is_file():
                return candidate, searched
    return None, searched


def hub_cached(files: Sequence[tuple[str, str]], searched: list[str]) -> Path | None:
    """The first of ``files`` (``(repo, filename)``) already in the hub cache, or None; records the places."""
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir()
    for repo, filename in files:
        searched.append(f"{cache}/models--{repo.replace('/', '--')}/snapshots/*/{filename}")
        hit = try_to_load_from_cache(repo, filename, cache_dir=cache)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def hub_download(files: Sequence[tuple[str, str]]) -> tuple[Path | None, str]:
    """Download the first of ``files`` the hub has; return (path, "") or (None, why not).

    One metadata request per file, short timeout, no retries: an unreachable hub or proxy fails in
    seconds. Only then does the hub client download (into :func:`hub_cache_dir`, where open_clip looks).
    """
    if offline():
        set_by = next(v for v in OFFLINE_ENVS if os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no"))
        return None, f"offline mode (${set_by} is set)"
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    errors = []
    for repo, filename in files:
        try:
            get_hf_file_metadata(hf_hub_url(repo, filename), timeout=hub_timeout())
        except Exception as exc:  # connection, proxy, 404, auth: the hub client raises many types
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            errors.append(f"huggingface.co/{repo}/{filename}{_proxy_note()}: {type(exc).__name__}: {first}")
            continue
        try:
            return Path(hf_hub_download(repo, filename, cache_dir=hub_cache_dir(), etag_timeout=hub_timeout())), ""
        except Exception as exc:
            errors.append(f"{repo}/{filename}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return None, "; ".join(errors) or "no hub source"


def not_found(what: str, expected: Sequence[str], searched: Sequence[str | Path], error: str,
              fix: str) -> WeightsNotFoundError:
    """Build the one actionable error for missing weights."""
    places = "\n".join(f"  - {p}" for p in searched) or "  (nothing)"
    msg = (
        f"{what}: weights not found locally and could not be downloaded ({error or 'no source'}).\n"
        f"Expected file: {' or '.join(expected)}\nSearched:\n{places}\n"
        f"Fix: {fix}"
    )
    return WeightsNotFoundError(msg)


def hub_files_of(hf_hub: str) -> list[tuple[str, str]]:
    """``(repo, filename)`` candidates of an open_clip ``hf_hub`` entry (``org/name/`` or ``org/name/file``).

    As open_clip does: a safetensors file first, then the pickled one.
    """
    repo, _, filename = hf_hub.strip().rpartition("/")
    if not filename:
        return [(repo, "open_clip_model.safetensors"), (repo, "open_clip_pytorch_model.bin")]
    if filename.endswith((".bin", ".pth")):
        return [(repo, filename.rsplit(".", 1)[0] + ".safetensors"), (repo, filename)]
    return [(repo, filename)]


def resolve_clip_weights(model_name: str, tag: str, local_names: Sequence[str],
                         hub_files: Sequence[tuple[str, str]], url: str = "") -> Path:
    """Locate the CLIP weights for ``model_name`` + ``tag`` (a registry tag, not a path).

    Order: :func:`weights_dirs`, the hub cache, a hub download, then (no hub entry) open_clip's URL.

    Raises:
        WeightsNotFoundError: nothing local and the download failed or is disabled.
    """
    hit, searched = find_local(local_names)
    if hit is not None:
        return hit
    hit = hub_cached(hub_files, searched)
    if hit is not None:
        return hit
    path, error = hub_download(hub_files) if hub_files else (None, "no hub entry for this tag")
    if path is not None:
        return path
    if url and not hub_files and not offline():
        from open_clip.pretrained import download_pretrained_from_url

        try:
            return Path(download_pretrained_from_url(url))
        except Exception as exc:  # urllib errors of many types
            error = f"{url}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    hub_hint = f" or into the hub cache (hf download {hub_files[0][0]})" if hub_files else ""
    fix = (f"put {local_names[0]} in ${WEIGHTS_DIR_ENV} (now {os.environ.get(WEIGHTS_DIR_ENV, 'unset')})"
           f"{hub_hint}, or pass pretrained='/path/to/{local_names[0]}', or run once with internet access "
           "(set HTTPS_PROXY if the network needs a proxy)" + (f"; the file is also at {url}" if url else ""))
    expected = list(local_names) + [f"{r}/{f}" for r, f in hub_files]
    raise not_found(f"CLIP backbone {model_name!r} with pretrained tag {tag!r}", expected, searched, error, fix)


def is_torchscript(path: str | os.PathLike[str]) -> bool:
    """True for a TorchScript archive (the format of OpenAI's released CLIP ``.pt`` files)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def openai_weights(model_name: str, path: Path) -> bool:
    """True when a weights *file* is OpenAI's CLIP (trained with QuickGELU, which must then be built).

    Recognised by: the TorchScript format OpenAI released; ``openai`` in the file name or in a hub-cache
    repository folder of the path (open_clip's copies ``models--timm--vit_base_patch16_clip_224.openai``);
    or the file name of an open_clip ``openai`` tag's URL for this model (``ViT-B-16.pt``,
    ``ViT-L-14-336px.pt``).
    """
    import open_clip

    hub_repo = any(part.startswith("models--") and "openai" in part.lower() for part in path.parts)
    if "openai" in path.name.lower() or hub_repo or is_torchscript(path):
        return True
    for tag in open_clip.list_pretrained_tags_by_model(model_name):
        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        if cfg.get("quick_gelu") and cfg.get("url") and Path(urlsplit(cfg["url"]).path).name == path.name:
            return True
    return False


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a CLIP state dict (OpenAI ``.pt`` incl. TorchScript, open_clip ``.bin``/``.safetensors``).

    Never unpickles arbitrary objects (``weights_only=True``); TorchScript archives are read with
    ``torch.jit.load``. Tensors are cast to float32 (OpenAI weights are float16 on disk).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    elif is_torchscript(path):
        with warnings.catch_warnings():  # OpenAI's .pt files are TorchScript archives
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if k not in _NON_TENSOR_KEYS}
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
