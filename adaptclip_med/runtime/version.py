"""The package version (one place; ``adaptclip_med.__version__`` re-exports it)."""

from __future__ import annotations

__version__ = "0.1.0"
