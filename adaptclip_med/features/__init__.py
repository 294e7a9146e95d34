"""Turning images into frozen backbone features, once: the memory-bounded device batches
(:mod:`.memory`), the batch loop (:mod:`.encode`), the persistent feature store and its key (:mod:`.store`,
:mod:`.cache`). Evaluation, ``score`` and training consume it.
"""
