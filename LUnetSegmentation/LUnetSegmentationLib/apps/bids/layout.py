"""The BIDS layout rules the BIDS App needs: the anatomical images of a raw dataset, and the names
of their derivatives.

    sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>][_acq-][_ce-][_rec-][_run-]..._<suffix>.nii[.gz]

Implemented directly rather than through pybids: this is the one rule the app needs, and pybids
would add pandas, SQLAlchemy and an index build of the whole dataset at every start to a tool that
otherwise imports in a second. Which suffixes a model may segment: contrasts.py.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ...runtime.preprocess import InputError

log = logging.getLogger("LUnetSegmentation")

DESC = "hippocampus"
LABEL = r"[a-zA-Z0-9]+"
# Entities a raw anatomical image's name may carry, in the order BIDS requires, then its suffix.
SCAN_NAME = re.compile(
    rf"^sub-(?P<sub>{LABEL})(?:_ses-(?P<ses>{LABEL}))?(?:_acq-(?P<acq>{LABEL}))?(?:_ce-(?P<ce>{LABEL}))?"
    rf"(?:_rec-(?P<rec>{LABEL}))?(?:_run-(?P<run>[0-9]+))?(?:_echo-(?P<echo>[0-9]+))?"
    rf"(?:_part-(?P<part>mag|phase|real|imag))?(?:_chunk-(?P<chunk>[0-9]+))?_(?P<suffix>{LABEL})"
    rf"(?P<extension>\.nii(?:\.gz)?)$"
)


@dataclass(frozen=True)
class Scan:
    """One anatomical image of the input dataset and where its derivatives go."""

    path: Path  # the source image
    relative: str  # its path inside the dataset, POSIX style ("sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz")
    subject: str
    session: str | None
    stem: str  # entities of the source name: "sub-01_ses-1_run-1"
    suffix: str = "T1w"  # the source's BIDS suffix: T1w, T2w, FLAIR, ...

    @property
    def scan_id(self) -> str:
        return f"{self.stem}_{self.suffix}"

    @property
    def desc(self) -> str:
        """The derivatives' desc- label. BIDS has no entity for the source's contrast, so a T2w's or
        FLAIR's segmentation carries it in desc (desc-hippocampusFLAIR) and does not collide with
        the T1w's of the same session; a T1w's keeps plain desc-hippocampus, as before."""
        return DESC if self.suffix == "T1w" else DESC + self.suffix

    @property
    def anat_parts(self) -> tuple[str, ...]:
        return (f"sub-{self.subject}",) + ((f"ses-{self.session}",) if self.session else ()) + ("anat",)

    def dseg_name(self, extension: str) -> str:
        return f"{self.stem}_desc-{self.desc}_dseg{extension}"

    def figure_relative(self) -> str:
        return f"sub-{self.subject}/figures/{self.dseg_name('.png')}"

    def outputs(self, out_dir: Path) -> dict[str, Path]:
        anat = Path(out_dir, *self.anat_parts)
        return {
            "dseg": anat / self.dseg_name(".nii.gz"),
            "tsv": anat / self.dseg_name(".tsv"),
            "sidecar": anat / self.dseg_name(".json"),
            "figure": Path(out_dir) / self.figure_relative(),
            "error": Path(out_dir) / "logs" / f"{self.scan_id}_error.json",
        }


def _labels(values, what: str) -> list[str] | None:
    if not values:
        return None
    labels = []
    for value in values:
        label = value.split("-", 1)[1] if value.startswith(f"{what}-") else value
        if not re.fullmatch(LABEL, label):
            raise InputError(f"{what} label {value!r} is not a BIDS label (letters and digits only).")
        if label not in labels:
            labels.append(label)
    return labels


def _folders(parent: Path, entity: str) -> dict[str, Path]:
    """label -> folder for parent/<entity>-<label>/ (BIDS labels only)."""
    found = {}
    for folder in sorted(parent.glob(f"{entity}-*")):
        label = folder.name[len(entity) + 1:]
        if folder.is_dir() and re.fullmatch(LABEL, label):
            found[label] = folder
    return found


def _refuse_missing(kind: str, option: str, missing, present, bids_dir: Path) -> None:
    """A participant or session label the user asked for that the dataset does not have: refused
    (a typo would otherwise run a partial cohort that looks complete)."""
    shown = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "") if present else "none"
    raise InputError(f"{bids_dir} has no {kind} {', '.join(missing)} ({kind} labels there: {shown}). "
                     f"Fix or drop those labels in {option}.")


def find_scans(bids_dir, participants=None, sessions=None, suffixes=None) -> list[Scan]:
    """Every anatomical image of a BIDS dataset with one of `suffixes` (default T1w):
    sub-*/[ses-*/]anat/*_<suffix>.nii[.gz], optionally only of the given participant and session
    labels ("01" or "sub-01"), sorted by path. Labels the dataset does not have are refused by
    name; a scan present twice (.nii and .nii.gz) is refused, as BIDS allows one file per name."""
    from .contrasts import check_suffixes

    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise InputError(f"The BIDS dataset folder {bids_dir} does not exist.")
    if not (bids_dir / "dataset_description.json").is_file():
        raise InputError(f"{bids_dir} is not a BIDS dataset: it has no dataset_description.json.")
    suffixes = check_suffixes(suffixes)
    wanted_subjects = _labels(participants, "sub")
    wanted_sessions = _labels(sessions, "ses")
    subjects = _folders(bids_dir, "sub")
    if wanted_subjects is not None:
        missing = [label for label in wanted_subjects if label not in subjects]
        if missing:
            _refuse_missing("participant", "--participant-label", missing, list(subjects), bids_dir)
        subjects = {label: subjects[label] for label in wanted_subjects}
    if wanted_sessions is not None:
        sessions_there = sorted({label for folder in subjects.values() for label in _folders(folder, "ses")})
        missing = [label for label in wanted_sessions if label not in sessions_there]
        if missing:
            _refuse_missing("session", "--session-label", missing, sessions_there, bids_dir)
    scans, seen, duplicates = [], {}, []
    for subject, subject_dir in sorted(subjects.items()):
        anat_dirs = [(None, subject_dir / "anat")] + [
            (session, folder / "anat") for session, folder in _folders(subject_dir, "ses").items()]
        found_before = len(scans)
        for session, anat in anat_dirs:
            if not anat.is_dir() or (wanted_sessions is not None and session not in wanted_sessions):
                continue
            for path in sorted(anat.iterdir()):
                match = SCAN_NAME.match(path.name)
                if not match or match["suffix"] not in suffixes:
                    continue
                if match["sub"] != subject or match["ses"] != session:
                    log.warning("Skipping %s: its sub/ses entities do not match its folder.", path)
                    continue
                stem = path.name[: match.start("suffix") - 1]
                scan = Scan(path, path.relative_to(bids_dir).as_posix(), subject, session, stem, match["suffix"])
                if scan.scan_id in seen:  # sub-01_T1w.nii beside sub-01_T1w.nii.gz
                    duplicates.append((seen[scan.scan_id], path))
                    continue
                seen[scan.scan_id] = path
                scans.append(scan)
        if wanted_subjects is not None and len(scans) == found_before:
            log.warning("Participant %s has no %s image%s; nothing to do for it.", subject, " or ".join(suffixes),
                        f" in session(s) {', '.join(wanted_sessions)}" if wanted_sessions else "")
    if duplicates:
        pairs = "; ".join(f"{a.relative_to(bids_dir).as_posix()} and {b.name}" for a, b in duplicates)
        raise InputError(f"The same scan is in {bids_dir} twice, as .nii and .nii.gz: {pairs}. BIDS allows one file "
                         "per name and this app cannot tell which is current: remove (or move out) one of each pair.")
    if not scans:
        which = []
        if wanted_subjects:
            which.append("participant(s) " + ", ".join(wanted_subjects))
        if wanted_sessions:
            which.append("session(s) " + ", ".join(wanted_sessions))
        kinds = " or ".join(suffixes)
        raise InputError(f"No {kinds} images found in {bids_dir}" + (f" for {' and '.join(which)}" if which else "")
                         + f" (expected sub-<label>/[ses-<label>/]anat/sub-<label>_..._{suffixes[0]}.nii.gz).")
    return scans
