"""The one pixel path: MONAI dictionary transforms from a decoded array to the model tensor — slice
selection (:mod:`.slicing`), intensity windows (:mod:`.intensity`, :mod:`.display`), the authors' resize and
CLIP normalisation (:mod:`.clip_input`), composed by :func:`~.pipeline.build_transforms`; one file through
it with :mod:`.pixels` (``image_tensor``, ``load_mask``, ``ModelInput``).
"""
