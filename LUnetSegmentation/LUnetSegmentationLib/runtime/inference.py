"""Run a network over preprocessed volumes: centring pad, tiling, mirroring (numpy only).

Shared by validation during training, evaluation and the segmentation engine, so all three
see the same numbers for the same input. The network is anything with `forward(batch)`
returning softmax probabilities, `num_classes` and `size_multiple` (backends.py: ONNX Runtime
or PyTorch); a torch module is wrapped in a PyTorch backend on `device`.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np


def _as_backend(network, device):
    if isinstance(getattr(network, "size_multiple", None), int) and hasattr(network, "num_classes"):
        return network  # a backend (backends.py); a torch module has a size_multiple() method instead
    from .backends import TorchBackend  # a torch.nn.Module (training, benchmarks)

    network.eval()
    return TorchBackend(network=network, device=str(device))


def _centre_pad(volume: np.ndarray, multiple: int, minimum: list[int], value: float):
    """Pad (B, C, *spatial) symmetrically to a multiple of `multiple` and at least `minimum`."""
    spatial = volume.shape[2:]
    pads, crop = [(0, 0), (0, 0)], []
    for size, least in zip(spatial, minimum):
        target = max(size, least)
        target += (-target) % multiple
        before = (target - size) // 2
        pads.append((before, target - size - before))
        crop.append(slice(before, before + size))
    return np.pad(volume, pads, constant_values=value), tuple(crop)


def _tile_starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def mirror_flips(mirror, dims: int = 3) -> list[tuple]:
    """The flips test-time mirroring averages over. `mirror`: False (one pass), True (every
    combination: 8 passes in 3D) or a number of passes, taken in this order: none, left-right
    (the last axis, x), then the other single axes, then pairs, then all."""
    every = [axes for r in range(dims + 1) for axes in itertools.combinations(range(2, 2 + dims), r)]
    every.sort(key=lambda axes: (len(axes), -max(axes, default=0)))  # (), (x), (y), (z), ...
    if mirror is True:
        return every
    count = int(mirror) if mirror else 1
    return every[: max(1, min(count, len(every)))]


def predict_batch(
    network,
    volumes: np.ndarray,
    device="cpu",
    mirror: bool = True,
    tile_size: int = 96,
    pad_to: list[int] | None = None,
    pad_value: float = 0.0,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Softmax probabilities (B, C, *spatial) for z-scored volumes (B, *spatial) of one shape,
    run through the network together (one forward pass per tile and flip for the whole batch:
    both hippocampi of a head cost one pass).

    Volumes larger than `tile_size` along an axis are processed in overlapping tiles whose
    probabilities are averaged, so memory stays bounded for whole-brain inputs. `mirror`
    averages over flips (test-time augmentation; see mirror_flips).
    """
    backend = _as_backend(network, device)
    if hasattr(backend, "fell_back"):
        backend.fell_back = False
    volumes = np.asarray(volumes, dtype=np.float32)
    dims = volumes.ndim - 1
    multiple = backend.size_multiple
    padded, crop = _centre_pad(volumes[:, None], multiple, pad_to or [0] * dims, pad_value)
    spatial = padded.shape[2:]
    tile = [min(s, max(tile_size - tile_size % multiple, multiple)) for s in spatial]
    step = [max(multiple, t // 2) for t in tile]
    starts = list(itertools.product(*[_tile_starts(s, t, st) for s, t, st in zip(spatial, tile, step)]))
    flips = mirror_flips(mirror, dims)
    total = np.zeros((len(volumes), backend.num_classes, *spatial), dtype=np.float32)
    counts = np.zeros((1, 1, *spatial), dtype=np.float32)
    done, work = 0, len(starts) * len(flips)
    for start in starts:
        window = tuple(slice(s, s + t) for s, t in zip(start, tile))
        patch = padded[(slice(None), slice(None)) + window]
        accumulated = None
        for axes in flips:
            if cancelled is not None and cancelled():
                raise InterruptedError("Segmentation cancelled")
            flipped = np.flip(patch, axes) if axes else patch
            probs = backend.forward(flipped)
            probs = np.flip(probs, axes) if axes else probs
            accumulated = probs.copy() if accumulated is None else accumulated + probs
            done += 1
            if progress is not None:
                progress(done / work)
        total[(slice(None), slice(None)) + window] += accumulated / len(flips)
        counts[(slice(None), slice(None)) + window] += 1
    return (total / counts)[(slice(None), slice(None)) + crop]


def predict_probabilities(network, volume: np.ndarray, device="cpu", mirror: bool = True, tile_size: int = 96,
                          pad_to: list[int] | None = None, pad_value: float = 0.0, progress=None, cancelled=None) -> np.ndarray:
    """Softmax probabilities (C, *spatial) for one z-scored volume (spatial dims only)."""
    return predict_batch(network, np.asarray(volume)[None], device, mirror, tile_size, pad_to, pad_value, progress, cancelled)[0]
