"""``python -m adaptclip_med.datasets check|export-meta ...`` (thin entry; see adaptclip_med.data.cli)."""

from __future__ import annotations

from adaptclip_med.data.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
