"""Add an ONNX copy of a model card's network (for ONNX Runtime on the CPU) to the card.

    .venv/bin/python scripts/export_onnx.py LUnetSegmentation/Resources/Models/hippocampus_lunet.json

Exports the card's verified PyTorch weights with torch.onnx (dynamo exporter, opset 18; batch
and the three spatial sizes dynamic, spatial sizes multiples of the network's 2^(levels-1)),
checks that ONNX Runtime gives the same probabilities as PyTorch on random inputs of three
shapes (max |difference| below 1e-4), then writes `<weights stem>.onnx` beside the card and
records its file name and SHA-256 in the card's "onnx" entry. Needs `pip install onnx
onnxscript onnxruntime` (export time only; the runtime needs onnxruntime alone).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LUnetSegmentation"))

from LUnetSegmentationLib.runtime.weights import ModelCard, load_network, sha256sum  # noqa: E402


def export(card_path: Path, check_shapes=((1, 1, 40, 56, 40), (2, 1, 48, 64, 48), (1, 1, 96, 96, 64))) -> dict:
    card = ModelCard(card_path, json.loads(card_path.read_text()))
    network = load_network(card, "cpu")
    multiple = 2 ** (network.config.levels - 1)
    example = torch.randn(2, 1, 48, 64, 48)
    batch = torch.export.Dim("batch", min=1, max=64)
    sizes = [torch.export.Dim(axis, min=1, max=512 // multiple) for axis in ("z", "y", "x")]
    target = card_path.parent / (Path(card.data["weights"]["file"]).stem + ".onnx")
    partial = target.with_name(target.name + ".tmp")
    torch.onnx.export(network, (example,), str(partial), dynamo=True, opset_version=18, external_data=False,
                      input_names=["image"], output_names=["logits"],
                      dynamic_shapes=({0: batch, 2: multiple * sizes[0], 3: multiple * sizes[1], 4: multiple * sizes[2]},))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(partial), providers=["CPUExecutionProvider"])
    worst = 0.0
    for shape in check_shapes:
        volume = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        with torch.inference_mode():
            expected = torch.softmax(network(torch.from_numpy(volume)), 1).numpy()
        logits = session.run(None, {"image": volume})[0]
        got = np.exp(logits - logits.max(1, keepdims=True))
        got /= got.sum(1, keepdims=True)
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > 1e-4:
        partial.unlink()
        raise SystemExit(f"ONNX Runtime and PyTorch disagree by {worst:.2e}; not written")
    partial.replace(target)
    card.data["onnx"] = {"file": target.name, "sha256": sha256sum(target), "opset": 18,
                         "format": "ONNX (exported from the PyTorch weights above by scripts/export_onnx.py)",
                         "max_probability_difference_vs_torch": float(f"{worst:.2e}")}
    card_path.write_text(json.dumps(card.data, indent=1) + "\n")
    print(f"wrote {target} ({target.stat().st_size / 1e3:.0f} KB); max |p_onnx - p_torch| = {worst:.1e}")
    return card.data["onnx"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for card in args.cards:
        export(card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
