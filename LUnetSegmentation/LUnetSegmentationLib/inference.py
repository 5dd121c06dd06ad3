"""Run a network over a preprocessed volume: centring pad, tiling, mirroring (torch + numpy).

Shared by validation during training, evaluation and the segmentation engine, so all three
see the same numbers for the same input.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F


def _centre_pad(volume: torch.Tensor, multiple: int, minimum: list[int], value: float):
    """Pad (B, C, *spatial) symmetrically to a multiple of `multiple` and at least `minimum`."""
    spatial = volume.shape[2:]
    pads, crop = [], []
    for size, least in zip(spatial, minimum):
        target = max(size, least)
        target += (-target) % multiple
        before = (target - size) // 2
        pads.append((before, target - size - before))
        crop.append(slice(before, before + size))
    flat = [p for pair in reversed(pads) for p in pair]
    return F.pad(volume, flat, value=value), tuple(crop)


def _tile_starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


@torch.inference_mode()
def predict_probabilities(
    network: torch.nn.Module,
    volume: np.ndarray,
    device: str | torch.device = "cpu",
    mirror: bool = True,
    tile_size: int = 96,
    pad_to: list[int] | None = None,
    pad_value: float = 0.0,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Softmax probabilities (C, *spatial) for a z-scored volume (spatial dims only).

    Volumes larger than `tile_size` along an axis are processed in overlapping tiles whose
    probabilities are averaged, so memory stays bounded for whole-brain inputs. `mirror`
    averages over flips along every axis (test-time augmentation).
    """
    network.eval()
    dims = volume.ndim
    multiple = 2 ** (network.config.levels - 1)
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None].to(device)
    tensor, crop = _centre_pad(tensor, multiple, pad_to or [0] * dims, pad_value)
    spatial = tensor.shape[2:]
    tile = [min(s, max(tile_size - tile_size % multiple, multiple)) for s in spatial]
    step = [max(multiple, t // 2) for t in tile]
    starts = list(itertools.product(*[_tile_starts(s, t, st) for s, t, st in zip(spatial, tile, step)]))
    flips = [axes for r in range(dims + 1) for axes in itertools.combinations(range(2, 2 + dims), r)] if mirror else [()]
    total = torch.zeros((network.config.num_classes, *spatial), device=device)
    counts = torch.zeros((1, *spatial), device=device)
    done, work = 0, len(starts) * len(flips)
    for start in starts:
        window = tuple(slice(s, s + t) for s, t in zip(start, tile))
        patch = tensor[(slice(None), slice(None)) + window]
        accumulated = None
        for axes in flips:
            if cancelled is not None and cancelled():
                raise InterruptedError("Segmentation cancelled")
            flipped = torch.flip(patch, axes) if axes else patch
            logits = network(flipped).float()
            probs = torch.softmax(logits, dim=1)
            probs = torch.flip(probs, axes) if axes else probs
            accumulated = probs if accumulated is None else accumulated + probs
            done += 1
            if progress is not None:
                progress(done / work)
        total[(slice(None),) + window] += accumulated[0] / len(flips)
        counts[(slice(None),) + window] += 1
    probabilities = (total / counts)[(slice(None),) + crop]
    return probabilities.cpu().numpy()
