"""Applications on top of the runtime: the command line, the BIDS App and the web app.

Only `cli` ships in the Slicer extension; `bids/` (Dask) and `web/` (trame-slicer) need their own
Python environments and run from the source install.
"""
