"""The BIDS App: `python -m LUnetSegmentationLib bids BIDS_DIR OUT_DIR participant|group`.

    app      command line, scans to BIDS-Derivatives, resumable, on a Dask cluster
    cohort   the Dask cluster: workers, memory, one model per worker
    report   the group level's offline report.html
"""
