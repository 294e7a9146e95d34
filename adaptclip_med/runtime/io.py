"""Small file helpers: atomic, durable writes and content hashes.

Every finished file or folder is written under a temporary name beside its target, flushed to disk
(``fsync`` of the file, then of the folder holding it) and renamed into place: after a crash or power
loss a reader sees either the old content or the complete new one, never a torn file. Permissions
follow the process umask like any ``open()``-created file (0644 files / 0755 folders with umask 022,
0600 / 0700 with umask 077), not ``tempfile``'s private 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``), else by setting and restoring it."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a folder's data and metadata to disk (folders: best effort on every OS)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # folders cannot be opened on Windows; their entries are durable there anyway
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _finish(tmp: Path, target: Path) -> None:
    """Give ``tmp`` (a file or a folder tree) umask permissions, flush it, rename it onto ``target``."""
    mask = current_umask()
    paths = [tmp] if tmp.is_file() else [*sorted(tmp.rglob("*"), reverse=True), tmp]  # children first
    for path in paths:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
        fsync_path(path)
    tmp.replace(target)
    fsync_path(target.parent)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; move it onto ``path`` only if the block succeeds.

    Readers never see a half-written file, even after a crash: the file is fsynced before the
    rename and the folder after it. The result has the permissions the umask gives new files.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _finish(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` (whole) only if the block succeeds.

    Every file inside is fsynced, then the folders, then the rename is made durable, so a folder that
    exists under ``path`` is complete. An older ``path`` is removed just before the rename.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        _finish(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically and durably (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically and durably."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def weights_fingerprint(module: Any) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of every parameter and buffer of a torch ``module``."""
    import torch  # here, not at import: the CLIs answer --help without loading torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        data = tensor.detach().to("cpu").contiguous()
        if data.numel():
            digest.update(data.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
