"""Draw the extension icon (Resources/LUnetSegmentation.png) and the module icon
(LUnetSegmentation/Resources/Icons/LUnetSegmentation.png), both 128x128.

A grey head outline with a curved hippocampus in the model's two label colours (anterior orange,
posterior blue, read from the model card so the icon matches the segments users see).
Uses PySide6 (a test dependency) offscreen; run from the repository root:

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_icons.py
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPainterPath, QPen  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "LUnetSegmentation" / "Resources" / "Models" / "hippocampus_lunet.json"
OUTPUTS = [REPO / "Resources" / "LUnetSegmentation.png", REPO / "LUnetSegmentation" / "Resources" / "Icons" / "LUnetSegmentation.png"]
SIZE = 128


def label_colours() -> list[QColor]:
    labels = json.loads(CARD.read_text())["labels"]
    return [QColor.fromRgbF(*label["color"]) for label in labels]


def draw(size: int = SIZE) -> QImage:
    image = QImage(size, size, QImage.Format_ARGB32)
    image.fill(Qt.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    scale = size / 128.0
    painter.scale(scale, scale)

    # Rounded dark tile, so the icon reads on light and dark themes alike.
    painter.setPen(Qt.NoPen)
    painter.setBrush(QColor(38, 44, 52))
    painter.drawRoundedRect(QRectF(2, 2, 124, 124), 22, 22)

    # A sagittal head/brain silhouette.
    painter.setBrush(QColor(150, 156, 164))
    painter.drawEllipse(QRectF(16, 22, 96, 80))
    painter.setBrush(QColor(112, 118, 126))
    painter.drawEllipse(QRectF(26, 32, 76, 60))

    # The hippocampus: a thick curved stroke, anterior (head) part then posterior (body and tail).
    anterior, posterior = label_colours()[:2]
    head = QPainterPath(QPointF(34, 78))
    head.cubicTo(QPointF(38, 88), QPointF(52, 90), QPointF(62, 82))
    tail = QPainterPath(QPointF(62, 82))
    tail.cubicTo(QPointF(74, 72), QPointF(84, 60), QPointF(96, 56))
    for path, colour, width in ((head, anterior, 17), (tail, posterior, 11)):
        pen = QPen(colour, width, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin)
        painter.setPen(pen)
        painter.setBrush(Qt.NoBrush)
        painter.drawPath(path)

    # A small network glyph: three nodes joined, the "Lean Unet".
    painter.setPen(QPen(QColor(236, 240, 241), 3))
    nodes = [QPointF(84, 20), QPointF(100, 32), QPointF(116, 20)]
    painter.drawLine(nodes[0], nodes[1])
    painter.drawLine(nodes[1], nodes[2])
    painter.setBrush(QColor(236, 240, 241))
    for node in nodes:
        painter.drawEllipse(node, 5, 5)
    painter.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (fonts and painting need it)
    image = draw()
    for path in OUTPUTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(path), "PNG"):
            print(f"could not write {path}", file=sys.stderr)
            return 1
        print(f"wrote {path.relative_to(REPO)} ({image.width()}x{image.height()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
