"""Runtime services every layer may use: atomic file writes (:mod:`.io`), error types (:mod:`.errors`),
lazy public names (:mod:`.lazy`), torchrun process groups (:mod:`.distributed`), the skip policy
(:mod:`.skips`), argument parsing (:mod:`.argparsing`), pseudonyms and the privacy audit (:mod:`.privacy`)
and the version (:mod:`.version`). The bottom layer: it imports nothing else of the package.
"""
