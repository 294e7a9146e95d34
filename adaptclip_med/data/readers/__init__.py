"""Readers, one per format: content sniffing (:mod:`.formats`, :mod:`.screen`), DICOM headers and
pixels through pydicom's LUTs (:mod:`.dicom_header`, :mod:`.dicom_pixels`), TIFF, Pillow modes, and the
MONAI ``LoadImage`` wrapper that picks one (:mod:`.load`). Below ``transforms`` and ``layouts``.
"""
