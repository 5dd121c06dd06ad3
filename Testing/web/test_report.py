"""The BIDS App's QC report (issue 14) in headless chromium: it opens offline from a file:// URL,
shows every scan with its figure, and a deliberately broken scan is flagged at the top.

Runs in the web environment (scripts/test_web.sh), which has no Dask: the derivatives are made
by the same per-scan function the Dask workers run (`bids.process_scan`), called here one scan
after another, then the group stage writes volumes.tsv and report.html.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytestmark = pytest.mark.browser


def _t1w(root: Path, subject: str, session: str | None) -> Path:
    folder = root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    folder.mkdir(parents=True)
    return folder / f"sub-{subject}{f'_ses-{session}' if session else ''}_T1w.nii.gz"


@pytest.fixture(scope="module")
def report(tmp_path_factory, request):
    from LUnetSegmentationLib.apps.bids import app as bids

    hippocampus = request.getfixturevalue("hippocampus_dir")
    wholebrain = request.getfixturevalue("wholebrain_dir")
    root = tmp_path_factory.mktemp("report") / "cohort"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "report test", "BIDSVersion": "1.9.0"}))
    _t1w(root, "01", "1").symlink_to(hippocampus / "imagesTr" / "hippocampus_001.nii.gz")
    _t1w(root, "01", "2").symlink_to(hippocampus / "imagesTr" / "hippocampus_003.nii.gz")
    _t1w(root, "02", None).symlink_to(wholebrain / "hippodeep_example" / "example_brain_t1_1p75mm.nii.gz")
    broken = sitk.GetImageFromArray(np.full((48, 56, 48), 100, np.int16))  # constant: nothing to segment
    sitk.WriteImage(broken, str(_t1w(root, "03", None)))
    out = root.parent / "derivatives"
    _, _, tasks = bids.participant_tasks(root, out)
    records = [bids.process_scan(task) for task in tasks]
    assert [r["status"] for r in records].count("ok") == 3, records
    bids.run_group(root, out, echo=lambda *_: None)
    return out / "report.html"


def test_report_opens_offline_and_flags_the_broken_scan_first(report, browser, screenshots):
    browser.get(report.as_uri())
    assert browser.title.startswith("Hippocampus QC report")
    rows = browser.find_elements("css selector", "tr.scan")
    assert [row.get_attribute("data-scan") for row in rows][0] == "sub-03_T1w"
    assert sorted(row.get_attribute("data-scan") for row in rows) == [
        "sub-01_ses-1_T1w", "sub-01_ses-2_T1w", "sub-02_T1w", "sub-03_T1w"]
    first = rows[0]
    assert "flagged" in first.get_attribute("class") and first.get_attribute("data-status") == "error"
    assert "failed" in first.text and "constant" in first.text
    assert first.is_displayed() and first.rect["height"] > 0
    assert all(row.get_attribute("data-flagged") == "0" for row in rows[1:])
    assert browser.find_element("id", "count-scans").text.startswith("4")
    # At the top of the page, before the charts: the broken scan, linked to its row.
    attention = browser.find_elements("css selector", "#attention li")
    assert len(attention) == 1 and attention[0].text.startswith("sub-03_T1w: failed")
    assert attention[0].location["y"] < browser.find_element("css selector", "svg.chart").location["y"]
    assert attention[0].location["y"] < browser.execute_script("return window.innerHeight")

    # Every segmented scan shows its overlay figure: scroll each into view (they are lazy) and
    # wait until the browser has decoded it.
    images = browser.find_elements("css selector", "tr.scan img")
    assert len(images) == 3
    for image in images:
        browser.execute_script("arguments[0].scrollIntoView()", image)
        deadline = time.time() + 10
        while not browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image):
            assert time.time() < deadline, f"figure {image.get_attribute('src')} did not load"
            time.sleep(0.1)
        assert image.size["width"] > 100
    # The charts are inline SVG: one point (the whole head has both sides), four histograms' bars.
    assert len(browser.find_elements("css selector", "svg circle.pt")) == 1
    assert browser.find_elements("css selector", "svg rect.bar")
    # Nothing comes from the network: no script, stylesheet, font or frame to fetch, and every
    # image is a file beside the report.
    assert browser.execute_script("return document.querySelectorAll('script, link, iframe, object, embed').length") == 0
    sources = browser.execute_script("return Array.from(document.images).map(i => i.src)")
    assert sources and all(src.startswith(report.parent.as_uri()) for src in sources), sources
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(screenshots / "report.png"))
