"""What joins the runtime to Slicer: MRML nodes, the console API and the module's child process.

Qt-free (testable with slicer-core); the module file LUnetSegmentation.py is the only Qt code.

    api           segment(volumeNode), prepareSegmentation, segmentFiles: console and GUI
    mrml          volume node <-> image, ROI, segments with terminology, provenance
    childprocess  the panel's side of the out-of-process worker (no Qt, no threads)
    worker        the PythonSlicer child: runs the pipeline, JSON-lines progress
    dependencies  which PyTorch this Slicer needs, checked before installing
"""
