"""Scoring unlabelled studies (``python -m adaptclip_med.score``): inputs, scoring run, outputs, DICOM export."""

from adaptclip_med.scoring.run import ScoreConfig, ScoreResult, run_scoring

__all__ = ["ScoreConfig", "ScoreResult", "run_scoring"]
