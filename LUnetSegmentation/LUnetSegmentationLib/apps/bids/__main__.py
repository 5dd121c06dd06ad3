import sys

# The package's own copy (not __main__), so the functions Dask ships to workers import by name.
from LUnetSegmentationLib.apps.bids.app import main

sys.exit(main())
