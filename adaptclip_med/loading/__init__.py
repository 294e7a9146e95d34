"""How a model comes to be: the registry of named backbones and adapter checkpoints
(:mod:`.model_registry`), weights look-up (open_clip tags, local files, the hub: :mod:`.weights`), adapter
checkpoints in our and the authors' formats (:mod:`.checkpoint`), the static text-feature cache
(:mod:`.text_cache`) and :func:`~.factory.load_model`, which puts them together with the data package's
preprocessing. Sits above ``model`` and ``data``; below ``features`` and every pipeline.
"""
