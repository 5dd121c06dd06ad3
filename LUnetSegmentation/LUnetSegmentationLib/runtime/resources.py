"""Where the module's Resources/ folder is (model cards and weights, the localizer, the MNI
template): next to the package, found from this file so that runtime/ takes nothing from the
package root (whose __init__ leads to the console API and MRML)."""
from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parents[2] / "Resources"
