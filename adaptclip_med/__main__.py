"""``python -m adaptclip_med``: list the commands (``python -m adaptclip_med COMMAND ...`` runs one)."""

from __future__ import annotations

import importlib
import sys

#: command -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("adaptclip_med.evaluate", "metrics on labelled data sets: tables, figures, overlays, report"),
    "score": ("adaptclip_med.score", "scores and heat maps for unlabelled images, volumes, DICOM series"),
    "train": ("adaptclip_med.train", "train the adapters on an industrial data set"),
    "datasets": ("adaptclip_med.datasets", "list registered data sets; check a downloaded one"),
    "demo": ("adaptclip_med.demo", "offline demo report (brain MRI with synthetic lesions)"),
}


def usage() -> str:
    """The command list shown by ``python -m adaptclip_med``."""
    lines = ["usage: python -m adaptclip_med COMMAND [options]   (or python -m adaptclip_med.COMMAND)", "",
             "commands:"]
    lines += [f"  {name:<10}{summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `python -m adaptclip_med COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the commands, or run ``argv[0]`` with the remaining arguments; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
