"""Which BIDS anatomical suffixes (`--suffix T1w T2w FLAIR ...`) a model may segment.

A model card lists the contrasts it was trained for ("contrasts": ["T1"] for the Decathlon
model; ["T1", "T2", "FLAIR", "other MRI contrasts (synthetic training)"] for the model trained on
synthetic images of random contrast). A suffix whose contrast the card does not list is refused
before any scan is read: a T1-only model on a FLAIR gives a confident, wrong volume, not an error.
A card that lists no contrasts (a user's own training output) is taken at its word for any.

Only the 3D weighted structural images of BIDS' anat/ folder are offered: parametric maps
(T1map, ...), multi-volume files (PDT2, MP2RAGE's UNIT1/inv-) and angiography are not MRI of
the kind the networks saw.
"""
from __future__ import annotations

from ...runtime.preprocess import InputError

# BIDS suffix -> the contrast name model cards use.
SUFFIX_CONTRAST = {
    "T1w": "T1",
    "inplaneT1": "T1",
    "T2w": "T2",
    "inplaneT2": "T2",
    "FLAIR": "FLAIR",
    "PDw": "PD",
    "T2starw": "T2*",
}
DEFAULT_SUFFIXES = ("T1w",)
# A card entry that starts with this accepts every contrast above (training on random contrasts).
ANY_CONTRAST = "other mri contrasts"


def check_suffixes(suffixes) -> list[str]:
    """The suffixes, deduplicated in order; an unknown one is refused, naming those offered."""
    chosen = []
    for suffix in suffixes or DEFAULT_SUFFIXES:
        if suffix not in SUFFIX_CONTRAST:
            offered = ", ".join(SUFFIX_CONTRAST)
            raise InputError(f"--suffix {suffix!r} is not a BIDS anatomical image this app segments; give one or more "
                             f"of {offered} (case matters, as in the file names).")
        if suffix not in chosen:
            chosen.append(suffix)
    return chosen


def untrained_suffixes(suffixes, card_contrasts) -> list[str]:
    """Those of `suffixes` whose contrast a card's "contrasts" list does not name (none for a card
    without the list, or one trained on any contrast)."""
    listed = [str(c) for c in card_contrasts or []]
    if not listed or any(c.lower().startswith(ANY_CONTRAST) for c in listed):
        return []
    return [s for s in suffixes if SUFFIX_CONTRAST[s] not in listed]


def check_model_contrasts(suffixes, card) -> None:
    """Refuse suffixes the model's card does not list among its trained contrasts, naming the
    shipped models that were trained for them."""
    untrained = untrained_suffixes(suffixes, card.data.get("contrasts"))
    if not untrained:
        return
    from ...runtime.weights import available_models

    others = [c.model_id for c in available_models() if not untrained_suffixes(suffixes, c.data.get("contrasts"))]
    hint = f"use --model {others[0]}" if others else "use a model trained for them"
    raise InputError(
        f"The model {card.model_id!r} was trained for {', '.join(map(str, card.data['contrasts']))} only, not for "
        f"{', '.join(f'{s} ({SUFFIX_CONTRAST[s]})' for s in untrained)}: its volumes there would be wrong. "
        f"{hint[0].upper() + hint[1:]}, or drop that --suffix.")
