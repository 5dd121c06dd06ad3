"""Render the extension's screenshot from a real segmentation made by the project's own code.

Segments the left hippocampus of the Colin27 whole-head T1 (from ../shared/data/wholebrain,
never committed) with the shipped model, inside a region of interest (ROI) box placed around the
AAL atlas' left hippocampus, exactly as a user does in Slicer with a markups ROI. It then draws a
coronal and a sagittal slice of the whole head with the ROI box and the segments, and a zoomed
sagittal view of the ROI with smooth outlines, plus a legend with the measured volumes and time.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_screenshot.py [--data DIR] [--out PNG]

Needs the data folder, torch, SimpleITK and PySide6 (offscreen); writes
Resources/Screenshots/LUnetSegmentation-slices.png by default.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from PySide6.QtCore import QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QFont, QGuiApplication, QImage, QPainter, QPen  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("LUNET_DATA", REPO.parent / "shared" / "data"))
DEFAULT_OUT = REPO / "Resources" / "Screenshots" / "LUnetSegmentation-slices.png"
AAL_LEFT_HIPPOCAMPUS = 37
ROI_MARGIN_MM = 8
ROI_COLOUR = QColor(255, 214, 0)


def segment_colin(data: Path):
    """The real segmentation: shipped model, CPU, an ROI box around the AAL left hippocampus."""
    sys.path.insert(0, str(REPO / "LUnetSegmentation"))
    from LUnetSegmentationLib.runtime.engine import Segmenter

    folder = data / "wholebrain" / "colin27"
    image = sitk.ReadImage(str(folder / "ch2.nii.gz"), sitk.sitkFloat32)
    atlas = sitk.ReadImage(str(folder / "aal.nii.gz"))
    hippocampus = np.argwhere(sitk.GetArrayViewFromImage(atlas) == AAL_LEFT_HIPPOCAMPUS)[:, ::-1]  # -> (i, j, k)
    margin = np.ceil(ROI_MARGIN_MM / np.asarray(image.GetSpacing())).astype(int)
    start = np.maximum(hippocampus.min(axis=0) - margin, 0)
    stop = np.minimum(hippocampus.max(axis=0) + 1 + margin, image.GetSize())
    segmenter = Segmenter(device="cpu")
    started = time.time()
    result = segmenter.segment_image(image, index_box=(start.tolist(), stop.tolist()))
    seconds = time.time() - started
    roi = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    roi.CopyInformation(image)
    roi[int(start[0]) : int(stop[0]), int(start[1]) : int(stop[1]), int(start[2]) : int(stop[2])] = 1
    return image, result, roi, seconds


def oriented_array(image: sitk.Image) -> np.ndarray:
    """Voxels as array[k, j, i] with i towards the patient's left, j posterior, k superior (LPS)."""
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))


def window(slice2d: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((slice2d - low) / max(high - low, 1e-6), 0, 1)


def upsample(slice2d: np.ndarray, factor: float, linear: bool = True) -> np.ndarray:
    """Resample a 2D array by `factor` (linear for intensities and soft masks)."""
    image = sitk.GetImageFromArray(slice2d.astype(np.float32))
    size = [max(1, int(round(n * factor))) for n in image.GetSize()]
    spacing = [1.0 / factor] * 2
    origin = [-0.5 + 0.5 / factor] * 2
    resampled = sitk.Resample(
        image, size, sitk.Transform(), sitk.sitkLinear if linear else sitk.sitkNearestNeighbor, origin, spacing, [1, 0, 0, 1], 0.0
    )
    return sitk.GetArrayFromImage(resampled)


def compose(grey: np.ndarray, labels: np.ndarray, colours: dict[int, QColor], factor: float, alpha: float = 0.45) -> QImage:
    """Greyscale slice upsampled, each label filled (alpha) and outlined, as a QImage."""
    base = upsample(grey, factor)
    rgb = np.repeat(base[..., None], 3, axis=2)
    for value, colour in colours.items():
        soft = upsample((labels == value).astype(np.float32), factor)
        mask = soft >= 0.5
        if not mask.any():
            continue
        tint = np.array([colour.redF(), colour.greenF(), colour.blueF()])
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * tint
        inner = mask.copy()
        for axis in (0, 1):
            for shift in (-1, 1):
                inner &= np.roll(mask, shift, axis=axis)
        edge = mask & ~inner
        rgb[edge] = tint
    pixels = np.ascontiguousarray((rgb * 255).astype(np.uint8))
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, width * 3, QImage.Format_RGB888).copy()


def box_of(mask2d: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.nonzero(mask2d)
    if rows.size == 0:
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def draw_panel(painter: QPainter, x: float, y: float, picture: QImage, title: str, corner_labels: dict[str, str], roi_box=None, factor=1.0):
    painter.drawImage(QPointF(x, y), picture)
    if roi_box is not None:
        painter.setPen(QPen(ROI_COLOUR, 2, Qt.DashLine))
        painter.setBrush(Qt.NoBrush)
        x0, y0, x1, y1 = roi_box
        painter.drawRect(QRectF(x + x0 * factor, y + y0 * factor, (x1 - x0) * factor, (y1 - y0) * factor))
    painter.setPen(QColor(236, 240, 241))
    painter.setFont(QFont("DejaVu Sans", 11, QFont.Bold))
    painter.drawText(QPointF(x, y - 8), title)
    painter.setFont(QFont("DejaVu Sans", 10))
    width, height = picture.width(), picture.height()
    places = {"left": (x + 6, y + height / 2), "right": (x + width - 16, y + height / 2), "top": (x + width / 2 - 4, y + 16)}
    for where, text in corner_labels.items():
        painter.drawText(QPointF(*places[where]), text)


def render(image, result, roi, seconds, out: Path) -> None:
    grey = oriented_array(image).astype(np.float32)
    labels = oriented_array(result.labels)
    box = oriented_array(roi)
    low, high = np.percentile(grey[grey > 0], [1, 99.5])
    grey = window(grey, low, high)
    colours = {entry["value"]: QColor.fromRgbF(*entry["color"]) for entry in result.card.labels}
    k, j, i = np.round(np.argwhere(labels > 0).mean(axis=0)).astype(int)

    # Array axes: [k (inferior->superior), j (anterior->posterior), i (right->left)].
    # Screen: superior up; coronal with the patient's right on the left (radiological), sagittal
    # with anterior on the left.
    coronal = (grey[::-1, j, :], labels[::-1, j, :], box[::-1, j, :])
    sagittal = (grey[::-1, :, i], labels[::-1, :, i], box[::-1, :, i])
    whole = 2.2
    coronal_picture = compose(coronal[0], coronal[1], colours, whole)
    sagittal_picture = compose(sagittal[0], sagittal[1], colours, whole)

    x0, y0, x1, y1 = box_of(sagittal[2])
    zoom = 7.0
    zoomed_picture = compose(sagittal[0][y0:y1, x0:x1], sagittal[1][y0:y1, x0:x1], colours, zoom, alpha=0.35)

    margin, gap, legend_height = 24, 24, 70
    width = margin * 2 + coronal_picture.width() + sagittal_picture.width() + zoomed_picture.width() + gap * 2
    height = margin + 24 + max(coronal_picture.height(), sagittal_picture.height(), zoomed_picture.height()) + legend_height
    canvas = QImage(width, height, QImage.Format_RGB888)
    canvas.fill(QColor(24, 28, 34))
    painter = QPainter(canvas)
    painter.setRenderHint(QPainter.Antialiasing)
    top = margin + 24
    x = margin
    draw_panel(painter, x, top, coronal_picture, "Coronal, whole head", {"left": "R", "right": "L", "top": "S"}, box_of(coronal[2]), whole)
    x += coronal_picture.width() + gap
    draw_panel(painter, x, top, sagittal_picture, "Sagittal, ROI box (yellow)", {"left": "A", "right": "P", "top": "S"}, (x0, y0, x1, y1), whole)
    x += sagittal_picture.width() + gap
    draw_panel(painter, x, top, zoomed_picture, "Sagittal, inside the ROI", {"left": "A", "right": "P"})

    legend_y = top + max(coronal_picture.height(), sagittal_picture.height(), zoomed_picture.height()) + 28
    volumes = result.volumes_mm3()
    painter.setFont(QFont("DejaVu Sans", 11))
    x = margin
    for entry in result.card.labels:
        painter.setPen(Qt.NoPen)
        painter.setBrush(colours[entry["value"]])
        painter.drawRect(QRectF(x, legend_y - 12, 16, 16))
        painter.setPen(QColor(236, 240, 241))
        text = f"{entry['name']}: {volumes[entry['value']]:.0f} mm\u00b3"
        painter.drawText(QPointF(x + 24, legend_y + 2), text)
        x += 24 + painter.fontMetrics().horizontalAdvance(text) + 36
    painter.setPen(QColor(170, 178, 186))
    painter.setFont(QFont("DejaVu Sans", 10))
    painter.drawText(
        QPointF(margin, legend_y + 28),
        f"LUnet Segmentation, shipped model {result.card.model_id} {result.card.version} on the {result.device.upper()} in "
        f"{seconds:.1f} s. Input: Colin27 T1 (Holmes et al. 1998), ROI around the left hippocampus.",
    )
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not canvas.save(str(out), "PNG"):
        raise OSError(f"could not write {out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (holds wholebrain/colin27)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not (args.data / "wholebrain" / "colin27" / "ch2.nii.gz").is_file():
        print(f"error: Colin27 not found under {args.data}/wholebrain/colin27 (set --data or LUNET_DATA)", file=sys.stderr)
        return 1
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (fonts need it)
    image, result, roi, seconds = segment_colin(args.data)
    render(image, result, roi, seconds, args.out)
    volumes = ", ".join(f"{v:.0f}" for v in result.volumes_mm3().values())
    print(f"wrote {args.out} (segmented in {seconds:.1f} s on {result.device}; volumes {volumes} mm3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
