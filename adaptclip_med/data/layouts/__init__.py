"""Data sets as their publishers lay them out: the registry of named sets (:mod:`.dataset_registry`),
the medical and industrial layouts, user folders, ``meta.json``, NIfTI/DICOM volumes, patient groups and
near-duplicate detection. They produce :class:`~adaptclip_med.data.records.Record` lists; pixels are
read later, through ``transforms``.
"""
