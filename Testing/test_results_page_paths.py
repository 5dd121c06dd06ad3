"""docs/RESULTS.md names no folder of the machine that ran a command: the results files record
commands as typed there (/work/main/.venv/bin/python ...), and experiments/results_page.py makes
them relative to the repository root (or /path/to/... outside it) as it writes the page."""
from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

import results_page  # noqa: E402

MACHINE_PATH = re.compile(r"(?<![\w.:/~-])/(?:tmp|work|home|root)/")


def machine_paths(text: str) -> list[str]:
    return [line.strip()[:160] for line in text.splitlines() if MACHINE_PATH.search(line)]


def test_committed_results_page_holds_no_machine_path():
    assert machine_paths((REPO / "docs" / "RESULTS.md").read_text()) == []


def test_generated_page_holds_no_machine_path(tmp_path):
    results_page.write_page(tmp_path / "RESULTS.md")  # from the results files as they are, paths and all
    page = (tmp_path / "RESULTS.md").read_text()
    assert machine_paths(page) == []
    assert "Command: `" in page


def test_paths_become_relative_to_the_repository_root():
    top = {"LUnetSegmentation", "docs", "benchmarks", ".venv"}
    command = ("PYTHONPATH=/work/main/LUnetSegmentation /work/main/.venv/bin/python benchmarks/wholehead.py "
               "--peer-cmd '/tmp/peer/venv/bin/python /tmp/peer/run.py {scan}' --data /home/ann/shared/data/wholebrain "
               "--out /root/clone/docs/results/x.json --cache /scratch/job7/cache.npz")
    assert results_page.repository_relative(command, top) == (
        "PYTHONPATH=LUnetSegmentation .venv/bin/python benchmarks/wholehead.py "
        "--peer-cmd '/path/to/peer/venv/bin/python /path/to/peer/run.py {scan}' --data ../shared/data/wholebrain "
        "--out docs/results/x.json --cache /path/to/job7/cache.npz")
    untouched = "see https://github.com/a/b, /dev/null, /data/ds and (L - R) / ((L + R) / 2)"
    assert results_page.repository_relative(untouched, top) == untouched


def test_a_checkout_outside_the_usual_roots_is_made_relative_too():
    # CI clones into /check/work/main, under none of tmp, work, home...: its paths and the shared
    # data beside it must still come out relative, and other folders of that disk as /path/to/.
    top = {"LUnetSegmentation", "benchmarks", ".venv"}
    command = ("PYTHONPATH=/check/work/main/LUnetSegmentation /check/work/main/.venv/bin/python "
               "benchmarks/wholehead.py --data /check/work/shared/data/wholebrain --cache /check/work/x/c.npz "
               "--scan /data/ds/sub-01.nii.gz")
    assert results_page.repository_relative(command, top, checkout=Path("/check/work/main")) == (
        "PYTHONPATH=LUnetSegmentation .venv/bin/python benchmarks/wholehead.py "
        "--data ../shared/data/wholebrain --cache /path/to/work/x/c.npz --scan /data/ds/sub-01.nii.gz")


def test_model_cards_name_no_machine_path():
    """The shipped cards (they travel with the extension) record commands and files relative to
    the repository, never a folder of the machine that trained or measured them."""
    cards = sorted((REPO / "LUnetSegmentation" / "Resources").glob("*/*.json"))
    assert cards
    for card in cards:
        assert machine_paths(card.read_text()) == [], card.name


def test_results_files_name_no_machine_path():
    """The JSON results behind the page record their commands relative to the repository too, so
    a reader can run them as written."""
    files = sorted((REPO / "docs" / "results").rglob("*.json"))
    assert files
    for path in files:
        assert machine_paths(path.read_text()) == [], path.name
