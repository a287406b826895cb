"""Generative baselines: noise -> operando frames, conditioned on the static spectrum and conditions.

The data is the change from the static spectrum, x = (frames_z - static_z) / residual_scale [T, W]
(residual_scale: its std over the training split, so data and noise have similar scale), and the
path is the straight one from noise at t = 0 to data at t = 1 (rectified flow / flow matching):

    z_t = (1 - t) eps + t x,     eps ~ N(0, I),     v = dz/dt = x - eps

cfm             conditional flow matching (Lipman et al. 2023): ||v_theta(z_t, t) - v||^2 with
                t ~ U(0, 1); sampling: `steps` Euler steps z += v_theta(z, t) / steps from noise.
meanflow_noise  MeanFlow (Geng et al. 2025) from noise: the average velocity u(z_r, r, tau) =
                (z_tau - z_r) / (tau - r) obeys u = v(z_r, r) + (tau - r) d/dr u (tangent (v, 1, 0)
                on (z, r, tau)), the forward-in-time identity ABCC uses, so the target and loss are
                ``abcc_fast.ops.meanflow_target`` (adaptive weight 1 / (e + c)^p). The JVP is forward-
                mode AD under no_grad (a stop-gradient target), computed on the r != tau rows only.
                Sampling: one step, x = eps + u(eps, 0, 1).

Both velocity networks are the `cnn` baseline's ConvTrunk over [z (T channels), static_z] along
wavenumber, FiLM-conditioned on (context, the voltage profile, Fourier features of the times).
Predictions are seeded (``sample_seed``) so they are reproducible; ``eval_samples`` draws are
averaged into the point prediction that OpIRBench scores.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD

from abcc_fast.ops.meanflow import meanflow_target

from .base import BaselineConfig, BaselineModel, Cond, ConvTrunk, fourier_time, mlp


@dataclass
class FlowConfig(BaselineConfig):
    TINY = dict(channels=8, depth=2, kernel=5, n_freq=4, cond_dim=16, electrode_dim=4, steps=4)
    CPU_DEFAULT = dict(channels=64, depth=6, kernel=5, n_freq=8, cond_dim=64, electrode_dim=8, steps=8,
                       eval_samples=2)
    GPU_DEFAULT = dict(channels=192, depth=10, kernel=5, n_freq=16, cond_dim=128, electrode_dim=16, steps=8,
                       eval_samples=4)

    channels: int = 64
    depth: int = 6
    kernel: int = 5
    n_freq: int = 8                    # Fourier features per time input
    residual_scale: float = 1.0        # std of (frames_z - static_z) on the training split
    steps: int = 16                    # Euler steps of the cfm sampler (meanflow_noise: always 1)
    eval_samples: int = 1              # draws averaged into predict's "frames"
    sample_seed: int = 0               # predict's noise generator when none is given

    def validate(self) -> None:
        super().validate()
        self._need(self.channels >= 1 and self.depth >= 1, "channels and depth must be >= 1")
        self._need(self.kernel % 2 == 1, f"kernel must be odd, got {self.kernel}")
        self._need(self.residual_scale > 0, f"residual_scale must be > 0, got {self.residual_scale}")
        self._need(self.steps >= 1 and self.eval_samples >= 1, "steps and eval_samples must be >= 1")

    @classmethod
    def fields_from_dataset(cls, ds, split: str, data: dict) -> dict:
        train = ds.split(split, "train") if split else ds
        src = train if len(train) else ds
        change = (src.frames.double() - src.static.double()[:, None]) / data["norm_std"]
        return {"residual_scale": float(max(change.std().item(), 1e-3))}


@dataclass
class CFMConfig(FlowConfig):
    pass


@dataclass
class MeanFlowNoiseConfig(FlowConfig):
    TINY = {**FlowConfig.TINY, "steps": 1}
    CPU_DEFAULT = {**FlowConfig.CPU_DEFAULT, "steps": 1}
    GPU_DEFAULT = {**FlowConfig.GPU_DEFAULT, "steps": 1}

    steps: int = 1                     # one-step sampler
    jvp_fraction: float = 0.25         # fraction of (r, tau) pairs with r != tau (MeanFlow: 25 %)
    adaptive_c: float = 1e-3
    adaptive_p: float = 1.0

    def validate(self) -> None:
        super().validate()
        self._need(0.0 <= self.jvp_fraction <= 1.0, f"jvp_fraction must be in [0, 1], got {self.jvp_fraction}")
        self._need(self.steps == 1, f"meanflow_noise samples in one step, got steps={self.steps}")


class _FlowBaseline(BaselineModel):
    """Shared: data <-> z-units, the velocity network, noise draws."""

    stochastic = True
    uses_frame_condition = False           # the velocity networks read the whole voltage profile
    n_times = 1                        # time inputs of the network (cfm: t; meanflow: r, tau - r)

    def __init__(self, config):
        super().__init__(config)
        c = self.config
        n_g = c.cond_dim + 3 * c.T + 2 * c.n_freq * self.n_times
        self.profile = mlp(n_g, c.cond_dim, c.cond_dim)
        self.trunk = ConvTrunk(c.T + 1, c.channels, c.T, c.depth, c.kernel, c.cond_dim)

    def velocity(self, z, static_z, times, cond: Cond):
        """z [B, T, W] state, static_z [B, W], times: list of [B] -> [B, T, W] (velocity per unit t)."""
        feats = [fourier_time(t, self.config.n_freq) for t in times]
        g = self.profile(torch.cat([cond.context, cond.volt.flatten(1), *feats], dim=-1))
        return self.trunk(torch.cat([z, static_z[:, None, :]], dim=1), g)

    def _data(self, static_z, frames_z):
        return (frames_z - static_z[:, None, :]) / self.config.residual_scale

    def _frames(self, static_z, x):
        return static_z[:, None, :] + x * self.config.residual_scale

    def _noise(self, like: torch.Tensor, generator) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)

    def _rand(self, n: int, like: torch.Tensor, generator) -> torch.Tensor:
        return torch.rand(n, generator=generator, dtype=torch.float32).to(like.device, like.dtype)

    def sample_z(self, static_z, cond: Cond, generator=None):
        K = int(self.config.eval_samples)
        shape = (static_z.shape[0], self.config.T, static_z.shape[1])
        draws = [self._frames(static_z, self.generate(static_z.new_empty(shape), static_z, cond, generator))
                 for _ in range(K)]
        return torch.stack(draws).mean(0)


class CFMBaseline(_FlowBaseline):
    """Conditional flow matching, multi-step Euler sampler (module docstring)."""

    model_type = "cfm"
    config_class = CFMConfig

    def loss_z(self, static_z, frames_z, cond: Cond, generator=None):
        x = self._data(static_z, frames_z)
        eps = self._noise(x, generator)
        t = self._rand(x.shape[0], x, generator)
        z_t = (1 - t)[:, None, None] * eps + t[:, None, None] * x
        mse = (self.velocity(z_t, static_z, [t], cond) - (x - eps)).pow(2).mean()
        return mse, {"mse": mse}

    def generate(self, like, static_z, cond: Cond, generator=None):
        """Euler from noise (t = 0) to data (t = 1) in ``steps`` steps -> x [B, T, W]."""
        z = self._noise(like, generator)
        n = int(self.config.steps)
        for i in range(n):
            t = torch.full((z.shape[0],), i / n, device=z.device, dtype=z.dtype)
            z = z + self.velocity(z, static_z, [t], cond) / n
        return z


class MeanFlowNoiseBaseline(_FlowBaseline):
    """One-step MeanFlow from noise (module docstring)."""

    model_type = "meanflow_noise"
    config_class = MeanFlowNoiseConfig
    n_times = 2

    def average_velocity(self, z, static_z, r, tau, cond: Cond):
        """u(z_r, r, tau) [B, T, W]; the network sees r and tau - r."""
        return self.velocity(z, static_z, [r, tau - r], cond)

    def du_dr(self, z_r, static_z, r, tau, v, cond: Cond) -> torch.Tensor:
        """d/dr u(z_r, r, tau) along the path (dz_r/dr = v): the JVP with tangent (v, 1, 0) on
        (z, r, tau) [B, T, W], by forward-mode AD under no_grad (a stop-gradient target)."""
        with torch.no_grad(), fwAD.dual_level():
            out = self.average_velocity(fwAD.make_dual(z_r, v), static_z, fwAD.make_dual(r, torch.ones_like(r)),
                                        tau, cond)
            tangent = fwAD.unpack_dual(out).tangent
        return torch.zeros_like(z_r) if tangent is None else tangent

    def loss_z(self, static_z, frames_z, cond: Cond, generator=None):
        c = self.config
        x = self._data(static_z, frames_z)
        B = x.shape[0]
        eps = self._noise(x, generator)
        a, b = self._rand(B, x, generator), self._rand(B, x, generator)
        jump = self._rand(B, x, generator) < c.jvp_fraction
        r = torch.where(jump, torch.minimum(a, b), a)
        tau = torch.where(jump, torch.maximum(a, b), a)
        z_r = (1 - r)[:, None, None] * eps + r[:, None, None] * x
        v = x - eps
        u = self.average_velocity(z_r, static_z, r, tau, cond)                           # carries the gradient
        du_dr = torch.zeros_like(u)
        rows = torch.nonzero(jump).reshape(-1)                 # the JVP only where tau - r != 0
        if rows.numel():
            sub = Cond(*(None if f is None else f[rows] for f in cond))
            du_dr[rows] = self.du_dr(z_r[rows], static_z[rows], r[rows], tau[rows], v[rows], sub)
        loss, u_tgt, _ = meanflow_target(u.flatten(1), v.flatten(1), du_dr.flatten(1), r, tau,
                                         c=c.adaptive_c, p=c.adaptive_p)
        mse = (u.detach().flatten(1) - u_tgt).pow(2).mean()      # the unweighted error, for the logs
        return loss, {"identity": loss, "mse": mse}

    def generate(self, like, static_z, cond: Cond, generator=None):
        """One MeanFlow jump from noise: x = eps + (1 - 0) u(eps, 0, 1)."""
        eps = self._noise(like, generator)
        B = eps.shape[0]
        r = torch.zeros(B, device=eps.device, dtype=eps.dtype)
        return eps + self.average_velocity(eps, static_z, r, torch.ones_like(r), cond)
