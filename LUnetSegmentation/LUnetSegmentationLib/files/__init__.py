"""Files: reading scans safely, writing results atomically, and the file-to-folder batch job.

Built on the runtime; no MRML, no torch at import. Used by the console's `segmentFiles`, the
CLI and the web app.

    volumeio  read NIfTI / NRRD / MHA / .mgz with header checks before any voxel is read
    segfile   write a .seg.nrrd that Slicer opens as a segmentation
    outputs   atomic, no-overwrite, no-follow writes inside the output folder, read back before
              they get their name; clean-up that spares other runs' writes
    batch     segment_files: many scans to <case>.seg.nrrd + summary.csv, resumable, several
              runs sharing one folder
    dicom/    DICOM series in, DICOM SEG out (source install only, not in the Slicer extension)
"""
