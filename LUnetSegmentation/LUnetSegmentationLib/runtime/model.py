"""Lean Unet (LUnet) and the standard channel-doubling Unet, built from the same blocks.

Hassler et al., "Lean Unet: A Compact Model for Image Segmentation" (arXiv 2512.03834):
the Unet topology is kept, but every level has the same number of channels instead of
doubling them as the resolution halves.

Block (per convolution): conv 3x3x3 -> ReLU -> BatchNorm -> Dropout (small p), as in the
paper (activation before normalisation). Down: 2x max-pool. Up: transposed conv, kernel 2,
stride 2. Skips are concatenated. Head: 1x1x1 conv to class logits.

Differences from the paper, and why:
- The transposed convolution of the doubling Unet maps C_{l+1} -> C_l channels (the classic
  Ronneberger layout). With 4-8-16-32-64 channels, 5 levels and 2 convolutions per level this
  gives 353,954 trainable parameters for a binary output, the paper's 354k. The LUnet with
  width 4 and the same depth has 9,934 (paper: 10.7k). The paper does not spell out its
  transposed-convolution or head layout for LUnet; the ~7% gap is within what such choices
  (e.g. an up-conv that keeps 2w channels, or counting BatchNorm running statistics) add.
- Inputs of any size are accepted: they are padded (zeros, which is the mean after the
  z-score normalisation used here) to a multiple of 2**(levels-1) and the logits are cropped
  back, so callers never need to know the network's depth.

This file depends on torch only.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .network_config import NetworkConfig


def _layers(spatial_dims: int):
    if spatial_dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.MaxPool3d
    if spatial_dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d
    raise ValueError(f"spatial_dims must be 2 or 3, not {spatial_dims}")


class ConvBlock(nn.Sequential):
    """conv 3x3(x3) -> ReLU -> BatchNorm -> Dropout, repeated `count` times."""

    def __init__(self, in_ch: int, out_ch: int, count: int, spatial_dims: int, dropout: float):
        conv, _, norm, _ = _layers(spatial_dims)
        layers: list[nn.Module] = []
        for index in range(count):
            layers += [
                conv(in_ch if index == 0 else out_ch, out_ch, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                norm(out_ch),
            ]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class UnetFamily(nn.Module):
    """A Unet defined by its per-level channel list; LUnet and Unet differ only in that list."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        channels = config.level_channels()
        dims, drop, convs = config.spatial_dims, config.dropout, config.convs_per_level
        conv, up_conv, _, pool = _layers(dims)
        self.encoders = nn.ModuleList()
        previous = config.in_channels
        for ch in channels:
            self.encoders.append(ConvBlock(previous, ch, convs, dims, drop))
            previous = ch
        self.pool = pool(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            self.ups.append(up_conv(channels[level + 1], channels[level], kernel_size=2, stride=2))
            self.decoders.append(ConvBlock(2 * channels[level], channels[level], convs, dims, drop))
        self.head = conv(channels[0], config.num_classes, kernel_size=1)

    @property
    def size_multiple(self) -> int:
        return self.config.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        multiple = self.size_multiple
        pad: list[int] = []
        for size in reversed(spatial):  # F.pad lists the last dimension first
            extra = (-size) % multiple
            pad += [0, extra]
        if any(pad):
            x = F.pad(x, pad)
        skips = []
        for index, encoder in enumerate(self.encoders):
            x = encoder(x)
            if index < len(self.encoders) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, decoder in zip(self.ups, self.decoders):
            x = up(x)
            x = decoder(torch.cat([skips.pop(), x], dim=1))
        logits = self.head(x)
        if any(pad):
            logits = logits[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]
        return logits


def LUnet(**kwargs) -> UnetFamily:
    """Lean Unet: constant `width` channels at every level."""
    return UnetFamily(NetworkConfig(architecture="LUnet", **kwargs))


def Unet(**kwargs) -> UnetFamily:
    """Standard Unet: `width` channels at the first level, doubling at each level down."""
    return UnetFamily(NetworkConfig(architecture="Unet", **kwargs))


def build_network(config: NetworkConfig | dict) -> UnetFamily:
    if isinstance(config, dict):
        config = NetworkConfig.from_dict(config)
    return UnetFamily(config)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (weights, biases, BatchNorm affine); running statistics excluded."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
