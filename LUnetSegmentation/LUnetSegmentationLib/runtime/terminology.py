"""Standard terminology entries for the segments this module writes (pure Python).

Slicer stores a segment's meaning as one terminology entry string (the segment tag named by
`vtkSegment.GetTerminologyEntryTagName()`, on every Slicer version; `SetTerminology` is 5.10+),
seven fields separated by '~':

    context ~ category ~ type ~ type modifier ~ region context ~ region ~ region modifier

where each coded field is `CodingSchemeDesignator^CodeValue^CodeMeaning`. DICOM SEG export
reads these codes, so with them a segmentation exports to DICOM without any manual step.

The codes come from Slicer's default terminology ("Segmentation category and type - DICOM
master list"): Hippocampus is SCT 5366008 in category Anatomical Structure, a paired structure
with Left/Right laterality modifiers. The anterior (head) and posterior (body and tail) parts
have no code of their own there, so a part keeps the Hippocampus type code and the segment name
says which part it is.
"""
from __future__ import annotations

from dataclasses import dataclass

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
REGION_CONTEXT = "Anatomic codes - DICOM master list"

ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
HIPPOCAMPUS = ("SCT", "5366008", "Hippocampus")
LATERALITY = {
    "left": ("SCT", "7771000", "Left"),
    "right": ("SCT", "24028007", "Right"),
}

# Structure names (as in the model cards) -> type code. Unknown names fall back to the
# closest whole structure they contain, so a future model's "Hippocampus tail" is still coded.
_TYPES = {"hippocampus": HIPPOCAMPUS}


@dataclass(frozen=True)
class TerminologyEntry:
    category: tuple[str, str, str]
    type: tuple[str, str, str]
    type_modifier: tuple[str, str, str] | None = None

    def to_slicer_string(self) -> str:
        def code(value):
            return "^".join(value) if value else "^^"

        return "~".join(
            [
                TERMINOLOGY_CONTEXT,
                code(self.category),
                code(self.type),
                code(self.type_modifier),
                REGION_CONTEXT,
                "^^",
                "^^",
            ]
        )


def normalise_side(side: str | None) -> str | None:
    if side in (None, ""):
        return None
    key = str(side).strip().lower()
    if key in ("l", "left"):
        return "left"
    if key in ("r", "right"):
        return "right"
    raise ValueError(f"Unknown side {side!r}: use 'left', 'right' or None.")


def entry_for(structure_name: str, side: str | None = None) -> TerminologyEntry | None:
    """The terminology entry for a structure name such as "Hippocampus anterior", optionally
    with its side; None when no standard code is known (the segment then has a name only)."""
    lowered = structure_name.lower()
    for word, type_code in _TYPES.items():
        if word in lowered:
            side = normalise_side(side)
            return TerminologyEntry(ANATOMICAL_STRUCTURE, type_code, LATERALITY[side] if side else None)
    return None


def entry_string(structure_name: str, side: str | None = None) -> str:
    entry = entry_for(structure_name, side)
    return entry.to_slicer_string() if entry else ""


def display_name(structure_name: str, side: str | None = None) -> str:
    """"Hippocampus anterior" -> "Left hippocampus anterior" when the side is known."""
    side = normalise_side(side)
    if not side:
        return structure_name
    return f"{side.capitalize()} {structure_name[:1].lower()}{structure_name[1:]}"
