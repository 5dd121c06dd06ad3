"""Channel pruning of a trained Unet, at the granularity the project's network allows.

`UnetFamily` is defined by one channel count per level, shared by every feature map of that
level (the encoder convolutions, the transposed convolution coming up into it and the decoder
convolutions). So a pruning step here picks a level and removes k channels from each of
those maps, each map choosing its own k channels. The result is again a `UnetFamily`, built
from a `NetworkConfig` with explicit `channels`, that `train.train` can fine-tune.

Strategies (finding 2 of the Lean Unet paper):
- "bn": data-driven, STAMP-like. A channel's importance is its BatchNorm scale |gamma|
  divided by the mean |gamma| of its map (so maps are comparable); the level holding the
  globally least important channel is pruned, and in each map of that level the k channels
  with the smallest |gamma| go. The transposed-convolution output has no BatchNorm: its
  channels are ranked by the L1 norm of the decoder weights that read them.
- "random_same": the level "bn" picked at the same step, random channels.
- "random_widest": the currently widest level (the deepest on ties), random channels.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from LUnetSegmentationLib.runtime.model import NetworkConfig, UnetFamily, build_network

STRATEGIES = ("bn", "random_same", "random_widest")


def _pairs(block: nn.Sequential) -> list[tuple[nn.Module, nn.Module]]:
    """(conv, batchnorm) for each convolution of a ConvBlock."""
    convs = [m for m in block if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    norms = [m for m in block if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]
    return list(zip(convs, norms))


def _decoder_index(network: UnetFamily, level: int) -> int:
    return len(network.decoders) - 1 - level  # decoders run from the deepest level up


def level_maps(network: UnetFamily, level: int) -> list[str]:
    """Names of the feature maps whose width is the level's channel count."""
    convs = network.config.convs_per_level
    names = [f"enc{i}" for i in range(convs)]
    if level < network.config.levels - 1:
        names += ["up"] + [f"dec{i}" for i in range(convs)]
    return names


def map_importance(network: UnetFamily, level: int, name: str) -> torch.Tensor:
    """Importance of each channel of one map (see the module docstring)."""
    if name == "up":
        decoder = network.decoders[_decoder_index(network, level)]
        conv = _pairs(decoder)[0][0]
        width = network.config.level_channels()[level]
        return conv.weight.detach()[:, width:].abs().flatten(2).sum(dim=(0, 2))
    kind, index = name[:3], int(name[3:])
    block = network.encoders[level] if kind == "enc" else network.decoders[_decoder_index(network, level)]
    return _pairs(block)[index][1].weight.detach().abs()


def choose_level_bn(network: UnetFamily) -> int:
    """The level holding the channel of lowest normalised BatchNorm scale (width > 1 only)."""
    best_level, best_score = None, math.inf
    for level, width in enumerate(network.config.level_channels()):
        if width <= 1:
            continue
        for name in level_maps(network, level):
            if name == "up":
                continue
            gamma = map_importance(network, level, name)
            score = float((gamma / gamma.mean().clamp_min(1e-12)).min())
            if score < best_score:
                best_level, best_score = level, score
    if best_level is None:
        raise ValueError("nothing left to prune: every level has one channel")
    return best_level


def choose_level_widest(network: UnetFamily) -> int:
    channels = network.config.level_channels()
    widest = max(channels)
    return max(level for level, width in enumerate(channels) if width == widest)


def prune_count(width: int, fraction: float) -> int:
    return min(width - 1, max(1, round(width * fraction)))


def select_channels(network: UnetFamily, level: int, remove: int, strategy: str, generator: torch.Generator) -> dict:
    """{map name: sorted indices to keep} for pruning `remove` channels at `level`."""
    width = network.config.level_channels()[level]
    keep = {}
    for name in level_maps(network, level):
        if strategy == "bn":
            order = torch.argsort(map_importance(network, level, name).cpu(), descending=True)
        else:
            order = torch.randperm(width, generator=generator)
        keep[name] = torch.sort(order[: width - remove]).values
    return keep


def prune_level(network: UnetFamily, level: int, keep: dict[str, torch.Tensor]) -> UnetFamily:
    """A new network without the dropped channels of `level`, carrying the trained weights."""
    old = network.config
    channels = old.level_channels()
    new_channels = list(channels)
    new_channels[level] = len(next(iter(keep.values())))
    config = NetworkConfig.from_dict({**old.to_dict(), "channels": new_channels})
    pruned = build_network(config).to(next(network.parameters()).device)
    levels, convs = old.levels, old.convs_per_level

    def kept(lvl: int, name: str) -> torch.Tensor:
        if lvl == level:
            return keep[name]
        return torch.arange(channels[lvl])

    def out_of(lvl: int) -> torch.Tensor:  # the map a level hands upwards (or to the head)
        return kept(lvl, f"enc{convs - 1}") if lvl == levels - 1 else kept(lvl, f"dec{convs - 1}")

    def copy_conv(src, dst, rows, cols):
        dst.weight.data.copy_(src.weight.data[rows][:, cols])
        if src.bias is not None:
            dst.bias.data.copy_(src.bias.data[rows])

    def copy_norm(src, dst, rows):
        for attr in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, attr).data.copy_(getattr(src, attr).data[rows])
        dst.num_batches_tracked.copy_(src.num_batches_tracked)

    previous = torch.arange(old.in_channels)
    for lvl in range(levels):
        for i, ((conv, norm), (new_conv, new_norm)) in enumerate(zip(_pairs(network.encoders[lvl]), _pairs(pruned.encoders[lvl]))):
            rows = kept(lvl, f"enc{i}")
            copy_conv(conv, new_conv, rows, previous)
            copy_norm(norm, new_norm, rows)
            previous = rows
    for lvl in reversed(range(levels - 1)):
        j = _decoder_index(network, lvl)
        up, new_up = network.ups[j], pruned.ups[j]
        source, rows = out_of(lvl + 1), kept(lvl, "up")
        new_up.weight.data.copy_(up.weight.data[source][:, rows])  # transposed: (in, out, ...)
        new_up.bias.data.copy_(up.bias.data[rows])
        previous = torch.cat([kept(lvl, f"enc{convs - 1}"), channels[lvl] + rows])  # cat([skip, up])
        for i, ((conv, norm), (new_conv, new_norm)) in enumerate(zip(_pairs(network.decoders[j]), _pairs(pruned.decoders[j]))):
            rows_i = kept(lvl, f"dec{i}")
            copy_conv(conv, new_conv, rows_i, previous)
            copy_norm(norm, new_norm, rows_i)
            previous = rows_i
    copy_conv(network.head, pruned.head, torch.arange(old.num_classes), out_of(0))
    return pruned


def prune_step(network: UnetFamily, strategy: str, fraction: float, generator: torch.Generator,
               level: int | None = None) -> tuple[UnetFamily, int]:
    """One pruning step; `level` forces the level (used by "random_same")."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown pruning strategy {strategy!r}; use one of {STRATEGIES}")
    if level is None:
        level = choose_level_widest(network) if strategy == "random_widest" else choose_level_bn(network)
    width = network.config.level_channels()[level]
    if width <= 1:
        raise ValueError(f"level {level} has one channel left; nothing to prune there")
    keep = select_channels(network, level, prune_count(width, fraction), "bn" if strategy == "bn" else "random", generator)
    return prune_level(network, level, keep), level
