"""Kept for existing imports: the evaluation lives in :mod:`adaptclip_med.evaluation` (one module per stage)."""

from __future__ import annotations

from adaptclip_med.evaluation import Part, RunResult, run_evaluation, select_queries

__all__ = ["Part", "RunResult", "run_evaluation", "select_queries"]
