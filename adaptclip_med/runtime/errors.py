"""Exception types of adaptclip_med.

Every message follows one template: what was received (file, value), what was expected, and what to
do about it. User input is checked with ``raise``, never ``assert``.
"""

from __future__ import annotations


def exception_line(exc: BaseException) -> str:
    """``Type: first line`` of the innermost cause of ``exc`` (libraries wrap and nest their errors)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip().splitlines()
    return f"{type(root).__name__}: {text[0]}" if text else type(root).__name__


class AdaptCLIPError(Exception):
    """Base class of every error this package raises on purpose."""


class WeightsNotFoundError(AdaptCLIPError, FileNotFoundError):
    """Backbone or adapter weights are neither local nor downloadable (e.g. offline)."""


class CheckpointMismatchError(AdaptCLIPError, ValueError):
    """A checkpoint was made for another backbone or configuration than the model it is loaded into."""


class ImageReadError(AdaptCLIPError, ValueError):
    """An image, scan or mask cannot be read or has unusable content (NaN, wrong shape, ...).

    Attributes ``path``, ``problem`` and ``fix`` are kept apart (skip lists show ``path, problem``); the
    message is always one line: line breaks in a wrapped library message are folded and it is cut
    at :data:`MAX_PROBLEM` characters.
    """

    MAX_PROBLEM = 240

    def __init__(self, path: object, problem: str, fix: str = "") -> None:
        problem = " ".join(str(problem).split())
        if len(problem) > self.MAX_PROBLEM:
            problem = problem[: self.MAX_PROBLEM - 3].rstrip() + "..."
        self.path = str(path)
        self.problem = problem
        self.fix = " ".join(str(fix).split())
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f". {self.fix}"
        super().__init__(msg)


class NotAnImageError(ImageReadError):
    """A readable file that holds no image to score: a DICOM Segmentation, RT Structure Set, RT Plan,
    RT Dose, Structured Report, presentation state, key object selection, DICOMDIR, ... (data set
    scans list it as a skip with this reason)."""


class DataValidationError(AdaptCLIPError, ValueError):
    """A data set folder does not hold the expected tree, or holds inconsistent files."""


class PromptError(AdaptCLIPError, ValueError):
    """Few-shot prompts cannot be drawn (no normal images, too few, ...)."""
