"""Evaluation, one module per stage: :mod:`.plan` → encode (:mod:`adaptclip_med.features`) → :mod:`.score`
→ :mod:`.write`.

:mod:`.run` strings them together (:func:`run_evaluation`); :mod:`.config` holds the run's settings
(:class:`EvalConfig`), :mod:`.keys` says what a stored result is keyed by, :mod:`.shards` stores batches
for resuming, :mod:`.volumes` streams NIfTI slice maps to disk. The names below load on first use, so
``python -m adaptclip_med.evaluate --help`` answers before torch loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adaptclip_med.runtime.lazy import lazy_exports

if TYPE_CHECKING:
    from adaptclip_med.evaluation.config import EvalConfig
    from adaptclip_med.evaluation.plan import ClassGroup, Part, Plan, Skip, plan_run, select_queries
    from adaptclip_med.evaluation.run import RunResult, run_evaluation

__all__ = ["ClassGroup", "EvalConfig", "Part", "Plan", "RunResult", "Skip", "plan_run", "run_evaluation",
           "select_queries"]

_PLAN, _RUN = "adaptclip_med.evaluation.plan", "adaptclip_med.evaluation.run"
__getattr__, __dir__ = lazy_exports(__name__, {
    "EvalConfig": "adaptclip_med.evaluation.config",
    "ClassGroup": _PLAN, "Part": _PLAN, "Plan": _PLAN, "Skip": _PLAN, "plan_run": _PLAN, "select_queries": _PLAN,
    "RunResult": _RUN, "run_evaluation": _RUN,
})
