"""Evaluation, one module per stage: :mod:`.plan` → :mod:`.encode` → :mod:`.score` → :mod:`.write`.

:mod:`.run` strings them together (:func:`run_evaluation`); :mod:`.keys` says what a stored result is
keyed by, :mod:`.shards` stores batches for resuming, :mod:`.volumes` streams NIfTI slice maps to disk.
"""

from __future__ import annotations

from adaptclip_med.evaluation.encode import EncodeStats, FeatureStore, encode_batches, encode_prompts
from adaptclip_med.evaluation.plan import ClassGroup, Part, Plan, Skip, plan_run, select_queries
from adaptclip_med.evaluation.run import RunResult, run_evaluation

__all__ = ["ClassGroup", "EncodeStats", "FeatureStore", "Part", "Plan", "RunResult", "Skip", "encode_batches",
           "encode_prompts", "plan_run", "run_evaluation", "select_queries"]
