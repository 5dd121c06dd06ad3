"""Model cards and weights: find, verify (SHA-256) and load. Depends on torch and json only.

A model is a JSON card `<id>.json` beside its weights file. Weights are a plain state dict of
tensors read with `torch.load(weights_only=True)`: nothing in a weights file is ever unpickled
as an arbitrary object.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .resources import RESOURCES_DIR

MODELS_DIR = RESOURCES_DIR / "Models"
# The default follows the measurements (README, "Which model"): FreeSurfer-style whole hippocampus,
# any contrast, robust to 3 mm voxels and thick slices.
DEFAULT_MODEL = "hippocampus-whole-lunet"


class WeightsError(RuntimeError):
    """The model's card or weights are missing or damaged."""


def file_hexdigest(path: Path, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """A file's digest, read in 1 MiB chunks: a plain loop, because hashlib's own file helper is
    Python 3.11+ only, Slicer 5.8 ships Python 3.9, and this is on every segmentation's path."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256sum(path: Path, chunk_size: int = 1 << 20) -> str:
    return file_hexdigest(path, "sha256", chunk_size)


@dataclass
class ModelCard:
    path: Path  # the card's JSON file
    data: dict

    @property
    def model_id(self) -> str:
        return self.data["id"]

    @property
    def version(self) -> str:
        return str(self.data.get("version", "0"))

    @property
    def weights_path(self) -> Path:
        return self.path.parent / self.data["weights"]["file"]

    @property
    def weights_sha256(self) -> str:
        return self.data["weights"]["sha256"]

    @property
    def labels(self) -> list[dict]:
        """[{"value": 1, "name": ..., "color": [r, g, b], ...}, ...] without background."""
        return self.data["labels"]

    @property
    def description(self) -> str:
        return self.data.get("description", "")


def validate_card(data, path) -> dict:
    """Refuse a model card with missing keys or wrong types, naming the key, before anything
    reads it (a KeyError deep in the pipeline says nothing to a user)."""
    def fail(problem: str):
        raise WeightsError(f"The model card {path} is not usable: {problem}. Restore it from the extension, or fix the card.")

    if not isinstance(data, dict):
        fail("it is not a JSON object")
    for key, kind in (("id", str), ("weights", dict), ("network", dict), ("labels", list), ("preprocessing", dict)):
        if key not in data:
            fail(f"the key {key!r} is missing")
        if not isinstance(data[key], kind):
            fail(f"{key!r} must be a {kind.__name__}, not {type(data[key]).__name__}")
    for key in ("file", "sha256"):
        if not isinstance(data["weights"].get(key), str):
            fail(f"weights.{key} must be a string")
    for index, label in enumerate(data["labels"]):
        if not isinstance(label, dict) or not isinstance(label.get("value"), int) or not isinstance(label.get("name"), str):
            fail(f"labels[{index}] needs an integer 'value' and a string 'name'")
    if not data["labels"]:
        fail("it lists no labels")
    return data


def available_models(models_dir: Path = MODELS_DIR) -> list[ModelCard]:
    cards = []
    for path in sorted(Path(models_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if "weights" in data and "id" in data:
            cards.append(ModelCard(path, data))
    # The default model first: model lists (panel, web) show it as their initial choice.
    cards.sort(key=lambda card: card.model_id != DEFAULT_MODEL)
    return cards


def find_model(model: str | Path | None = None, models_dir: Path = MODELS_DIR) -> ModelCard:
    """A model by id (shipped models), or by path to a card JSON or a training output folder."""
    model = model or DEFAULT_MODEL
    candidate = Path(model)
    if candidate.is_dir():
        candidate = candidate / "card.json"
    if candidate.suffix == ".json" and candidate.is_file():
        try:
            data = json.loads(candidate.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise WeightsError(f"The model card {candidate} is not valid JSON ({error}). Restore it from the extension.") from error
        return ModelCard(candidate, validate_card(data, candidate))
    for card in available_models(models_dir):
        if card.model_id == str(model):
            validate_card(card.data, card.path)
            return card
    known = ", ".join(c.model_id for c in available_models(models_dir)) or "none"
    raise WeightsError(f"No model {str(model)!r}: give a shipped model id ({known}), a card .json or a training output folder.")


def load_state_dict(card: ModelCard, verify: bool = True) -> dict:
    import torch

    path = card.weights_path
    if not path.is_file():
        raise WeightsError(
            f"The weights file {path} of model {card.model_id!r} is missing. Reinstall the "
            "extension (or restore the file) to get it back."
        )
    if verify:
        actual = sha256sum(path)
        if actual != card.weights_sha256:
            raise WeightsError(
                f"The weights file {path} is corrupt or truncated: its SHA-256 is {actual[:12]}..., "
                f"the model card expects {card.weights_sha256[:12]}.... Reinstall the extension "
                "(or restore the file) to get intact weights."
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        # Torch's own text suggests weights_only=False, i.e. running arbitrary pickled code:
        # never pass that advice on. The first line says what is wrong.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "Weights only" in str(error):
            reason = "it holds Python objects other than plain tensors, which are never loaded"
        raise WeightsError(f"The weights file {path} cannot be read ({reason}). Reinstall the extension.") from error


def load_network(card: ModelCard, device: str = "cpu", verify: bool = True):
    """The network of a card, weights loaded, in eval mode on `device`."""
    from .model import build_network

    network = build_network(card.data["network"])
    state = load_state_dict(card, verify)  # its own errors (missing, corrupt) say so themselves
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise WeightsError(f"The weights of {card.model_id!r} do not fit its network description: {error}") from error
    return network.to(device).eval()
