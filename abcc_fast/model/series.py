"""Protocol series on the frame grid tau_k = k / (T - 1): interpolation, time derivatives, the
low-rank denoising of frames, and the protocol features (duration, current proxy) the models read."""
from __future__ import annotations

from typing import Optional, Sequence

import torch


def time_derivative(series: torch.Tensor) -> torch.Tensor:
    """d/dtau of series sampled at tau_k = k / (T - 1) along dim 1: central differences, one-sided
    at the ends. series [B, T, ...] -> [B, T, ...]."""
    T = series.shape[1]
    h = 1.0 / (T - 1)
    out = torch.empty_like(series)
    out[:, 1:-1] = (series[:, 2:] - series[:, :-2]) / (2 * h)
    out[:, 0] = (series[:, 1] - series[:, 0]) / h
    out[:, -1] = (series[:, -1] - series[:, -2]) / h
    return out


def interpolate(series: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of series [B, T, ...] (at tau_k = k / (T - 1)) at t [B, M] -> [B, M, ...]."""
    T = series.shape[1]
    pos = t.clamp(0, 1) * (T - 1)
    i0 = pos.floor().long().clamp(0, T - 2)
    w = (pos - i0.to(pos.dtype))
    extra = series.shape[2:]
    idx0 = i0.view(*i0.shape, *([1] * len(extra))).expand(*i0.shape, *extra)
    a = torch.gather(series, 1, idx0)
    b = torch.gather(series, 1, idx0 + 1)
    w = w.view(*w.shape, *([1] * len(extra))).to(series.dtype)
    return a + w * (b - a)


@torch.no_grad()
def lowrank_frames(frames: torch.Tensor, static: torch.Tensor, rank: int) -> torch.Tensor:
    """frames [B, T, W] with their changes from static projected on the batch's top ``rank`` right
    singular vectors: the frame noise is white over (frame, wavenumber), the changes are close to low
    rank, so the projection keeps the changes and drops most of the noise."""
    B, T, W = frames.shape
    change = (frames - static[:, None]).reshape(B * T, W).double()
    k = min(int(rank), min(change.shape))
    if change.shape[0] <= W:      # left singular vectors from the smaller Gram matrix: U_k U_k^T change
        _, vecs = torch.linalg.eigh(change @ change.T)
        u = vecs[:, -k:]
        proj = u @ (u.T @ change)
    else:
        _, vecs = torch.linalg.eigh(change.T @ change)
        v = vecs[:, -k:]
        proj = (change @ v) @ v.T
    return static[:, None] + proj.to(frames.dtype).view(B, T, W)


def duration_feature(time_s: Optional[torch.Tensor], like: torch.Tensor, log_mean: float, log_std: float) -> torch.Tensor:
    """[B, 1] scaled log protocol duration (log(time_s[:, -1] - time_s[:, 0]) - log_mean) / log_std,
    on ``like``'s device and dtype; zeros (the training split's typical duration) without time_s."""
    if time_s is None:
        return like.new_zeros(like.shape[0], 1)
    t = time_s.to(like.device, torch.float64)
    log_dur = (t[:, -1] - t[:, 0]).clamp_min(1.0).log()
    return ((log_dur - log_mean) / log_std).to(like.dtype)[:, None]


def current_proxy(voltage: torch.Tensor, t_h: torch.Tensor, scale_v_per_h: float = 0.1) -> torch.Tensor:
    """asinh(dV/dt / scale) [B, T]: dV/dt (V per hour) by central differences in physical time
    (one-sided at the ends), smoothed with a [1, 2, 1] / 4 kernel along the frames."""
    if voltage.shape[1] < 2:
        return torch.zeros_like(voltage)
    dv = torch.gradient(voltage, dim=1)[0]
    dt = torch.gradient(t_h, dim=1)[0].clamp_min(1e-6)
    rate = dv / dt
    padded = torch.cat([rate[:, :1], rate, rate[:, -1:]], dim=1)
    smooth = 0.25 * padded[:, :-2] + 0.5 * padded[:, 1:-1] + 0.25 * padded[:, 2:]
    return torch.asinh(smooth / scale_v_per_h)


def exposure_below(voltage: torch.Tensor, t_h: torch.Tensor, levels: list, width: float) -> torch.Tensor:
    """[B, T, L] log(1 + hours spent below each potential level E_j) up to every frame: the
    integral of sigmoid((E_j - V) / width) over time (trapezoid over frames)."""
    lv = torch.tensor(levels, device=voltage.device, dtype=voltage.dtype)
    gate = torch.sigmoid((lv - voltage[..., None]) / width)                           # [B, T, L]
    inc = 0.5 * (gate[:, 1:] + gate[:, :-1]) * torch.diff(t_h, dim=1)[..., None]
    return torch.cat([torch.zeros_like(gate[:, :1]), inc.cumsum(dim=1)], dim=1).log1p()


def turnaround_phase(voltage: torch.Tensor, t_h: torch.Tensor, margin_v: float = 0.03,
                     relax_hours: Sequence[float] = ()) -> torch.Tensor:
    """[B, T, 2 + J] where each frame stands against the protocol's turnaround from lithiation to
    delithiation: sigmoid((t - t_turn) / w) (w: half the mean frame interval) and
    asinh((t - t_turn) / 1 h), then for each time constant t_j in ``relax_hours`` (hours) the
    first-order relaxation since the turn, sigmoid((t - t_turn) / w) (1 - exp(-max(t - t_turn, 0) / t_j)):
    what changes with the current's sign (the salt polarisation) relaxes to its new level with a
    time constant of minutes, which a frame interval of tens of minutes may or may not resolve.
    t_turn is the last frame whose potential lies within ``margin_v`` of
    the sample's lowest; the last of them, not the lowest itself, because on a plateau the lowest
    frame can sit anywhere on it. A dip more than ``margin_v`` below the rest (a deep nucleation dip
    caught by a frame) is taken as the turn.
    A per-sample constant, so the columns are smooth in time. The sign of the current follows it
    (negative before, positive after) where dV/dt does not: on a potential plateau dV/dt is ~0."""
    near = voltage <= voltage.amin(dim=1, keepdim=True) + margin_v
    t_turn = torch.where(near, t_h, torch.full_like(t_h, -float("inf"))).amax(dim=1, keepdim=True)
    since = t_h - t_turn
    width = (0.5 * (t_h[:, -1:] - t_h[:, :1]) / max(voltage.shape[1] - 1, 1)).clamp_min(1e-6)
    step = torch.sigmoid(since / width)
    cols = [step, torch.asinh(since)]
    cols += [step * -torch.expm1(-since.clamp_min(0) / float(tj)) for tj in relax_hours]
    return torch.stack(cols, dim=-1)


def chord_velocity(z_tau: torch.Tensor, z_r: torch.Tensor, tau: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The average velocity (z(tau) - z(r)) / (tau - r) [B, Q, W] of a stream known at both ends
    (z_tau [B, Q, W], z_r [B, W], tau [B, Q], r [B]); 0 where tau = r."""
    dt = (tau - r[:, None])[..., None]
    safe = torch.where(dt.abs() > 1e-9, dt, torch.ones_like(dt))
    return torch.where(dt.abs() > 1e-9, (z_tau - z_r[:, None]) / safe, torch.zeros_like(z_tau))
