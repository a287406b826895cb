"""Time-series baselines: the frames as a multivariate series (W channels) driven by the voltage.

gru       a recurrent rollout, frame by frame: h_0 = tanh(E static_z + P context);
          h_k = cell([frame_k condition (voltage), F delta_{k-1}], h_{k-1});  delta_k = H h_k;
          frames_z[k] = static_z + delta_k. The previous *predicted* change is fed back (free running,
          in training as at inference, so there is no exposure bias). cell: GRU or LSTM.
patchtst  PatchTST-style (Nie et al. 2023) transformer: tokens are temporal patches of frames
          (their voltage conditions) and spectral patches of the static spectrum, one pre-norm
          transformer encoder over both; the change of frame patch m in spectral patch n is read
          from silu(A time_m + B spectral_n) (a factorised head: spectral detail comes from the
          static tokens, not from a width-d bottleneck).
dlinear   DLinear (Zeng et al. 2023), "individual" mode: the input series (the voltage profile) is
          split into a moving-average trend and a remainder, and every wavenumber channel w has its
          own linear maps to its T outputs:
          delta[:, w] = A_w trend + S_w remainder + a_w static_z[w] + C_w raw_context + b_w.
          Purely linear: no learned conditioning embedding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .base import BaselineConfig, BaselineModel, Cond, context_size, largest_divisor


# ---------------------------------------------------------------------------------------------
# GRU / LSTM rollout
# ---------------------------------------------------------------------------------------------
@dataclass
class GRUConfig(BaselineConfig):
    TINY = dict(hidden=32, cond_dim=16, electrode_dim=4)
    CPU_DEFAULT = dict(hidden=512, cond_dim=64, electrode_dim=8)
    GPU_DEFAULT = dict(hidden=1024, cond_dim=128, electrode_dim=16)

    hidden: int = 256
    cell: str = "gru"                  # "gru" | "lstm"
    feedback: bool = True              # feed the previous predicted change back as input

    def validate(self) -> None:
        super().validate()
        self._need(self.hidden >= 1, "hidden must be >= 1")
        self._need(self.cell in ("gru", "lstm"), f"cell must be 'gru' or 'lstm', got {self.cell!r}")


class GRUBaseline(BaselineModel):
    """Recurrent rollout over frames with the voltage as input (module docstring); any T."""

    model_type = "gru"
    config_class = GRUConfig
    fixed_T = False

    def __init__(self, config):
        super().__init__(config)
        c = self.config
        self.encode_static = nn.Linear(c.W, c.hidden)
        self.encode_context = nn.Linear(c.cond_dim, c.hidden)
        n_in = c.cond_dim + (c.hidden if c.feedback else 0)
        self.feedback = nn.Linear(c.W, c.hidden) if c.feedback else None
        self.cell = nn.GRUCell(n_in, c.hidden) if c.cell == "gru" else nn.LSTMCell(n_in, c.hidden)
        self.head = nn.Linear(c.hidden, c.W)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def frames_z(self, static_z: torch.Tensor, cond: Cond) -> torch.Tensor:
        h = torch.tanh(self.encode_static(static_z) + self.encode_context(cond.context))   # [B, H]
        state = h if self.config.cell == "gru" else (h, torch.zeros_like(h))
        delta = torch.zeros_like(static_z)
        out = []
        for k in range(cond.frame.shape[1]):
            inp = cond.frame[:, k]
            if self.feedback is not None:
                inp = torch.cat([inp, self.feedback(delta)], dim=-1)
            state = self.cell(inp, state)
            delta = self.head(state if self.config.cell == "gru" else state[0])
            out.append(delta)
        return static_z[:, None, :] + torch.stack(out, dim=1)                            # [B, T, W]


# ---------------------------------------------------------------------------------------------
# PatchTST-style transformer
# ---------------------------------------------------------------------------------------------
@dataclass
class PatchTSTConfig(BaselineConfig):
    TINY = dict(dim=32, depth=1, heads=2, frame_patch=2, spectral_patch=16, cond_dim=16, electrode_dim=4)
    CPU_DEFAULT = dict(dim=256, depth=4, heads=4, frame_patch=4, spectral_patch=16, cond_dim=64, electrode_dim=8)
    GPU_DEFAULT = dict(dim=384, depth=6, heads=6, frame_patch=2, spectral_patch=16, cond_dim=128, electrode_dim=16)

    dim: int = 128
    depth: int = 3
    heads: int = 4
    mlp_ratio: float = 2.0
    frame_patch: int = 4               # frames per temporal token (T % frame_patch == 0)
    spectral_patch: int = 16           # wavenumber points per static token (W % spectral_patch == 0)

    def validate(self) -> None:
        super().validate()
        self._need(self.dim % self.heads == 0, f"dim={self.dim} must be a multiple of heads={self.heads}")
        self._need(self.frame_patch >= 1 and self.T % self.frame_patch == 0,
                   f"T={self.T} must be a multiple of frame_patch={self.frame_patch}")
        self._need(self.spectral_patch >= 1 and self.W % self.spectral_patch == 0,
                   f"W={self.W} must be a multiple of spectral_patch={self.spectral_patch}")

    @classmethod
    def fit_to_data(cls, fields: dict) -> dict:
        want_t = fields.get("frame_patch", cls.frame_patch)
        want_s = fields.get("spectral_patch", cls.spectral_patch)
        return {"frame_patch": largest_divisor(fields["T"], want_t),
                "spectral_patch": largest_divisor(fields["W"], want_s)}


class PatchTSTBaseline(BaselineModel):
    """Transformer over temporal frame patches and spectral static patches (module docstring)."""

    model_type = "patchtst"
    config_class = PatchTSTConfig

    def __init__(self, config):
        super().__init__(config)
        c = self.config
        self.n_time, self.n_spec = c.T // c.frame_patch, c.W // c.spectral_patch
        self.embed_time = nn.Linear(c.frame_patch * c.cond_dim, c.dim)
        self.embed_spec = nn.Linear(c.spectral_patch, c.dim)
        self.pos_time = nn.Parameter(torch.randn(self.n_time, c.dim) * 0.02)
        self.pos_spec = nn.Parameter(torch.randn(self.n_spec, c.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, int(c.mlp_ratio * c.dim), dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.head_time = nn.Linear(c.dim, c.dim)
        self.head_spec = nn.Linear(c.dim, c.dim, bias=False)
        self.head = nn.Linear(c.dim, c.frame_patch * c.spectral_patch)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def frames_z(self, static_z: torch.Tensor, cond: Cond) -> torch.Tensor:
        c = self.config
        time_tok = self.embed_time(rearrange(cond.frame, "b (m p) d -> b m (p d)", p=c.frame_patch)) + self.pos_time
        spec_tok = self.embed_spec(rearrange(static_z, "b (n q) -> b n q", q=c.spectral_patch)) + self.pos_spec
        h = self.norm(self.encoder(torch.cat([time_tok, spec_tok], dim=1)))
        ht, hs = h[:, :self.n_time], h[:, self.n_time:]
        grid = F.silu(self.head_time(ht)[:, :, None] + self.head_spec(hs)[:, None])       # [B, M, N, d]
        delta = rearrange(self.head(grid), "b m n (p q) -> b (m p) (n q)", p=c.frame_patch, q=c.spectral_patch)
        return static_z[:, None, :] + delta


# ---------------------------------------------------------------------------------------------
# DLinear
# ---------------------------------------------------------------------------------------------
@dataclass
class DLinearConfig(BaselineConfig):
    TINY = dict(kernel=3)
    CPU_DEFAULT = dict(kernel=5)
    GPU_DEFAULT = dict(kernel=5)

    kernel: int = 5                    # moving-average window of the trend (odd)

    def validate(self) -> None:
        super().validate()
        self._need(self.kernel >= 1 and self.kernel % 2 == 1, f"kernel must be odd, got {self.kernel}")


def moving_average(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """x [B, T] -> [B, T]: centred moving average, ends padded by repetition (DLinear's trend)."""
    pad = kernel // 2
    xp = F.pad(x[:, None], (pad, pad), mode="replicate")
    return F.avg_pool1d(xp, kernel, stride=1)[:, 0]


class DLinearBaseline(BaselineModel):
    """Per-channel linear maps of the decomposed voltage profile (module docstring)."""

    model_type = "dlinear"
    config_class = DLinearConfig
    uses_conditioning = False

    def __init__(self, config):
        super().__init__(config)
        c = self.config
        n_raw = context_size(c) + c.n_electrodes
        self.trend = nn.Parameter(torch.zeros(c.W, c.T, c.T))        # [W, T_out, T_in]
        self.remainder = nn.Parameter(torch.zeros(c.W, c.T, c.T))
        self.static_gain = nn.Parameter(torch.zeros(c.W, c.T))
        self.context = nn.Parameter(torch.zeros(c.W, c.T, n_raw))
        self.bias = nn.Parameter(torch.zeros(c.W, c.T))

    def frames_z(self, static_z: torch.Tensor, cond: Cond) -> torch.Tensor:
        v = cond.volt[..., 0]                                                           # [B, T]
        trend = moving_average(v, self.config.kernel)
        delta = (torch.einsum("wts,bs->btw", self.trend, trend)
                 + torch.einsum("wts,bs->btw", self.remainder, v - trend)
                 + torch.einsum("wtc,bc->btw", self.context, cond.raw)
                 + self.static_gain.T[None] * static_z[:, None, :] + self.bias.T[None])
        return static_z[:, None, :] + delta
