"""Run a model card's network on a batch: PyTorch, or ONNX Runtime on the CPU.

    backend = load_backend(card, device="cpu")     # ONNX Runtime when it can, else PyTorch
    probabilities = backend.forward(batch)         # (B, 1, z, y, x) float32 -> (B, C, z, y, x) softmax

Why two: on the CPU, ONNX Runtime imports in about 0.2 CPU-seconds where torch takes about
2.5, and runs this network about 1.5x faster (docs/results/wholehead_cpu.json), which is most
of a whole-head scan's CPU time in a command-line run. PyTorch stays the engine for training,
for GPUs and wherever onnxruntime is not installed (inside Slicer it is installed only after
asking the user); both give the same probabilities to about 1e-5 (Testing/test_backends.py).

A card names its ONNX file next to its PyTorch weights ("onnx": {"file", "sha256"}), written by
scripts/publish_model.py from the same state dict. Environment variable LUNET_BACKEND=torch
forces PyTorch (for comparisons).
"""
from __future__ import annotations

import importlib.util
import logging
import os

import numpy as np

from .weights import WeightsError, sha256sum

log = logging.getLogger("LUnetSegmentation")


def _describe(backend, config) -> None:
    """What the engine needs to know of the network (classes, widest level, size multiple)."""
    backend.num_classes = config.num_classes
    backend.width = max(config.level_channels())
    backend.size_multiple = config.size_multiple


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, card, verify: bool = True):
        import onnxruntime

        entry = card.data["onnx"]
        path = card.path.parent / entry["file"]
        if not path.is_file():
            raise WeightsError(f"The ONNX file {path} of model {card.model_id!r} is missing. Reinstall the extension.")
        if verify and sha256sum(path) != entry["sha256"]:
            raise WeightsError(
                f"The ONNX file {path} is corrupt or truncated (its SHA-256 differs from the model card's). "
                "Reinstall the extension (or restore the file)."
            )
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT warns about unused initialisers otherwise
        # Idle pool threads sleep instead of spinning: spinning burns CPU-seconds between the
        # few large convolutions of one scan (a cohort pays for them) and gains no wall time here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises its own exception types for damaged files
            raise WeightsError(f"The ONNX file {path} cannot be read ({error}). Reinstall the extension.") from error
        self.input_name = self.session.get_inputs()[0].name
        from .network_config import NetworkConfig

        _describe(self, NetworkConfig.from_dict(card.data["network"]))
        self.device = "cpu"
        self.fell_back = False

    def forward(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return _softmax(logits)


class TorchBackend:
    name = "torch"

    def __init__(self, card=None, device: str = "cpu", verify: bool = True, network=None):
        from .weights import load_network

        self.network = network if network is not None else load_network(card, device, verify=verify)
        self.device = device
        _describe(self, self.network.config)
        self.fell_back = False  # set when a GPU ran out of memory and the CPU took over
        self._cpu_copy = None

    def forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            if self.device != "cpu" and not self.fell_back:
                try:
                    return self._device_forward(tensor)
                except torch.cuda.OutOfMemoryError:
                    # This image goes on in a CPU copy; the model stays on the GPU for later,
                    # smaller inputs (the engine resets fell_back per image).
                    torch.cuda.empty_cache()
                    self.fell_back = True
                    log.warning("GPU ran out of memory; this volume is segmented on the CPU instead.")
            network = self.network
            if self.device != "cpu":
                if self._cpu_copy is None:
                    import copy

                    self._cpu_copy = copy.deepcopy(self.network).to("cpu")
                network = self._cpu_copy
            return torch.softmax(network(tensor).float(), dim=1).numpy()


    def _device_forward(self, tensor):
        import torch

        return torch.softmax(self.network(tensor.to(self.device)).float(), dim=1).cpu().numpy()


def onnx_usable(card) -> bool:
    return "onnx" in card.data and importlib.util.find_spec("onnxruntime") is not None


def load_backend(card, device: str = "cpu", verify: bool = True):
    """ONNX Runtime for a CPU run when the card has an ONNX file and onnxruntime is installed,
    else PyTorch on `device`."""
    wanted = os.environ.get("LUNET_BACKEND", "auto").lower()
    if device == "cpu" and wanted != "torch" and onnx_usable(card):
        return OnnxBackend(card, verify)
    if wanted == "onnxruntime" and device == "cpu":
        raise WeightsError(
            f"LUNET_BACKEND=onnxruntime was asked for, but model {card.model_id!r} has no ONNX file or onnxruntime "
            "is not installed (pip install onnxruntime)."
        )
    if importlib.util.find_spec("torch") is None:
        raise WeightsError(
            "Neither ONNX Runtime nor PyTorch is installed, and the network needs one of them. In Slicer, segment "
            "through the module (LUnetSegmentation.LUnetSegmentationLogic().segment(volume)), which offers to install "
            "one; elsewhere run: pip install onnxruntime" + (" (or torch, for a GPU)" if device == "cpu" else " torch"))
    return TorchBackend(card, device, verify)
