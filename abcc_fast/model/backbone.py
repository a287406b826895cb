"""The two-stream backbone of ABCC: encode a source state once, decode every target time.

A network query of the average velocity u(x_r, r, tau) splits in two parts:

Encoder (once per sample and source time r), an MM-DiT over spectral patches (W wavenumbers,
patch P, N = W / P tokens per stream):
  solvent stream  patch n of [x_r, static]           -> Linear(2P, d) + position  (N tokens)
  SEI stream      patch n of [x_r - static, static]  -> Linear(2P, d) + position  (N tokens)
  + one condition token per stream, from the source condition
  c_r = MLP([fourier(r), s(r), context]) + electrode embedding.
  Blocks (adaLN-Zero): each stream has its own modulation, QKV, output and MLP weights; one softmax
  over the concatenated tokens of both streams (``abcc_fast.ops.two_stream_attention``).
Decoder (once per target time tau, all taus of a source in one batched call):
  e = MLP([fourier(tau - r), relaxation features of the elapsed physical time, s(tau),
  s(tau) - s(r)]) + c_r; each stream's tokens are FiLM-modulated by e and pass a small per-token
  MLP with a per-patch output projection (solvent; plus a learned low-rank basis over the whole
  grid) or a combination of the film products' band templates (SEI). A Legendre baseline
  nuisance is read from the pooled features of both streams.
Preconditioning: the decoder predicts a bounded displacement D and u = D / (tau - r + delta), so
the displacement (tau - r) u stays O(D) from the first frame interval to the last (the average
velocity itself spans orders of magnitude there).

Every input is smooth in r, so d/dr of u (the MeanFlow identity's JVP) is well defined; it runs
once per (sample, r) through the encoder and once through the decoder for all taus.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..data import chemistry as chem
from ..data.templates import film_products, product_templates, reachable, visible_products
from ..ops import two_stream_attention
from .config import ABCCConfig
from .solvent_rows import (KindCoefficients, need_model_grid, solvent_template_matrix,  # noqa: F401
                           solvent_template_owners, solvent_templates)


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
    return _sei_templates(cfg)[0]


def sei_template_products(cfg: ABCCConfig) -> list:
    """The film product of each row of ``sei_template_matrix`` (its name)."""
    return _sei_templates(cfg)[1]


def _sei_templates(cfg: ABCCConfig):
    need_model_grid(cfg, "sei_basis='templates'", "the SEI product templates", "sei_basis='free'")
    names = visible_products(cfg.wavenumber, film_products())      # products with a band on this grid
    tpl = product_templates(cfg.wavenumber, names)
    m = torch.as_tensor(tpl.matrix, dtype=torch.float64)
    return m / m.abs().amax(dim=1, keepdim=True).clamp_min(1e-12), [names[i] for i in tpl.owner]


class Reachability:
    """What each cell's chemistry allows, from the components it holds: the components present after
    the simulator's reactions have run (a reaction can produce a component, e.g. transesterification
    of EMC gives DMC and DEC) and the film products those reactions can form
    (``data.templates.reachable``). ``__call__(present [B, C] bool)`` -> (components [B, C] bool,
    products [B, P] bool over ``products``); one closure per distinct composition pattern, cached."""

    def __init__(self, components, products):
        self.components, self.products = list(components), list(products)
        self._cache: dict = {}

    def _one(self, key: tuple) -> tuple:
        if key not in self._cache:
            names = [n for n, on in zip(self.components, key) if on]
            comps, prods = reachable([n for n in names if n in chem.COMPONENT_NAMES])
            reach = set(comps) | set(names)
            self._cache[key] = ([n in reach for n in self.components], [p in prods for p in self.products])
        return self._cache[key]

    def __call__(self, present: torch.Tensor):
        rows = [self._one(tuple(bool(v) for v in row)) for row in present.tolist()]
        comps = torch.tensor([r[0] for r in rows], dtype=torch.bool, device=present.device)
        prods = torch.tensor([r[1] for r in rows], dtype=torch.bool, device=present.device)
        return comps.reshape(len(rows), len(self.components)), prods.reshape(len(rows), len(self.products))


def context_size(cfg: ABCCConfig) -> int:
    """Width of the per-sample context vector: composition (+ the scaled log protocol duration)
    (+ the voltage profile resampled to ``profile_points``)."""
    comp = cfg.template_dim if cfg.composition_encoding == "templates" else cfg.n_components
    return comp + (1 if cfg.use_duration else 0) + cfg.profile_points


def state_size(cfg: ABCCConfig) -> int:
    """Width of the protocol state at one time: V (+ the current proxy dV/dt), the exposure below
    each history level (+ the turnaround phase, 2 columns + its relaxations) (+ elapsed time). See
    ``ABCC.protocol_state``."""
    turn = 2 + len(cfg.turn_relax_hours) if cfg.turnaround else 0
    return (1 + (1 if cfg.current_proxy else 0) + len(cfg.history_levels) + turn
            + (1 if cfg.history_elapsed else 0))


def relaxation_features(dt_hours: torch.Tensor, time_constants: list) -> torch.Tensor:
    """[..., J] 1 - exp(-dt / t_j) for the time constants t_j (hours): first-order relaxations
    (salt polarisation, double-layer charging) are linear in these; smooth in dt (and so in r)."""
    if not time_constants:
        return dt_hours.new_zeros(*dt_hours.shape, 0)
    tc = torch.tensor(time_constants, device=dt_hours.device, dtype=dt_hours.dtype)
    return -torch.expm1(-dt_hours.clamp_min(0)[..., None] / tc)


class _StateScaler(nn.Module):
    """Scales a protocol state [..., n_state] (column 0: V, standardised; the rest as built)."""

    def __init__(self, cfg: ABCCConfig):
        super().__init__()
        self.n_state = state_size(cfg)
        self.volt_mean, self.volt_std = cfg.volt_mean, cfg.volt_std

    def forward(self, s):
        if s.dim() == 1:
            s = s[:, None]
        if s.shape[-1] != self.n_state:
            raise ValueError(f"protocol state has {s.shape[-1]} columns, the model expects {self.n_state} "
                             "(V, dV/dt, history levels, elapsed): build it with ABCC.protocol_state")
        return torch.cat([(s[..., :1] - self.volt_mean) / self.volt_std, s[..., 1:]], dim=-1)


class SourceCondition(nn.Module):
    """c_r = MLP([fourier(r), s(r), context]) + electrode embedding -> [B, d]."""

    def __init__(self, cfg: ABCCConfig):
        super().__init__()
        self.n_freq = cfg.n_freq
        self.scale = _StateScaler(cfg)
        self.electrode = nn.Embedding(cfg.n_electrodes, cfg.dim)
        nn.init.zeros_(self.electrode.weight)   # an electrode never seen in training adds nothing (not noise)
        self.inp = nn.Linear(2 * cfg.n_freq + state_size(cfg) + context_size(cfg), cfg.dim)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))

    def forward(self, r, state_r, context, electrode):
        feats = torch.cat([fourier_features(r, self.n_freq), self.scale(state_r), context.to(r.dtype)], dim=-1)
        return self.mlp(self.inp(feats) + self.electrode(electrode))


class QueryEmbedding(nn.Module):
    """e(r, tau) = MLP([fourier(tau - r), relaxation(t(tau) - t(r)), s(tau), s(tau) - s(r)]) + c_r
    -> [B, Q, d] for Q target times per source."""

    def __init__(self, cfg: ABCCConfig):
        super().__init__()
        self.n_freq = cfg.n_freq
        self.relax = list(cfg.relax_hours) if cfg.history_elapsed else []
        self.scale = _StateScaler(cfg)
        n = state_size(cfg)
        self.inp = nn.Linear(2 * cfg.n_freq + len(self.relax) + 2 * n, cfg.dim)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))

    def forward(self, c, r, tau, state_r, state_tau):
        """c [B, d], r [B], tau [B, Q], state_r [B, n], state_tau [B, Q, n] -> [B, Q, d]."""
        B, Q = tau.shape
        s_r, s_tau = self.scale(state_r)[:, None], self.scale(state_tau)
        parts = [fourier_features((tau - r[:, None]).reshape(-1), self.n_freq).view(B, Q, -1)]
        if self.relax:      # the last state column is log(1 + elapsed hours)
            dt = torch.expm1(state_tau[..., -1]) - torch.expm1(state_r[:, None, -1])
            parts.append(relaxation_features(dt, self.relax))
        parts += [s_tau, s_tau - s_r]
        return self.mlp(self.inp(torch.cat(parts, dim=-1))) + c[:, None]


class FiLMTokens(nn.Module):
    """A stream's decoder features: a per-token linear map to width H (once per source), FiLM by
    the query embedding in that width (per query), GELU. tokens [B, N, d], e [B, Q, d] ->
    [B, Q, N, H]. The modulation is zero-initialised (no tau dependence at the start)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = PlainLayerNorm(1e-6)
        self.fc = nn.Linear(dim, hidden)
        self.modulation = nn.Linear(dim, 2 * hidden)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def readout(self, tokens, e, n_tokens: int = 0):
        """(coefficient features, pooled features [B, Q, H]): with n_tokens = 0 both are the mean of
        the FiLM features over tokens; else the coefficient features are all tokens' features side
        by side [B, Q, N H]."""
        h = self.hidden(tokens, e)                                                  # [B, Q, N, H]
        pooled = h.mean(2)
        return (h.flatten(2) if n_tokens else pooled), pooled

    def hidden(self, tokens, e):
        shift, scale = self.modulation(F.silu(e)).chunk(2, dim=-1)                  # [B, Q, H]
        h = self.fc(self.norm(tokens))                                              # [B, N, H], once per source
        return F.gelu(h[:, None] * (1 + scale[:, :, None]) + shift[:, :, None], approximate="tanh")  # [B, Q, N, H]


class TokenDecoder(FiLMTokens):
    """A stream's displacement for every query: the FiLM features, a per-patch output projection
    [N, H, P] (zero-initialised: the displacement starts at 0) and, with ``basis_rank`` K > 0, a
    learned basis [K, W] weighted by the pooled features (whole-spectrum capacity: the frame changes
    are close to low rank). tokens [B, N, d], e [B, Q, d] -> [B, Q, W] and the pooled features
    [B, Q, H]."""

    def __init__(self, dim: int, n_tokens: int, patch: int, hidden: int, basis_rank: int = 0):
        super().__init__(dim, hidden)
        self.proj_w = nn.Parameter(torch.zeros(n_tokens, hidden, patch))
        self.proj_b = nn.Parameter(torch.zeros(n_tokens, patch))
        self.basis_coef = nn.Linear(hidden, basis_rank) if basis_rank > 0 else None
        if self.basis_coef is not None:
            nn.init.zeros_(self.basis_coef.weight)
            nn.init.zeros_(self.basis_coef.bias)
            self.basis = nn.Parameter(torch.randn(basis_rank, n_tokens * patch) * 0.02)

    def forward(self, tokens, e):
        h = self.hidden(tokens, e)
        out = (torch.einsum("bqnh,nhp->bqnp", h, self.proj_w) + self.proj_b).flatten(2)
        pooled = h.mean(2)
        if self.basis_coef is not None:
            out = out + self.basis_coef(pooled) @ self.basis
        return out, pooled


class SolventBasisDecoder(FiLMTokens):
    """Solvent displacement from the electrolyte's physics: a combination of its band templates
    (``solvent_template_matrix``, a persistent buffer [E, W]) plus the static spectrum times nu'
    and nu'^2 (nu' the grid scaled to [-1, 1]; each row scaled to a peak of 1), plus an optional
    learned rank-K residual basis (K = ``basis_rank``). The film displaces electrolyte from the
    probed depth by the factor exp(-2 L / d_p(nu)) with d_p ~ 1 / nu: to second order in L that is
    the static (solvent) spectrum times a quadratic in nu (its constant term with ``film_constant``:
    then the static spectrum itself is a row too). With ``clean_static`` >= 0 one more row
    holds the static spectrum's part outside the span of the templates and that many Legendre
    polynomials: its measurement noise and atmosphere, which the operando frames do not share, so the
    prediction can drop them. Coefficients come from the FiLM features (Linear(H, E + F + K),
    zero-initialised; F = 2 to 4 rows from the static spectrum). Unlike ``TokenDecoder`` it cannot
    paint bands the electrolyte does not have (except through the residual), so SEI growth is left
    to the SEI stream."""

    def __init__(self, dim: int, hidden: int, templates: torch.Tensor, wavenumber, basis_rank: int,
                 norm_mean: float, norm_std: float, n_tokens: int = 0, owners: Optional[torch.Tensor] = None,
                 film_constant: bool = False, clean_static: int = -1, shift_rows: bool = False,
                 kind_groups: Optional[torch.Tensor] = None, kind_gain: float = 1.0):
        super().__init__(dim, hidden)
        self.rank, self.n_tokens = basis_rank, n_tokens
        self.norm_mean, self.norm_std = norm_mean, norm_std
        n_powers = 3 if film_constant else 2
        self.n_film = n_powers + (clean_static >= 0)
        # an orthonormal basis of the span the static spectrum is cleaned against (rebuilt from the
        # config on load)
        self.register_buffer("clean_span", None, persistent=False)
        if clean_static >= 0:
            span = torch.cat([templates.double(), legendre_basis(templates.shape[1], clean_static)])
            self.clean_span = orthonormal_span(span).float()
        if shift_rows:          # d/dnu of every template after them (the clean span stays the templates')
            d = torch.gradient(templates.double(), dim=1)[0]
            templates = torch.cat([templates, (d / d.abs().amax(1, keepdim=True).clamp_min(1e-12)).to(templates.dtype)])
            owners = None if owners is None else torch.cat([owners, owners])
        self.n_templates = templates.shape[0]
        self.coef = nn.Linear(hidden * max(n_tokens, 1), self.n_templates + self.n_film + basis_rank)
        self.kinds = None if kind_groups is None else KindCoefficients(      # solvent_kind_coef
            hidden * max(n_tokens, 1), kind_groups, legendre_basis(templates.shape[1], 4), norm_mean, norm_std,
            kind_gain)
        nn.init.zeros_(self.coef.weight)
        nn.init.zeros_(self.coef.bias)
        self.register_buffer("solvent_templates", templates.float())
        wn = torch.as_tensor(wavenumber, dtype=torch.float64)
        nu = 2 * (wn - wn.min()) / (wn.max() - wn.min()).clamp_min(1e-12) - 1
        powers = [torch.ones_like(nu), nu, nu * nu][3 - n_powers:]
        self.register_buffer("film_weights", torch.stack(powers).float(), persistent=False)   # [2 or 3, W]
        if basis_rank > 0:
            self.basis = nn.Parameter(torch.randn(basis_rank, templates.shape[1]) * 0.02)
        self.register_buffer("sei_span", None, persistent=False)
        # the component owning each template row (-1: always usable); rebuilt from the config on load
        self.register_buffer("owners", owners if owners is not None else torch.full((self.n_templates,), -1),
                             persistent=False)

    def row_mask(self, present: torch.Tensor) -> torch.Tensor:
        """present [B, C] bool (the components in each cell) -> [B, E] 1.0 for the template rows the
        cell can use: those of its components and the soluble products, 0.0 for absent components'."""
        own = self.owners
        usable = present[:, own.clamp_min(0)] | (own < 0)[None]
        return usable.to(torch.float32)

    def film_rows(self, static):
        """static [B, W] z-units -> [B, F, W]: the raw static spectrum times (1 with ``film_constant``)
        nu', nu'^2, unit peak, and with ``clean_span`` the static spectrum's part outside that span
        (z-units)."""
        raw = static * self.norm_std + self.norm_mean
        rows = raw[:, None] * self.film_weights.to(raw.dtype)
        rows = rows / rows.abs().amax(dim=-1, keepdim=True).clamp_min(1e-6)
        if self.clean_span is None:
            return rows
        q = self.clean_span.to(static.dtype)
        outside = static - (static @ q) @ q.T
        return torch.cat([rows, outside[:, None]], dim=1)

    def forward(self, tokens, e, static, rows: Optional[torch.Tensor] = None,
                kind_amounts: Optional[torch.Tensor] = None):
        """rows [B, E] (``row_mask``) or None: with it, only the rows a cell can use take part
        (``ABCCConfig.solvent_present_only``); kind_amounts [B, E] (``KindCoefficients.row_amounts``,
        needed with ``solvent_kind_coef``)."""
        feats, pooled = self.readout(tokens, e, self.n_tokens)
        coef = self.coef(feats)
        E = self.n_templates
        amounts = coef[..., :E]
        if rows is not None:
            amounts = amounts * rows.to(amounts.dtype)[:, None]
        if self.kinds is not None:
            amounts = amounts + self.kinds(feats, kind_amounts)
        out = amounts @ self.solvent_templates.to(pooled.dtype)
        F = self.n_film
        out = out + torch.einsum("bqk,bkw->bqw", coef[..., E:E + F], self.film_rows(static).to(pooled.dtype))
        if self.rank > 0:
            basis = self.basis
            if self.sei_span is not None:      # off the SEI templates' span (residual_off_sei)
                basis = basis - (basis @ self.sei_span) @ self.sei_span.T
            out = out + coef[..., E + F:] @ basis.to(pooled.dtype)
        return out, pooled

    def exclude_span(self, rows: torch.Tensor) -> None:
        """Project the learned residual off the span of rows [M, W] (an orthonormal basis of it is a
        non-persistent buffer, rebuilt from the config on load)."""
        self.sei_span = orthonormal_span(rows).float()


class TemplateDecoder(FiLMTokens):
    """SEI displacement as a combination of product templates: the FiLM features pooled over the
    stream's tokens, Linear(H, M) (zero-initialised) -> coefficients [B, Q, M] @ templates [M, W].
    The templates (``sei_templates``, a persistent buffer: saved with the weights) are the film
    products' spectra along their aging states on the model grid, each scaled to a peak of 1 z-unit."""

    def __init__(self, dim: int, hidden: int, templates: torch.Tensor, n_tokens: int = 0,
                 owners: Optional[torch.Tensor] = None):
        super().__init__(dim, hidden)
        self.n_tokens = n_tokens
        self.coef = nn.Linear(hidden * max(n_tokens, 1), templates.shape[0])
        nn.init.zeros_(self.coef.weight)
        nn.init.zeros_(self.coef.bias)
        self.register_buffer("sei_templates", templates.float())
        # the product (index into Reachability.products) of each row; rebuilt from the config on load
        self.register_buffer("owners", owners if owners is not None else torch.zeros(templates.shape[0], dtype=torch.long),
                             persistent=False)

    def row_mask(self, products: torch.Tensor) -> torch.Tensor:
        """products [B, P] bool (what each cell's reactions can form) -> [B, M] 1.0 for those rows."""
        return products[:, self.owners].to(torch.float32)

    def forward(self, tokens, e, rows: Optional[torch.Tensor] = None):
        """rows [B, M] (``row_mask``) or None: with it, only the products a cell can form take part
        (``ABCCConfig.sei_reachable_only``)."""
        feats, pooled = self.readout(tokens, e, self.n_tokens)
        coef = self.coef(feats)
        if rows is not None:
            coef = coef * rows.to(coef.dtype)[:, None]
        return coef @ self.sei_templates.to(pooled.dtype), pooled


def orthonormal_span(rows: torch.Tensor, rtol: float = 1e-8) -> torch.Tensor:
    """rows [M, W] -> [W, K] an orthonormal basis (float64) of their span; K <= M drops rows that
    are dependent to ``rtol`` (QR's diagonal)."""
    q, r = torch.linalg.qr(rows.double().T)
    keep = r.diagonal().abs() > rtol * r.diagonal().abs().max()
    return q[:, keep]


def legendre_basis(W: int, n: int) -> torch.Tensor:
    """[n, W] Legendre polynomials P_0..P_{n-1} on W points over [-1, 1]."""
    grid = torch.linspace(-1.0, 1.0, W, dtype=torch.float64)
    polys = [torch.ones_like(grid), grid]
    for k in range(1, n - 1):  # Legendre recurrence
        polys.append(((2 * k + 1) * grid * polys[-1] - k * polys[-2]) / (k + 1))
    return torch.stack(polys[:n]).float()


class Encoding:
    """What the encoder leaves for the decoder: both streams' tokens [B, N, d], the source
    condition c_r [B, d], r [B], s(r) [B, n_state], the static spectrum [B, W] (z-units) and the
    template rows each cell's chemistry allows in the solvent and SEI heads ([B, E], [B, M], or None:
    every row)."""

    def __init__(self, solvent, sei, c, r, state_r, static, solvent_rows=None, sei_rows=None, kind_amounts=None):
        self.solvent, self.sei, self.c, self.r, self.state_r = solvent, sei, c, r, state_r
        self.static, self.solvent_rows, self.sei_rows = static, solvent_rows, sei_rows
        self.kind_amounts = kind_amounts        # [B, E] solvent_kind_coef's static amounts, or None


class TwoStreamBackbone(nn.Module):
    """encode(x_r, static, r, s(r), context, electrode) once per source; decode(enc, tau [B, Q],
    s(tau) [B, Q, n_state]) -> (u_solvent, u_sei, u_baseline) [B, Q, W] for every target time.

    Spectra in z-units; r, tau in [0, 1]; s = protocol state (column 0: V; see
    ``ABCC.protocol_state``); electrode int64 [B]. u_baseline is the velocity of a smooth baseline
    nuisance outside both streams (x = y + z + baseline): a combination of the first
    ``baseline_basis`` Legendre polynomials over the grid (zeros when baseline_basis = 0).
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
        self.cond = SourceCondition(cfg)
        self.query = QueryEmbedding(cfg)
        self.cond_token_solvent = nn.Linear(d, d)
        self.cond_token_sei = nn.Linear(d, d)
        self.blocks = nn.ModuleList(JointBlock(d, cfg.heads, cfg.mlp_ratio, cfg.attention_backend)
                                    for _ in range(cfg.depth))
        H = cfg.decoder_hidden
        flat = self.n_tokens if cfg.coef_readout == "flat" else 0
        if cfg.solvent_basis == "physics":
            solvent_tpl, solvent_owners, groups = solvent_templates(cfg)
            self.head_solvent = SolventBasisDecoder(d, H, solvent_tpl, cfg.wavenumber, cfg.basis_rank, cfg.norm_mean,
                                                    cfg.norm_std, flat, solvent_owners, cfg.film_constant,
                                                    cfg.baseline_basis if cfg.clean_static else -1, cfg.solvent_shift_rows,
                                                    groups if cfg.solvent_kind_coef else None, cfg.solvent_kind_gain)
        else:
            self.head_solvent = TokenDecoder(d, self.n_tokens, P, H, cfg.basis_rank)
        self.reach = None
        if cfg.sei_basis == "templates":
            sei_tpl, sei_names = _sei_templates(cfg)
            self.reach = Reachability(cfg.components, list(dict.fromkeys(sei_names)))
            owners = torch.tensor([self.reach.products.index(n) for n in sei_names])
            self.head_sei = TemplateDecoder(d, H, sei_tpl, flat, owners)
            if cfg.residual_off_sei:
                self.head_solvent.exclude_span(sei_tpl)
        else:
            self.head_sei = TokenDecoder(d, self.n_tokens, P, H)
        if self.reach is None and cfg.solvent_present_only:
            self.reach = Reachability(cfg.components, [])
        if (cfg.solvent_present_only or cfg.sei_reachable_only) and len(cfg.components) != cfg.n_components:
            raise ValueError("ABCCConfig: solvent_present_only / sei_reachable_only need the component names "
                             f"(config.components, got {len(cfg.components)} for n_components={cfg.n_components}): "
                             "build the config with ABCCConfig.from_dataset(ds, ...)")
        nb = cfg.baseline_basis
        if nb > 0:
            self.head_baseline = nn.Linear(2 * H + d, nb)
            nn.init.zeros_(self.head_baseline.weight)
            nn.init.zeros_(self.head_baseline.bias)
            self.register_buffer("baseline_basis", legendre_basis(cfg.W, nb), persistent=False)
        else:
            self.head_baseline = None

    def encode(self, x, static, r, state_r, context, electrode) -> Encoding:
        P = self.cfg.patch
        c = self.cond(r, state_r, context, electrode)                             # [B, d]
        xp = rearrange(x, "b (n p) -> b n p", p=P)
        sp = rearrange(static, "b (n p) -> b n p", p=P)
        a = self.embed_solvent(torch.cat([xp, sp], dim=-1)) + self.pos_solvent
        b = self.embed_sei(torch.cat([xp - sp, sp], dim=-1)) + self.pos_sei
        a = torch.cat([self.cond_token_solvent(c)[:, None], a], dim=1)         # [B, N + 1, d]
        b = torch.cat([self.cond_token_sei(c)[:, None], b], dim=1)
        for blk in self.blocks:
            a, b = blk(a, b, c)
        solvent_rows, sei_rows = self._row_masks(context)
        return Encoding(a[:, 1:], b[:, 1:], c, r, state_r, static, solvent_rows, sei_rows,
                        self._kind_amounts(static, solvent_rows, context))

    def _kind_amounts(self, static, rows, context):
        """``solvent_kind_coef``: each template row's static amount [B, E], fitted once per source (per
        unit mole fraction with ``solvent_kind_scale="per_fraction"``); None without it."""
        kinds = getattr(self.head_solvent, "kinds", None)
        if kinds is None:
            return None
        fractions = None
        if self.cfg.solvent_kind_scale == "per_fraction":
            own = self.head_solvent.owners
            fractions = context[:, :self.cfg.n_components][:, own.clamp_min(0)] * (own >= 0).to(context.dtype)
        return kinds.row_amounts(static, self.head_solvent.solvent_templates, rows, fractions)

    def _row_masks(self, context):
        """The template rows each cell's chemistry allows: (solvent [B, E] or None, SEI [B, M] or None),
        from the components it holds (the composition columns of the context) and what its reactions
        reach; None where ``solvent_present_only`` / ``sei_reachable_only`` is off (or the head has no
        template rows)."""
        cfg = self.cfg
        use_solvent = cfg.solvent_present_only and isinstance(self.head_solvent, SolventBasisDecoder)
        use_sei = cfg.sei_reachable_only and isinstance(self.head_sei, TemplateDecoder)
        if not (use_solvent or use_sei):
            return None, None
        comps, prods = self.reach(context[:, :cfg.n_components] > 0)
        return (self.head_solvent.row_mask(comps) if use_solvent else None,
                self.head_sei.row_mask(prods) if use_sei else None)

    def decode(self, enc: Encoding, tau, state_tau):
        """tau [B, Q], state_tau [B, Q, n_state] -> average velocities (u_solvent, u_sei,
        u_baseline) [B, Q, W] over [r, tau] (displacement / (tau - r + delta))."""
        e = self.query(enc.c, enc.r, tau, enc.state_r, state_tau)                 # [B, Q, d]
        if isinstance(self.head_solvent, SolventBasisDecoder):
            d_solvent, h_solvent = self.head_solvent(enc.solvent, e, enc.static, enc.solvent_rows, enc.kind_amounts)
        else:
            d_solvent, h_solvent = self.head_solvent(enc.solvent, e)
        if isinstance(self.head_sei, TemplateDecoder) and (self.cfg.streams == 1 or self.cfg.sei_from_extents):
            # the SEI velocity is 0 or comes from the extents: only the pooled features (the
            # baseline head reads them) are needed, not the coefficients
            h_sei = self.head_sei.readout(enc.sei, e, self.head_sei.n_tokens)[1]
            d_sei = torch.zeros_like(d_solvent)
        elif isinstance(self.head_sei, TemplateDecoder):
            d_sei, h_sei = self.head_sei(enc.sei, e, enc.sei_rows)
        else:
            d_sei, h_sei = self.head_sei(enc.sei, e)
        inv = 1.0 / (tau - enc.r[:, None] + self.cfg.delta_tau)[..., None]        # [B, Q, 1]
        if self.head_baseline is None:
            d_base = torch.zeros_like(d_solvent)
        else:
            d_base = self.head_baseline(torch.cat([h_solvent, h_sei, e], dim=-1)) @ self.baseline_basis.to(e.dtype)
        return d_solvent * inv, d_sei * inv, d_base * inv

    def forward(self, x, static, r, tau, state_r, state_tau, context, electrode):
        """One target time per source: tau [B], state_tau [B, n_state] -> three [B, W]."""
        enc = self.encode(x, static, r, state_r, context, electrode)
        if state_tau.dim() == 1:
            state_tau = state_tau[:, None]
        us, uz, ub = self.decode(enc, tau[:, None], state_tau[:, None])
        return us[:, 0], uz[:, 0], ub[:, 0]
