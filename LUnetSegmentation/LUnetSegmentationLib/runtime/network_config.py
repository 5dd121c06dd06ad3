"""NetworkConfig: the few readable parameters a network is built from, stored in model cards.

Torch-free, so the ONNX Runtime path (backends.py) reads a card's network without importing
torch; model.py builds the torch network from it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class NetworkConfig:
    """Everything needed to rebuild a network; stored verbatim in model cards."""

    architecture: str = "LUnet"  # "LUnet" (constant width) or "Unet" (doubling)
    in_channels: int = 1
    num_classes: int = 3
    levels: int = 5  # resolution steps, including the full-resolution level
    convs_per_level: int = 2
    width: int = 16  # LUnet: channels at every level; Unet: channels at the first level
    spatial_dims: int = 3
    dropout: float = 0.005
    channels: list[int] = field(default_factory=list)  # explicit per-level override

    def level_channels(self) -> list[int]:
        if self.channels:
            if len(self.channels) != self.levels:
                raise ValueError(f"channels {self.channels} must list one value per level ({self.levels})")
            return list(self.channels)
        if self.architecture == "LUnet":
            return [self.width] * self.levels
        if self.architecture == "Unet":
            return [self.width * 2**level for level in range(self.levels)]
        raise ValueError(f"unknown architecture {self.architecture!r}: use 'LUnet' or 'Unet'")

    @property
    def size_multiple(self) -> int:
        """Inputs are padded to a multiple of this: one halving per level below the first."""
        return 2 ** (self.levels - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "NetworkConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)
