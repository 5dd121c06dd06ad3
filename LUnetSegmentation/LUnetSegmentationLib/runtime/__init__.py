"""The runtime: everything one segmentation needs, from an image in memory to labels on its grid.

No MRML, no files, no Qt. SimpleITK and numpy at import; torch (or ONNX Runtime) only when a
model is loaded. Every way in (Slicer panel, console, CLI, BIDS App, web app) ends in
`pipeline.label_image`, which runs the single entry check (`checks.check_input`).

    pipeline     label_image: entry check, crop or whole head, presence check, volumes
    checks       the single entry check and its messages
    wholebrain   whole-head scans: localize both hippocampi, segment both crops in one pass
    localize     MNI template registration that finds the hippocampi
    engine       Segmenter: a loaded model, its memory check, preprocessing, inference
    inference    tiling and test-time flips (numpy), shared by both backends
    backends     ONNX Runtime on CPU where installed, else PyTorch
    model        the network (LUnet, Unet) from a few readable parameters
    network_config  those parameters (NetworkConfig), torch-free, as model cards store them
    weights      shipped model cards and weights, found by id, checked by SHA-256
    preprocess   intensity normalisation; InputError
    resample     geometry: model grid, index boxes, RAS/LPS
    measures     asymmetry index and intracranial-volume fractions, shared by every output
    memory       available memory, without psutil
    terminology  segment names, colours and DICOM terminology from the card
"""
