"""Write a DICOM SEG (highdicom) that references the DICOM series it segments, for PACS.

    writer = SegWriter(result, series_files, content_note(...), module_version)
    write_atomic(out / "case.seg.dcm", writer.write, verify=writer.problem)

One binary segment per label, coded as the Slicer module codes them (runtime/terminology.py:
category Anatomical Structure, type Hippocampus SCT 5366008, Left/Right as the type's modifier,
as Slicer's own DICOM SEG export writes it), with the segment's colour and the model as the
algorithm. The label image must be on the series' grid (batch labels the image read from
these files), slice k of the labels being the series' file k (series.py's order).

`problem` reads the written file back with highdicom and compares every frame with the labels
before the file gets its name. The SEG's ContentDescription holds the model, input and options
checksums (content_note), so a re-run recognises its own earlier SEG.

Source install only, like series.py: needs pydicom and highdicom (requirements.txt).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...runtime import terminology

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
SERIES_NUMBER = 9100  # where viewers list derived series: after the scanner's own


def content_note(weights_sha: str, input_sha: str, options_hash: str) -> str:
    """The SEG's ContentDescription (64 characters at most): what made it, from what."""
    return f"LUnet w{weights_sha[:12]} i{input_sha[:12]} o{options_hash[:8]}"


def _code(value):
    import highdicom as hd

    scheme, code, meaning = value
    return hd.sr.CodedConcept(value=code, scheme_designator=scheme, meaning=meaning)


def segment_descriptions(specs, model_id: str, version: str) -> list:
    """One SegmentDescription per spec, numbered 1..N in specs order."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name="LUnetSegmentation " + model_id, version=version,
                                                   family=codes.DCM.ArtificialIntelligence)
    descriptions = []
    for number, spec in enumerate(specs, start=1):
        entry = terminology.entry_for(spec.name, spec.side)
        category, kind = (entry.category, entry.type) if entry else (terminology.ANATOMICAL_STRUCTURE, ("SCT", "91723000", "Anatomical structure"))
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=spec.segment_name[:64],
            segmented_property_category=_code(category),
            segmented_property_type=_code(kind),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*[int(round(255 * float(c))) for c in spec.color]),
        )
        if entry is not None and entry.type_modifier is not None:
            # Laterality, where Slicer's terminology and its DICOM export put it.
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [_code(entry.type_modifier)]
        descriptions.append(description)
    return descriptions


def segment_numbers(labels: np.ndarray, specs) -> np.ndarray:
    """The label values as segment numbers 1..N (specs order); 0 stays background."""
    numbered = np.zeros(labels.shape, np.uint8)
    for number, spec in enumerate(specs, start=1):
        numbered[labels == spec.value] = number
    return numbered


class SegWriter:
    """Writes and checks one case's DICOM SEG; the source files are read once."""

    def __init__(self, result, source_files, note: str, version: str):
        import pydicom

        self.result = result
        self.sources = [pydicom.dcmread(str(name)) for name in source_files]
        self.note = note
        self.version = version
        self.numbers = segment_numbers(sitk.GetArrayFromImage(result.labels), result.specs)
        if self.numbers.shape[0] != len(self.sources):
            raise ValueError(f"{self.numbers.shape[0]} label slices for {len(self.sources)} DICOM files")

    def write(self, path: Path) -> None:
        import highdicom as hd

        card = self.result.card
        first = self.sources[0]
        seg = hd.seg.Segmentation(
            source_images=self.sources,
            pixel_array=self.numbers,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segment_descriptions(self.result.specs, card.model_id, self.version),
            series_instance_uid=hd.UID(),
            series_number=SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="LUnetSegmentation",
            manufacturer_model_name=card.model_id[:64],
            software_versions=f"{self.version} {card.model_id} {card.version}"[:64],
            device_serial_number=card.weights_sha256[:16] or "none",
            content_description=self.note,
            content_label="HIPPOCAMPUS",
            series_description=f"Hippocampus ({card.model_id})"[:64],
        )
        # highdicom takes the patient and study from the sources; the date of the SEG is now.
        if "StudyInstanceUID" in first and seg.StudyInstanceUID != first.StudyInstanceUID:
            raise ValueError("the SEG does not belong to its source study")
        seg.save_as(str(path))

    def problem(self, path: Path) -> str | None:
        """What differs between the written SEG and the labels, or None."""
        import highdicom as hd

        try:
            seg = hd.seg.segread(str(path))
            uids = [source.SOPInstanceUID for source in self.sources]
            pixels = seg.get_pixels_by_source_instance(
                uids, combine_segments=True, assert_missing_frames_are_empty=True, skip_overlap_checks=True)
        except Exception as error:  # noqa: BLE001 - a damaged file shows as any reader error
            return f"it does not read back as a DICOM SEG ({type(error).__name__}: {error})"
        if pixels.shape != self.numbers.shape or not np.array_equal(pixels, self.numbers):
            return "its frames read back differently from the labels written"
        return None


def read_content_note(path: str | Path) -> str | None:
    """The ContentDescription of a DICOM file (ours start with 'LUnet '), or None if unreadable."""
    import pydicom

    try:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not DICOM, damaged: not ours
        return None
    return str(dataset.get("ContentDescription", ""))


def is_complete_seg(path: str | Path, note: str | None = None) -> bool:
    """Whether a file is a whole DICOM SEG (all its frames' bits present), with ContentDescription
    `note` when given."""
    import pydicom

    try:
        dataset = pydicom.dcmread(str(path))
        if dataset.SOPClassUID != SEGMENTATION_STORAGE:
            return False
        if note is not None and str(dataset.get("ContentDescription", "")) != note:
            return False
        bits = int(dataset.Rows) * int(dataset.Columns) * int(dataset.NumberOfFrames)
        return len(dataset.PixelData) >= (bits + 7) // 8
    except Exception:  # noqa: BLE001 - damaged in any way: not complete
        return False
