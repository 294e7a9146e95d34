"""Adapter training on industrial data with a frozen-feature cache (method spec §5)."""

from __future__ import annotations
