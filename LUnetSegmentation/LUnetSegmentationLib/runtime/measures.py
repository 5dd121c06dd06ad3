"""Derived per-scan measures that every output (summary.csv, the Slicer table, the BIDS App's
volumes.tsv) reports the same way, from one LabelResult:

    asymmetry_index(left_mm3, right_mm3)     (L - R) / ((L + R) / 2), None without both sides
    intracranial_volume_ml(details)          the learned localizer's intracranial volume (mL), or None
    fraction_of_icv(volume_mm3, icv_ml)      a volume as a fraction of the intracranial volume

The intracranial volume is estimated by the localizer network (runtime/localizer.py) and
stored in LabelResult.details["intracranial"] = {"volume_ml": float, "cut_by_field_of_view": bool,
...}; where that estimate is missing (crop or ROI mode, a run without the localizer) or partial
(the field of view cuts the brain) these return None and outputs leave the field empty rather
than approximate it.
"""
from __future__ import annotations


def asymmetry_index(left_mm3, right_mm3):
    """(L - R) / mean(L, R): positive when the left hippocampus is larger."""
    if left_mm3 is None or right_mm3 is None:
        return None
    left, right = float(left_mm3), float(right_mm3)
    if left + right <= 0:
        return None
    return (left - right) / ((left + right) / 2)


def intracranial_volume_ml(details):
    """The intracranial volume (mL) recorded by the localizer, or None; None too when the
    field of view cuts the intracranial space (the estimate would cover only part of it)."""
    intracranial = (details or {}).get("intracranial", {})
    value = intracranial.get("volume_ml")
    if value is None or intracranial.get("cut_by_field_of_view"):
        return None
    return float(value)


def fraction_of_icv(volume_mm3, icv_ml):
    """A volume (mm3) as a fraction of the intracranial volume (mL = 1000 mm3), or None."""
    if volume_mm3 is None or not icv_ml:
        return None
    return float(volume_mm3) / (float(icv_ml) * 1000.0)
