"""pytest plugin for scripts/check_versions.sh: in the torch-free venvs, leave out the tests that
take a fixture which builds the torch network (e.g. test_localize.py's `segmenter`), and run the
rest of those files. Listed explicitly, so a light path that starts importing torch still fails."""
from __future__ import annotations

TORCH_FIXTURES = {"segmenter"}


def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        (dropped if TORCH_FIXTURES & set(getattr(item, "fixturenames", ())) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
