"""Static baselines: regress all T frames at once from the static spectrum (and the conditions).

mlp   frames_z = static_z + reshape(MLP([static_z, voltage features of all frames, context]), [T, W])
cnn   frames_z[k] = static_z + channel k of a 1-D residual CNN along wavenumber over static_z,
      FiLM-conditioned on (context, the whole voltage profile)

Both output heads are zero-initialised: an untrained model is the persistence reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from einops import rearrange

from .base import BaselineConfig, BaselineModel, Cond, ConvTrunk, mlp


@dataclass
class MLPConfig(BaselineConfig):
    TINY = dict(hidden=32, depth=1, cond_dim=16, electrode_dim=4)
    CPU_DEFAULT = dict(hidden=512, depth=3, cond_dim=64, electrode_dim=8)
    GPU_DEFAULT = dict(hidden=1024, depth=4, cond_dim=128, electrode_dim=16)

    hidden: int = 256
    depth: int = 2                     # hidden layers

    def validate(self) -> None:
        super().validate()
        self._need(self.hidden >= 1 and self.depth >= 1, "hidden and depth must be >= 1")


class MLPBaseline(BaselineModel):
    """Static MLP: [static_z (W), voltage features (3 T), context (D)] -> T x W frame changes."""

    model_type = "mlp"
    uses_frame_condition = False
    config_class = MLPConfig

    def __init__(self, config):
        super().__init__(config)
        c = self.config
        layers, n_in = [], c.W + 3 * c.T + c.cond_dim
        for _ in range(c.depth):
            layers += [nn.Linear(n_in, c.hidden), nn.SiLU()]
            n_in = c.hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c.hidden, c.T * c.W)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def frames_z(self, static_z: torch.Tensor, cond: Cond) -> torch.Tensor:
        h = torch.cat([static_z, cond.volt.flatten(1), cond.context], dim=-1)
        delta = rearrange(self.head(self.body(h)), "b (t w) -> b t w", t=self.config.T)
        return static_z[:, None, :] + delta


@dataclass
class CNNConfig(BaselineConfig):
    TINY = dict(channels=8, depth=2, kernel=5, cond_dim=16, electrode_dim=4)
    CPU_DEFAULT = dict(channels=64, depth=8, kernel=5, cond_dim=64, electrode_dim=8)
    GPU_DEFAULT = dict(channels=192, depth=12, kernel=5, cond_dim=128, electrode_dim=16)

    channels: int = 64
    depth: int = 6                     # residual blocks (dilations 1, 2, 4, 8, 1, ...)
    kernel: int = 5

    def validate(self) -> None:
        super().validate()
        self._need(self.channels >= 1 and self.depth >= 1, "channels and depth must be >= 1")
        self._need(self.kernel >= 1 and self.kernel % 2 == 1, f"kernel must be odd, got {self.kernel}")


class CNNBaseline(BaselineModel):
    """Static 1-D CNN along wavenumber: static_z [1, W] -> T channels (one per frame) of changes."""

    model_type = "cnn"
    uses_frame_condition = False
    config_class = CNNConfig

    def __init__(self, config):
        super().__init__(config)
        c = self.config
        self.profile = mlp(c.cond_dim + 3 * c.T, c.cond_dim, c.cond_dim)   # context + voltage profile
        self.trunk = ConvTrunk(1, c.channels, c.T, c.depth, c.kernel, c.cond_dim)

    def frames_z(self, static_z: torch.Tensor, cond: Cond) -> torch.Tensor:
        g = self.profile(torch.cat([cond.context, cond.volt.flatten(1)], dim=-1))
        return static_z[:, None, :] + self.trunk(static_z[:, None, :], g)              # [B, T, W]
