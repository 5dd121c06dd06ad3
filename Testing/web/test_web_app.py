"""End to end in a real browser: the web app serves on loopback, headless chromium opens real
MRI, presses Segment, reads the segment table, saves and downloads, and the files written are
checked with SimpleITK."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

pytestmark = pytest.mark.browser

SEGMENT_SECONDS = 300  # a whole head on 2 busy CPU cores takes 15-60 s; leave a wide margin


from lunet_test_helpers import PARTS_MODEL
def wait_for(condition, seconds: float, what: str, driver=None):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    status = driver.find_element(By.ID, "lunet-status").text if driver else ""
    errors = [e.text for e in driver.find_elements(By.ID, "lunet-error")] if driver else []
    raise AssertionError(f"timed out after {seconds} s waiting for {what} (status {status!r}, errors {errors})")


def text(driver, element_id: str) -> str:
    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else ""


def segment_table(driver) -> dict[str, float]:
    rows = {}
    for row in driver.find_elements(By.CSS_SELECTOR, ".lunet-segment-row"):
        name = row.find_element(By.CSS_SELECTOR, ".lunet-segment-name").text
        rows[name] = float(row.find_element(By.CSS_SELECTOR, ".lunet-segment-volume").text)
    return rows


def open_page(driver, server):
    driver.get(server.url)
    wait_for(lambda: driver.find_elements(By.ID, "lunet-segment"), 60, "the panel")


def press_segment(driver) -> dict[str, float]:
    before = text(driver, "lunet-status")
    driver.find_element(By.ID, "lunet-segment").click()
    wait_for(lambda: text(driver, "lunet-status") != before, 30, "the run to start", driver)
    wait_for(lambda: driver.find_element(By.ID, "lunet-segment").is_enabled(), SEGMENT_SECONDS, "the run to end", driver)
    return segment_table(driver)


def coloured_pixels(driver, view_index: int) -> int:
    """Pixels of a view that are clearly coloured (segments), not grey (MRI, background)."""
    import io

    from PIL import Image

    # Right after the page opens a view may not be laid out yet (0 px high): wait for it.
    view = wait_for(lambda: [v for v in driver.find_elements(By.CSS_SELECTOR, "img")[view_index:view_index + 1]
                             if v.rect["height"] > 0], 30, f"view {view_index} to be drawn")[0]
    pixels = np.asarray(Image.open(io.BytesIO(view.screenshot_as_png)).convert("RGB")).astype(int)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def toolbar_button(driver, icon: str):
    """A button of the left toolbar by its icon (effects, undo), as a person finds it."""
    return driver.find_element(By.CSS_SELECTOR, f"i.{icon}").find_element(By.XPATH, "./ancestor::button")


def upload(driver, path: Path):
    field = driver.find_element(By.CSS_SELECTOR, "#lunet-upload, [id='lunet-upload'] input, input[type=file]")
    if field.tag_name != "input":
        field = field.find_element(By.CSS_SELECTOR, "input[type=file]")
    field.send_keys(str(path))


def choose_model(driver, title_part: str, unless: str = "\0"):
    """Pick a model in the Model menu by clicking, as a person does."""
    selects = driver.find_elements(By.CSS_SELECTOR, ".v-select")
    selects[0].click()
    items = wait_for(lambda: [i for i in driver.find_elements(By.CSS_SELECTOR, ".v-overlay-container .v-list-item")
                              if title_part in i.text and unless not in i.text], 10, f"a model item containing {title_part!r}")
    items[0].click()
    wait_for(lambda: not driver.find_elements(By.CSS_SELECTOR, ".v-overlay-container .v-list-item"), 10, "the menu to close")


def test_whole_head_from_the_command_line_segment_save_edit_download(start_server, browser, tmp_path, wholebrain_dir,
                                                                  downloads, screenshots):
    source = wholebrain_dir / "fs_norm" / "norm.mgz"
    folder = tmp_path / "subject"
    folder.mkdir()
    scan = folder / source.name
    shutil.copy(source, scan)  # saving writes next to the input: never into ../shared
    server = start_server(scan, "--model", PARTS_MODEL)
    open_page(browser, server)
    assert text(browser, "lunet-case") == "norm"
    assert "256x256x256" in text(browser, "lunet-status")
    browser.save_screenshot(str(screenshots / "01-loaded.png"))
    THREE_D = 1  # views in the default layout: axial, 3D, coronal, sagittal
    assert coloured_pixels(browser, THREE_D) < 50  # nothing but grey before segmenting

    # Cancel a run: nothing is written, and the next run works.
    browser.find_element(By.ID, "lunet-segment").click()
    wait_for(lambda: browser.find_elements(By.ID, "lunet-cancel"), 60, "the Cancel button", browser)
    browser.find_element(By.ID, "lunet-cancel").click()
    wait_for(lambda: "Cancelled" in text(browser, "lunet-status"), SEGMENT_SECONDS, "the cancellation", browser)
    assert segment_table(browser) == {}

    table = press_segment(browser)
    browser.save_screenshot(str(screenshots / "web-panel.png"))
    # The segments as surfaces in the 3D view and as overlays on the axial slice.
    wait_for(lambda: coloured_pixels(browser, THREE_D) > 2000, 30, "the 3D surfaces", browser)
    assert coloured_pixels(browser, 0) > 200
    assert sorted(table) == ["Left hippocampus anterior", "Left hippocampus posterior",
                             "Right hippocampus anterior", "Right hippocampus posterior"], table
    for name, volume in table.items():
        assert 300 < volume < 4000, (name, volume)
    for side in ("Left", "Right"):
        whole = table[f"{side} hippocampus anterior"] + table[f"{side} hippocampus posterior"]
        assert 2000 < whole < 6000, (side, whole)  # adult hippocampus: ~3000-4500 mm3
    assert "Done" in text(browser, "lunet-status")

    browser.find_element(By.ID, "lunet-save").click()
    wait_for(lambda: "Saved" in text(browser, "lunet-saved"), 30, "the save", browser)
    seg_file, label_file = folder / "norm.lunet.seg.nrrd", folder / "norm.lunet-labels.nii.gz"
    assert seg_file.is_file() and label_file.is_file()
    labels = sitk.ReadImage(str(label_file))
    assert labels.GetSize() == (256, 256, 256)
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=5)
    assert len(counts) == 5  # labels 0..4 only
    by_value = {1: "Left hippocampus anterior", 2: "Left hippocampus posterior",
                3: "Right hippocampus anterior", 4: "Right hippocampus posterior"}
    for value, name in by_value.items():
        assert abs(counts[value] * 1.0 - table[name]) <= 1, (name, counts[value], table[name])  # 1 mm voxels
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(seg_file))
    reader.ReadImageInformation()
    names = {reader.GetMetaData(k) for k in reader.GetMetaDataKeys() if k.startswith("Segment") and k.endswith("_Name")}
    assert names == set(table)

    browser.find_element(By.ID, "lunet-download-seg").click()
    seg_download = wait_for(lambda: [p for p in downloads.glob("*.seg.nrrd")], 30, "the .seg.nrrd download")[0]
    time.sleep(1)
    reader.SetFileName(str(seg_download))
    reader.ReadImageInformation()
    assert {reader.GetMetaData(k) for k in reader.GetMetaDataKeys()
            if k.startswith("Segment") and k.endswith("_Name")} == set(table)

    # Saving again keeps the first files and writes new ones beside them.
    first = label_file.read_bytes()
    browser.find_element(By.ID, "lunet-save").click()
    wait_for(lambda: "lunet-2.seg.nrrd" in text(browser, "lunet-saved"), 30, "the second save", browser)
    assert label_file.read_bytes() == first and (folder / "norm.lunet-labels-2.nii.gz").is_file()

    # Edit: erase where the slice views are centred (inside the first segment), and the table
    # follows; the download holds the edited segments; undo brings the model's result back.
    toolbar_button(browser, "mdi-eraser").click()
    axial = browser.find_elements(By.CSS_SELECTOR, "img")[0]  # the largest view: axial
    ActionChains(browser).move_to_element(axial).pause(0.3).click_and_hold().pause(0.2).move_by_offset(4, 0) \
        .pause(0.2).release().perform()
    edited = wait_for(lambda: (lambda t: t if t["Left hippocampus anterior"] < table["Left hippocampus anterior"] - 50
                               else None)(segment_table(browser)), 30, "the erased volume in the table", browser)
    browser.save_screenshot(str(screenshots / "03-erased.png"))
    assert {k: v for k, v in edited.items() if k != "Left hippocampus anterior"} == \
        {k: v for k, v in table.items() if k != "Left hippocampus anterior"}

    browser.find_element(By.ID, "lunet-download-labels").click()
    downloaded = wait_for(lambda: [p for p in downloads.glob("*.nii.gz")], 30, "the download")
    assert downloaded[0].name == "norm.lunet-labels.nii.gz"
    time.sleep(1)  # let chromium finish writing
    counts = np.bincount(sitk.GetArrayFromImage(sitk.ReadImage(str(downloaded[0]))).ravel(), minlength=5)
    assert abs(counts[1] - edited["Left hippocampus anterior"]) <= 1
    assert abs(counts[3] - table["Right hippocampus anterior"]) <= 1

    toolbar_button(browser, "mdi-undo").click()
    wait_for(lambda: segment_table(browser) == table, 30, "undo to restore the table", browser)


def test_upload_and_bad_uploads_change_nothing(start_server, browser, tmp_path, hippocampus_dir, wholebrain_dir,
                                               screenshots):
    server = start_server("--max-upload-mb", "1", "--model", PARTS_MODEL)
    open_page(browser, server)
    assert text(browser, "lunet-case") == "No volume loaded"
    crop = hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"
    upload(browser, crop)
    wait_for(lambda: text(browser, "lunet-case") == "hippocampus_001", 60, "the upload", browser)
    table = press_segment(browser)
    assert sorted(table) == ["Hippocampus anterior", "Hippocampus posterior"], table
    assert all(300 < v < 3000 for v in table.values()), table
    assert not browser.find_elements(By.ID, "lunet-save")  # an upload has no folder of the user's
    assert browser.find_element(By.ID, "lunet-download-seg").is_enabled()

    not_mri = tmp_path / "notes.txt"
    not_mri.write_text("not an image")
    damaged = tmp_path / "damaged.nii.gz"
    damaged.write_bytes(crop.read_bytes()[:2000])
    too_big = wholebrain_dir / "fs_norm" / "norm.nii.gz"  # 1.3 MB > the 1 MB limit
    assert too_big.stat().st_size > 2**20
    # Issue 17: an upload naming a server file (here /dev/stdin, which would block the server for
    # every tab) and a 100-byte header claiming 1500^3 float voxels, both refused from the header.
    names_server_file = tmp_path / "stdin.nrrd"
    names_server_file.write_text("NRRD0004\ntype: uchar\ndimension: 3\nsizes: 64 64 64\nencoding: raw\n"
                                 "data file: /dev/stdin\n\n")
    bomb = tmp_path / "bomb.nrrd"
    bomb.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 1500 1500 1500\nencoding: raw\n\n")
    for path, message in ((not_mri, "not a supported volume"), (damaged, "damaged"),
                          (too_big, "1.3 MB, more than this server accepts (1.0 MB)"),
                          (names_server_file, "names another file for its voxels (data file: /dev/stdin)"),
                          (bomb, "claims 1500x1500x1500 = 3,375,000,000 voxels")):
        upload(browser, path)
        wait_for(lambda: message in text(browser, "lunet-error"), 60, f"the error for {path.name}", browser)
        browser.save_screenshot(str(screenshots / f"02-refused-{path.name}.png"))
        assert text(browser, "lunet-case") == "hippocampus_001"
        assert segment_table(browser) == table
        browser.find_element(By.CSS_SELECTOR, "#lunet-error .v-alert__close button, #lunet-error button").click()
        wait_for(lambda: not browser.find_elements(By.ID, "lunet-error"), 10, "the error to close")


def test_failed_segmentation_keeps_the_volume_and_earlier_results(start_server, browser, tmp_path, hippocampus_dir):
    from LUnetSegmentationLib.runtime.weights import find_model

    card = find_model(None)
    broken = tmp_path / "broken_model"
    broken.mkdir()
    shutil.copy(card.path, broken / card.path.name)
    (broken / card.weights_path.name).write_bytes(card.weights_path.read_bytes()[:5000])  # truncated weights
    crop = tmp_path / "hippocampus_004.nii.gz"
    shutil.copy(hippocampus_dir / "imagesTr" / crop.name, crop)
    server = start_server(crop, "--model", broken / card.path.name)
    open_page(browser, server)

    assert press_segment(browser) == {}  # the broken model is the one chosen on the command line
    assert "corrupt or truncated" in text(browser, "lunet-error")
    assert "unchanged" in text(browser, "lunet-status")
    choose_model(browser, "LUnet", unless=".json")  # the shipped model
    good = press_segment(browser)
    from LUnetSegmentationLib.runtime.pipeline import specs_from_card

    assert sorted(good) == sorted(spec.segment_name for spec in specs_from_card(card)), good  # the default model's labels
    choose_model(browser, f"({card.path.name})")  # the broken one again
    assert press_segment(browser) == good
    assert "corrupt or truncated" in text(browser, "lunet-error")
    assert text(browser, "lunet-case") == "hippocampus_004"
