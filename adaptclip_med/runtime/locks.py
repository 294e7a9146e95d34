"""One writer per folder: an exclusive, non-blocking lock held for a run's lifetime.

:func:`hold` takes ``<folder>/.adaptclip.lock`` (``filelock``: an OS lock, released when the process
ends, even killed) and records the holder's pid beside it, so a second run stops at once with one line,
``another run is writing DIR (pid N)``, instead of both writing (and deleting) the same files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from adaptclip_med.runtime.errors import AdaptCLIPError

LOCK_NAME = ".adaptclip.lock"
PID_NAME = ".adaptclip.lock.pid"


class FolderBusyError(AdaptCLIPError):
    """Another process holds the folder's lock."""


@contextmanager
def hold(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``folder``'s writer lock for the block (the folder is created).

    Raises:
        FolderBusyError: another process holds it (the message names the folder and its pid).
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            pid = (root / PID_NAME).read_text(encoding="ascii").strip() or "unknown"
        except OSError:
            pid = "unknown"
        msg = f"another run is writing {root} (pid {pid}); wait for it to finish or choose another folder"
        raise FolderBusyError(msg) from None
    try:
        (root / PID_NAME).write_text(str(os.getpid()), encoding="ascii")
        yield root
    finally:
        (root / PID_NAME).unlink(missing_ok=True)
        lock.release()
