"""The ROI and gate options of ``score`` and ``evaluate`` (argparse only: ``--help`` loads no numpy or torch).

The rules themselves live in :mod:`adaptclip_med.roi.gate`; docs/roi.md describes each.
"""

from __future__ import annotations

from typing import Any

#: The gate's rules, each switchable by name (``--gate-off burned-in,text``).
RULES: tuple[str, ...] = ("modality", "body-part", "localizer", "derived", "burned-in", "blank", "saturated",
                          "roi-small", "text", "feature", "prompts")


def add_gate_arguments(group: Any) -> None:
    """``--gate``, ``--gate-off``, ``--expect-modality``, ``--expect-body-part``, ``--force``: shared by
    ``python -m adaptclip_med.score`` and ``python -m adaptclip_med.evaluate`` (docs/roi.md)."""
    group.add_argument("--gate", choices=("on", "off"), default="off",
                       help="applicability gate: pass / warn / reject per image before a score is issued "
                            "(default: off)")
    group.add_argument("--gate-off", default="", metavar="RULES",
                       help=f"comma-separated gate rules to switch off: {','.join(RULES)}")
    group.add_argument("--expect-modality", default=None, metavar="MOD",
                       help="gate: DICOM Modality expected (MR, CT, CR, ...); others are rejected")
    group.add_argument("--expect-body-part", default=None, metavar="PART",
                       help="gate: DICOM BodyPartExamined expected (HEAD, CHEST, ...); others are rejected")
    group.add_argument("--force", action="store_true",
                       help="score images the gate rejects (their rows say so) instead of leaving them out")
    group.add_argument("--roi-floor", type=float, default=0.02,
                       help="smallest ROI share of an image that is scored; volume slices below are skipped "
                            "(default: 0.02)")


def add_score_arguments(group: Any) -> None:
    """``--roi``, ``--gate``, ``--gate-off``, ``--expect-modality``, ``--expect-body-part``, ``--gate-warn``,
    ``--gate-reject``, ``--roi-floor``, ``--force`` (docs/scoring.md)."""
    group.add_argument("--roi", default="none", metavar="auto|none|FOLDER",
                       help="score inside the anatomy ROI: auto (found per modality), none (default: the whole "
                            "image), or a folder of masks named by the images' file stems")
    add_gate_arguments(group)
    group.add_argument("--gate-warn", type=float, default=0.05,
                       help="gate: conformal p-value (embedding vs --normals) below which to warn (default: 0.05)")
    group.add_argument("--gate-reject", type=float, default=0.01,
                       help="gate: conformal p-value below which to reject (default: 0.01)")

