"""What a stored evaluation result is keyed by: :func:`adaptclip_med.runtime.keys.reuse_key`.

A finished part (and each batch shard of one) is reused only under the same key, built by the one key
function of :mod:`adaptclip_med.runtime.keys`: the code fingerprint and library versions, the model's
parts (:func:`model_content`: backbone config content, architecture, weights and checkpoint bytes,
adapter config, device type, precision), the batch size, every result setting
(:meth:`EvalConfig.settings_for`), the bytes of every query, mask and prompt image
(:meth:`ContentHasher.records`) and the queries' patient groups. Paths are not keys: a copied data set
resumes, a replaced image is recomputed. Hashes are cached by (path, size, mtime) for the length of a run.
"""

from __future__ import annotations

from adaptclip_med.runtime.keys import ContentHasher, explain_change, groups_key, reuse_key
from adaptclip_med.runtime.keys import model_parts as model_content

__all__ = ["ContentHasher", "explain_change", "groups_key", "model_content", "reuse_key"]
