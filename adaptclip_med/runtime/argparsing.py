"""The argument parser of every ``python -m adaptclip_med.*`` command: usage errors in one line.

argparse's default prints the whole usage block before the error; with a dozen options that buries
the one line that matters. :class:`CLIParser` prints ``prog: error: <what> (see --help)`` and exits
with status 2, like argparse. Import nothing heavy here: the commands parse before torch loads.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import NoReturn

from adaptclip_med.runtime.errors import AdaptCLIPError


class CLIParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message (see --help)`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")



def require_values(checks: Iterable[tuple[str, object, bool, str]]) -> None:
    """Raise on the first ``(flag, value, ok, expected)`` whose ``ok`` is false.

    Raises:
        AdaptCLIPError: ``"<flag>: got <value>; expected <expected>"``.
    """
    for flag, value, ok, expected in checks:
        if not ok:
            msg = f"{flag}: got {value}; expected {expected}"
            raise AdaptCLIPError(msg)
