"""DICOM in and out for `segment` (source install only, not in the Slicer extension, which has
Slicer's own DICOM module): files/batch.py imports these lazily, for DICOM inputs.

    series  read one DICOM MR series from a folder (SimpleITK's GDCM), refusing ambiguous folders
    seg     write a DICOM SEG referencing that series (highdicom), read back and checked
"""
