"""The two-stream backbone of ABCC (SPEC.md 4.2): an MM-DiT over spectral patches.

Tokens (per network query, W wavenumbers, patch P, N = W / P patches):
  solvent stream  y-side: patch n of [x_r, static]           -> Linear(2P, d) + position  (N tokens)
  SEI stream      z-side: patch n of [x_r - static, static]  -> Linear(2P, d) + position  (N tokens)
  + one condition token per stream (a per-stream projection of the condition embedding c).
Condition c = MLP([fourier(r), fourier(tau - r), (V(r) - m)/s, (V(tau) - m)/s, composition,
electrode embedding]) -- every input is smooth in r, so the JVP in r is well defined.
Blocks (adaLN-Zero, Esser et al. 2024): each stream has its own modulation, QKV, output and MLP
weights; one softmax over the concatenated tokens of both streams via
``abcc_fast.ops.two_stream_attention`` (fused primal+JVP on GPU). Heads: a per-stream final adaLN
and Linear(d, P), zero-initialised, unpatchified to u_solvent, u_sei [B, W] (z-units per unit tau).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from abcc_fast.ops import two_stream_attention

from .config import ABCCConfig


def fourier_features(t: torch.Tensor, n_freq: int) -> torch.Tensor:
    """t [B] -> [B, 2 n_freq]: sin/cos(pi j t / 2), j = 1..n_freq -- low, linearly spaced
    frequencies: the velocity field is smooth in time, and d/dr of the features (the JVP) stays
    O(n_freq) instead of O(2^n_freq) with geometric frequencies."""
    freqs = 0.5 * math.pi * torch.arange(1, n_freq + 1, device=t.device, dtype=t.dtype)
    ang = t[:, None] * freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class PlainLayerNorm(nn.Module):
    """LayerNorm without affine parameters, written with elementary ops: identical values, but its
    forward-mode derivative runs on native formulas (PyTorch's native_layer_norm JVP goes through a
    Python decomposition that costs ~3x the primal on small CPU problems)."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        xc = x - x.mean(-1, keepdim=True)
        return xc * torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + self.eps)


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class StreamBlockWeights(nn.Module):
    """One stream's weights in a joint block: adaLN modulation, QKV, output projection, MLP."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = PlainLayerNorm(1e-6)
        self.norm2 = PlainLayerNorm(1e-6)
        self.modulation = nn.Linear(dim, 6 * dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)


class JointBlock(nn.Module):
    """MM-DiT block: separate weights per stream, one joint attention over both streams."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, attention_backend=None):
        super().__init__()
        self.heads = heads
        self.attention_backend = attention_backend
        self.solvent = StreamBlockWeights(dim, mlp_ratio)
        self.sei = StreamBlockWeights(dim, mlp_ratio)

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor):
        """a [B, Na, d] solvent tokens, b [B, Nb, d] SEI tokens, c [B, d] condition."""
        mods, qkvs = [], []
        for s, x in ((self.solvent, a), (self.sei, b)):
            m = s.modulation(F.silu(c)).chunk(6, dim=-1)
            mods.append(m)
            h = _modulate(s.norm1(x), m[0], m[1])
            q, k, v = rearrange(s.qkv(h), "b n (three h d) -> three b h n d", three=3, h=self.heads)
            qkvs.append((q, k, v))
        (qa, ka, va), (qb, kb, vb) = qkvs
        oa, ob = two_stream_attention(qa, ka, va, qb, kb, vb, backend=self.attention_backend)
        outs = []
        for s, x, o, m in ((self.solvent, a, oa, mods[0]), (self.sei, b, ob, mods[1])):
            x = x + m[2][:, None] * s.out(rearrange(o, "b h n d -> b n (h d)"))
            x = x + m[5][:, None] * s.mlp(_modulate(s.norm2(x), m[3], m[4]))
            outs.append(x)
        return outs[0], outs[1]


def sei_template_matrix(cfg: ABCCConfig) -> torch.Tensor:
    """[M, W] film-product templates (all products x aging states) on cfg.wavenumber, unit peak."""
    from ..analysis.templates import film_products, product_templates, visible_products

    if len(cfg.wavenumber) != cfg.W:
        raise ValueError("ABCCConfig(sei_basis='templates') needs the model grid (config.wavenumber, W points) to "
                         "render the SEI product templates: build the config with ABCCConfig.from_dataset(ds, ...) "
                         "or pass wavenumber=[...], or use sei_basis='free'")
    names = visible_products(cfg.wavenumber, film_products())      # products with a band on this grid
    m = torch.as_tensor(product_templates(cfg.wavenumber, names).matrix, dtype=torch.float64)
    return m / m.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)


class StreamHead(nn.Module):
    """Final adaLN + Linear(d, P), zero-initialised (the velocity starts at 0): tokens [B, N, d]
    -> a stream's velocity [B, N P]."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.norm = PlainLayerNorm(1e-6)
        self.modulation = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, out)
        for lin in (self.modulation, self.proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def features(self, x, c):
        shift, scale = self.modulation(F.silu(c)).chunk(2, dim=-1)
        return _modulate(self.norm(x), shift, scale)

    def forward(self, x, c):
        return rearrange(self.proj(self.features(x, c)), "b n p -> b (n p)")


class TemplateHead(StreamHead):
    """SEI velocity as a combination of product templates: StreamHead's final adaLN, mean over the
    stream's tokens, Linear(d, M) (zero-initialised) -> coefficients [B, M] @ templates [M, W]. The
    templates (``sei_templates``, a persistent buffer: saved with the weights) are the film products'
    spectra along their aging states on the model grid, each scaled to a peak of 1 z-unit."""

    def __init__(self, dim: int, templates: torch.Tensor):
        super().__init__(dim, templates.shape[0])
        self.register_buffer("sei_templates", templates.float())

    def forward(self, x, c):
        coef = self.proj(self.features(x, c).mean(1))                               # [B, M]
        return coef @ self.sei_templates.to(coef.dtype)


def context_size(cfg: ABCCConfig) -> int:
    """Width of the per-sample context vector: composition (+ the scaled log protocol duration)
    (+ the voltage profile resampled to ``profile_points``)."""
    comp = cfg.template_dim if cfg.composition_encoding == "templates" else cfg.n_components
    return comp + (1 if cfg.use_duration else 0) + cfg.profile_points


def state_size(cfg: ABCCConfig) -> int:
    """Width of the protocol state at one time: V, the exposure below each history level (+ elapsed
    time). See ``ABCC.protocol_state``."""
    return 1 + len(cfg.history_levels) + (1 if cfg.history_elapsed else 0)


class ConditionEmbedding(nn.Module):
    """c = MLP([fourier(r), fourier(tau - r), s(r), s(tau), context, electrode])  -> [B, d];
    s = the protocol state (V, exposures below the history levels, elapsed time; see
    ABCC.protocol_state), context = composition (+ scaled log protocol duration, + voltage profile,
    see ABCC.context)."""

    def __init__(self, cfg: ABCCConfig):
        super().__init__()
        self.n_freq = cfg.n_freq
        self.n_state = state_size(cfg)
        self.volt_mean, self.volt_std = cfg.volt_mean, cfg.volt_std
        self.electrode = nn.Embedding(cfg.n_electrodes, cfg.dim)
        nn.init.zeros_(self.electrode.weight)   # an electrode never seen in training adds nothing (not noise)
        n_in = 4 * cfg.n_freq + 2 * self.n_state + context_size(cfg)
        self.inp = nn.Linear(n_in, cfg.dim)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))

    def _state(self, s):
        """[B] voltage or [B, n_state] protocol state -> scaled [B, n_state] (V standardised)."""
        if s.dim() == 1:
            s = s[:, None]
        if s.shape[1] != self.n_state:
            raise ValueError(f"protocol state has {s.shape[1]} columns, the model expects {self.n_state} "
                             "(V + history levels + elapsed): build it with ABCC.protocol_state")
        return torch.cat([(s[:, :1] - self.volt_mean) / self.volt_std, s[:, 1:]], dim=1)

    def forward(self, r, tau, volt_r, volt_tau, composition, electrode):
        feats = torch.cat([fourier_features(r, self.n_freq), fourier_features(tau - r, self.n_freq),
                           self._state(volt_r), self._state(volt_tau), composition.to(r.dtype)], dim=-1)
        return self.mlp(self.inp(feats) + self.electrode(electrode))


class TwoStreamBackbone(nn.Module):
    """(x_r, static, r, tau, s(r), s(tau), context, electrode) -> (u_solvent, u_sei, u_baseline) [B, W].

    Spectra in z-units; r, tau in [0, 1]; s = protocol state [B, n_state] (column 0: V; a [B]
    voltage is accepted when the config has no history features); electrode int64 [B]. u_baseline is the
    velocity of the smooth baseline nuisance of SPEC.md 4.2 (x = y + z + baseline): a combination
    of the first `baseline_basis` Legendre polynomials over the grid, read from the pooled tokens of
    both streams (zeros when baseline_basis = 0). It keeps baseline drift out of the two streams.
    """

    def __init__(self, cfg: ABCCConfig):
        super().__init__()
        self.cfg = cfg
        P, d = cfg.patch, cfg.dim
        self.n_tokens = cfg.W // P
        self.embed_solvent = nn.Linear(2 * P, d)
        self.embed_sei = nn.Linear(2 * P, d)
        self.pos_solvent = nn.Parameter(torch.randn(self.n_tokens, d) * 0.02)
        self.pos_sei = nn.Parameter(torch.randn(self.n_tokens, d) * 0.02)
        self.cond = ConditionEmbedding(cfg)
        self.cond_token_solvent = nn.Linear(d, d)
        self.cond_token_sei = nn.Linear(d, d)
        self.blocks = nn.ModuleList(JointBlock(d, cfg.heads, cfg.mlp_ratio, cfg.attention_backend)
                                    for _ in range(cfg.depth))
        self.head_solvent = StreamHead(d, P)
        self.head_sei = TemplateHead(d, sei_template_matrix(cfg)) if cfg.sei_basis == "templates" else StreamHead(d, P)
        nb = cfg.baseline_basis
        if nb > 0:
            self.head_baseline = nn.Linear(3 * d, nb)
            nn.init.zeros_(self.head_baseline.weight)
            nn.init.zeros_(self.head_baseline.bias)
            grid = torch.linspace(-1.0, 1.0, cfg.W, dtype=torch.float64)
            polys = [torch.ones_like(grid), grid]
            for n in range(1, nb - 1):  # Legendre recurrence
                polys.append(((2 * n + 1) * grid * polys[-1] - n * polys[-2]) / (n + 1))
            self.register_buffer("baseline_basis", torch.stack(polys[:nb]).float(), persistent=False)
        else:
            self.head_baseline = None

    def condition(self, r, tau, volt_r, volt_tau, composition, electrode):
        return self.cond(r, tau, volt_r, volt_tau, composition, electrode)

    def forward(self, x, static, r, tau, volt_r, volt_tau, composition, electrode):
        P = self.cfg.patch
        c = self.cond(r, tau, volt_r, volt_tau, composition, electrode)          # [B, d]
        xp = rearrange(x, "b (n p) -> b n p", p=P)
        sp = rearrange(static, "b (n p) -> b n p", p=P)
        a = self.embed_solvent(torch.cat([xp, sp], dim=-1)) + self.pos_solvent
        b = self.embed_sei(torch.cat([xp - sp, sp], dim=-1)) + self.pos_sei
        a = torch.cat([self.cond_token_solvent(c)[:, None], a], dim=1)         # [B, N + 1, d]
        b = torch.cat([self.cond_token_sei(c)[:, None], b], dim=1)
        for blk in self.blocks:
            a, b = blk(a, b, c)
        u_solvent = self.head_solvent(a[:, 1:], c)                  # [B, W]
        u_sei = self.head_sei(b[:, 1:], c)                          # [B, W]: patches or templates
        if self.head_baseline is None:
            return u_solvent, u_sei, torch.zeros_like(u_solvent)
        pooled = torch.cat([a[:, 1:].mean(1), b[:, 1:].mean(1), c], dim=-1)
        u_baseline = self.head_baseline(pooled) @ self.baseline_basis.to(pooled.dtype)
        return u_solvent, u_sei, u_baseline
