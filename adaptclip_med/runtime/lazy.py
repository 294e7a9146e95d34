"""Lazy public names for package ``__init__`` files (PEP 562), so the CLIs parse before torch loads.

``python -m adaptclip_med.evaluate --help`` imports ``adaptclip_med`` first; if its ``__init__``
imported the model, torch, open_clip and MONAI would load (seconds) before argparse could answer.
A package lists its public names here instead, and each is imported on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, resolving ``name`` from ``names[name]`` on first use.

    Args:
        package: the package's ``__name__``.
        names: public name -> module it lives in, relative to ``package`` (e.g. ``".factory"``).
    """

    def getattr_(name: str) -> Any:
        if name not in names:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(names[name], package), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later look-ups skip this function
        return value

    def dir_() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(names))

    return getattr_, dir_
