"""The BIDS App: `python -m LUnetSegmentationLib bids BIDS_DIR OUT_DIR participant|group`.

    app        command line, participant stage: scans to BIDS-Derivatives, resumable, on Dask
    layout     which images of a raw dataset, and the names of their derivatives
    contrasts  which BIDS suffixes (--suffix T1w T2w FLAIR ...) a model's card allows
    cohort     the Dask cluster: workers, memory, one model per worker
    group      the group stage: volumes.tsv and volumes.json
    report     the group stage's offline report.html
"""
