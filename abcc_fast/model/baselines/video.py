"""Video baselines: the operando frames as a 1-D video (T frames of W "pixels").

convlstm  ConvLSTM (Shi et al. 2015) rolled out frame by frame: each step encodes [static_z,
          delta_{k-1}] with a strided conv (W -> W / down positions), adds the frame's voltage
          condition, updates a convolutional LSTM state (gates = one Conv1d over [input, h]) and
          decodes the change delta_k with a transposed conv; the predicted change is fed back.
simvp     SimVP (Gao et al. 2022): encoder (strided convs) of the static spectrum -> translator
          (inception-style multi-kernel conv blocks over the latent, output T latent frames stacked
          as channels, each frame FiLM-modulated by its voltage condition) -> decoder shared by all
          frames (transposed convs, skip connection from the first encoder level).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .base import BaselineConfig, BaselineModel, Cond, film, largest_divisor


# ---------------------------------------------------------------------------------------------
# ConvLSTM
# ---------------------------------------------------------------------------------------------
@dataclass
class ConvLSTMConfig(BaselineConfig):
    TINY = dict(channels=8, hidden=8, kernel=3, down=4, cond_dim=16, electrode_dim=4)
    CPU_DEFAULT = dict(channels=32, hidden=32, kernel=5, down=4, cond_dim=64, electrode_dim=8)
    GPU_DEFAULT = dict(channels=96, hidden=96, kernel=5, down=2, cond_dim=128, electrode_dim=16)

    channels: int = 32                 # encoder channels
    hidden: int = 32                   # ConvLSTM state channels
    kernel: int = 5
    down: int = 4                      # strided-conv downsampling of the wavenumber axis (W % down == 0)

    def validate(self) -> None:
        super().validate()
        self._need(self.channels >= 1 and self.hidden >= 1, "channels and hidden must be >= 1")
        self._need(self.kernel % 2 == 1, f"kernel must be odd, got {self.kernel}")
        self._need(self.down >= 1 and self.W % self.down == 0, f"W={self.W} must be a multiple of down={self.down}")

    @classmethod
    def fit_to_data(cls, fields: dict) -> dict:
        return {"down": largest_divisor(fields["W"], fields.get("down", cls.down))}


class ConvLSTMBaseline(BaselineModel):
    """Convolutional LSTM rollout over frames (module docstring); any T."""

    model_type = "convlstm"
    config_class = ConvLSTMConfig
    fixed_T = False

    def __init__(self, config):
        super().__init__(config)
        c = self.config
        self.encode = nn.Conv1d(2, c.channels, c.down, stride=c.down)
        self.condition = nn.Linear(c.cond_dim, c.channels)
        self.init_state = nn.Conv1d(c.channels, 2 * c.hidden, c.kernel, padding=c.kernel // 2)
        self.gates = nn.Conv1d(c.channels + c.hidden, 4 * c.hidden, c.kernel, padding=c.kernel // 2)
        self.decode = nn.ConvTranspose1d(c.hidden, c.channels, c.down, stride=c.down)
        self.head = nn.Conv1d(c.channels, 1, c.kernel, padding=c.kernel // 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def frames_z(self, static_z: torch.Tensor, cond: Cond) -> torch.Tensor:
        delta = torch.zeros_like(static_z)
        enc0 = self.encode(torch.stack([static_z, delta], dim=1))                        # [B, C, W/s]
        h, c_state = torch.tanh(self.init_state(enc0 + self.condition(cond.context)[..., None])).chunk(2, dim=1)
        out = []
        for k in range(cond.frame.shape[1]):
            x = self.encode(torch.stack([static_z, delta], dim=1)) + self.condition(cond.frame[:, k])[..., None]
            i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
            c_state = torch.sigmoid(f) * c_state + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c_state)
            delta = self.head(F.silu(self.decode(h)))[:, 0]                               # [B, W]
            out.append(delta)
        return static_z[:, None, :] + torch.stack(out, dim=1)


# ---------------------------------------------------------------------------------------------
# SimVP
# ---------------------------------------------------------------------------------------------
@dataclass
class SimVPConfig(BaselineConfig):
    TINY = dict(channels=8, hidden=16, levels=2, blocks=1, cond_dim=16, electrode_dim=4)
    CPU_DEFAULT = dict(channels=16, hidden=128, levels=2, blocks=3, cond_dim=64, electrode_dim=8)
    GPU_DEFAULT = dict(channels=64, hidden=384, levels=2, blocks=6, cond_dim=128, electrode_dim=16)

    channels: int = 16                 # latent channels per frame
    hidden: int = 128                  # translator width
    levels: int = 2                    # stride-2 encoder levels (W % 2**levels == 0)
    blocks: int = 2                    # inception blocks in the translator
    kernels: tuple = (3, 5, 7, 11)     # the inception branches' kernel sizes
    groups: int = 4                    # grouped convolutions in the branches

    def validate(self) -> None:
        super().validate()
        self.kernels = tuple(int(k) for k in self.kernels)   # JSON gives a list back
        self._need(self.levels >= 0 and self.W % (2 ** self.levels) == 0,
                   f"W={self.W} must be a multiple of 2**levels={2 ** self.levels}")
        self._need(self.groups >= 1 and self.hidden % len(self.kernels) == 0,
                   f"hidden={self.hidden} must be a multiple of the {len(self.kernels)} kernels; groups >= 1")
        self._need(all(k % 2 == 1 for k in self.kernels), f"kernels must be odd, got {self.kernels}")

    @classmethod
    def fit_to_data(cls, fields: dict) -> dict:
        levels, W = fields.get("levels", cls.levels), fields["W"]
        while levels > 0 and W % (2 ** levels):
            levels -= 1
        return {"levels": levels}


class InceptionBlock(nn.Module):
    """SimVP's translator unit: 1x1 conv, then parallel grouped convs of several kernel sizes
    whose outputs are concatenated, a residual connection around it."""

    def __init__(self, width: int, kernels, groups: int):
        super().__init__()
        branch = width // len(kernels)
        self.reduce = nn.Conv1d(width, width, 1)
        self.branches = nn.ModuleList(nn.Conv1d(width, branch, k, padding=k // 2, groups=_gcd(groups, branch))
                                      for k in kernels)
        self.norm = nn.GroupNorm(_gcd(groups, width), width)

    def forward(self, h):
        r = self.reduce(h)
        return h + F.silu(self.norm(torch.cat([b(r) for b in self.branches], dim=1)))


def _gcd(a: int, b: int) -> int:
    return math.gcd(int(a), int(b))


class SimVPBaseline(BaselineModel):
    """Encoder - translator - decoder over the static spectrum (module docstring)."""

    model_type = "simvp"
    config_class = SimVPConfig

    def __init__(self, config):
        super().__init__(config)
        c = self.config
        C = c.channels
        self.stem = nn.Conv1d(1, C, 3, padding=1)
        self.down = nn.ModuleList(nn.Conv1d(C, C, 4, stride=2, padding=1) for _ in range(c.levels))
        self.translate_in = nn.Conv1d(C + c.cond_dim, c.hidden, 1)
        self.translator = nn.Sequential(*[InceptionBlock(c.hidden, c.kernels, c.groups) for _ in range(c.blocks)])
        self.translate_out = nn.Conv1d(c.hidden, c.T * C, 1)
        self.frame_film = nn.Linear(c.cond_dim, 2 * C)
        self.up = nn.ModuleList(nn.ConvTranspose1d(C, C, 4, stride=2, padding=1) for _ in range(c.levels))
        self.head = nn.Conv1d(2 * C, 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def frames_z(self, static_z: torch.Tensor, cond: Cond) -> torch.Tensor:
        c = self.config
        B, T = static_z.shape[0], c.T
        skip = F.silu(self.stem(static_z[:, None]))                                      # [B, C, W]
        z = skip
        for layer in self.down:
            z = F.silu(layer(z))                                                         # [B, C, W / 2^L]
        ctx = cond.context[..., None].expand(-1, -1, z.shape[-1])
        h = self.translate_out(self.translator(self.translate_in(torch.cat([z, ctx], dim=1))))
        h = rearrange(h, "b (t c) n -> (b t) c n", t=T)
        h = film(h, self.frame_film(cond.frame.reshape(B * T, -1)))
        for layer in self.up:
            h = F.silu(layer(h))
        h = torch.cat([h, skip.repeat_interleave(T, dim=0)], dim=1)
        delta = rearrange(self.head(h)[:, 0], "(b t) w -> b t w", b=B)
        return static_z[:, None, :] + delta
