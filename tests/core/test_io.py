"""Atomic writes: permissions follow the umask; files and folders are fsynced before the rename."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptclip_med.features.cache import FeatureCache
from adaptclip_med.runtime.io import atomic_dir, atomic_path, atomic_write_json, atomic_write_text, current_umask


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                             (0o002, 0o664, 0o775)])
def test_written_files_and_folders_follow_the_umask(umask, tmp_path: Path, mask: int, file_mode: int,
                                                     dir_mode: int) -> None:
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_json(tmp_path / "sub" / "b.json", {"k": 1})
    with atomic_dir(tmp_path / "ckpt") as tmp:
        (tmp / "inner").mkdir()
        (tmp / "inner" / "w.bin").write_bytes(b"w")
    cache = FeatureCache(tmp_path / "cache", {"backbone": "x"}, "float32")
    cache.store_features("ab" * 32, torch.zeros(4), torch.zeros(2, 3, 4))
    for path in (tmp_path / "a.txt", tmp_path / "sub" / "b.json", tmp_path / "ckpt" / "inner" / "w.bin",
                 cache.dir / "features" / f"{'ab' * 32}.npy", cache.dir / "spec.json"):
        assert _mode(path) == file_mode, path
    for path in (tmp_path / "ckpt", tmp_path / "ckpt" / "inner"):
        assert _mode(path) == dir_mode, path


def test_a_failed_block_leaves_the_old_content_and_no_temporary_files(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "ckpt") as tmp:
        (tmp / "half").write_text("half")
        raise RuntimeError
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("new, half")
        raise RuntimeError
    assert (tmp_path / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_data_is_fsynced_before_the_rename_and_the_folder_after(monkeypatch, tmp_path: Path) -> None:
    """Record the real fsync and rename calls (both still run) and check their order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", str(Path(f"/proc/self/fd/{fd}").readlink())))
        real_fsync(fd)

    def replace(self: Path, target: Path) -> Path:
        events.append(("rename", str(self)))
        return real_replace(self, target)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to map file descriptors to paths")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    with atomic_dir(tmp_path / "epoch_001") as tmp:
        np.save(tmp / "w.npy", np.zeros(3))
    renamed = [i for i, (kind, _) in enumerate(events) if kind == "rename"]
    assert len(renamed) == 1
    before, after = events[:renamed[0]], events[renamed[0] + 1:]
    assert ("fsync", str(tmp / "w.npy")) in before and ("fsync", str(tmp)) in before
    assert after == [("fsync", str(tmp_path))]
    assert (tmp_path / "epoch_001" / "w.npy").is_file()
