"""ABCC: chemical flow (MeanFlow in physical time) over a two-stream encoder-decoder.

Training (``training_loss``), in z-units x_z = (x - mean) / std of the training split:

  Trajectories from the static spectrum (r = 0; the state predict starts from). One encoding of
  (static, r = 0, s(0), context) per sample, decoded at every frame tau_k = k / (T - 1) into the
  average velocities u = (u_solvent, u_sei, u_baseline); ``meanflow_integrate`` gives
  y_k = static + tau_k u_solvent, z_k = tau_k u_sei, x_k = y_k + z_k + tau_k u_baseline.
    L_disp_traj = mean_{k >= 1} ||x_k - frame_k||^2                 (the main signal)
    + the physics and spectrum constraints on (y_k, z_k)           (abcc_fast.model.constraints)
  MeanFlow sources (mf_pairs per sample): r ~ U(0, 1), x_r and its time derivative v_r from the
  frames (denoised by a low-rank projection), s(r) and ds/dr likewise; one encoding per source,
  decoded at tau = r and at every frame.
    L_disp_pairs = mean over tau_k > r of ||x_r + (tau_k - r) u - frame_k||^2
    L_identity   = meanflow_target(u, v_r, du/dr): u_tgt = v_r + (tau - r) stopgrad(du/dr), adaptive
                   weight 1 / (e + c)^p, du/dr the JVP with tangent (v_r, 1, ds/dr) on (x_r, r, s(r)),
                   one forward-mode pass per source for all its taus (jvp_mode="none": du/dr = 0).
  loss = w_displacement (L_disp_traj + L_disp_pairs) + w_identity L_identity + sum_c w_c L_c.

DDP: every gradient-carrying call is an ordinary module call; the JVP is forward-mode AD
(``torch.autograd.forward_ad``) under ``torch.no_grad()``: no autograd graph, no gradient hooks,
so DDP sees one ordinary forward/backward. Wrap the model in DDP and call ``ddp_model(batch)``:
``forward`` with a batch dict is ``training_loss``; a constraint with weight 0 does not build its
parameters (no unused parameters).

Inference (``predict``): one encoding per source state, all T frames decoded in one batched call,
one ``meanflow_integrate`` (jump, stream sum, SEI >= 0 projection). ``predict(steps=n)`` instead
chains n jumps over a coarse grid of frames (the one-step vs several-steps ablation, ``_multistep``).

Ablations: ``ABCCConfig.ablation(name)``; ``streams=1`` sets u_sei = 0 and ``sei_from_extents``
replaces the trunk's SEI coefficients by the extents: either leaves the trunk's SEI coefficient
layer without a gradient, so ``has_unused_parameters`` is true and the trainer's DDP wrapper searches
for unused parameters.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn as nn

from .. import vocabulary as V
from ..data import chemistry as chem
from ..ops.meanflow import meanflow_integrate, meanflow_target
from ..pretrained import resolve  # packaged model names -> their folders (a leaf: no model code)
from . import constraints as C
from ._io import CONFIG_NAME, load_weights, read_model_meta, save_model_dir
from .backbone import TwoStreamBackbone
from .config import ABCCConfig
from .inputs import check_predict_inputs
from .series import (chord_velocity, current_proxy, duration_feature, exposure_below, interpolate, lowrank_frames,
                     time_derivative, turnaround_phase)

MODEL_TYPE = "abcc"


class ABCC(nn.Module):
    """The ABCC operando-IR model (docs/model.md). See the module docstring for the method.

    >>> cfg = ABCCConfig.tiny(W=64, T=4, n_components=3, n_electrodes=2, n_reactions=2)
    >>> model = ABCC(cfg)
    >>> out = model.predict(torch.rand(2, 64), torch.rand(2, 4), torch.rand(2, 3), torch.tensor([0, 1]))
    >>> tuple(out["frames"].shape)
    (2, 4, 64)
    """

    def __init__(self, config: ABCCConfig):
        super().__init__()
        if isinstance(config, dict):
            config = ABCCConfig.from_dict(config)
        config.validate()
        self.config = config
        self.backbone = TwoStreamBackbone(config)
        self.extent_head = C.ExtentHead(config) if config.w_mass > 0 or config.sei_from_extents else None
        allowed = C.ReactionChemistry.products(config) if config.extent_chemistry else None
        self.reaction_spectra = C.ReactionSpectra(self.backbone.head_sei.sei_templates, config.n_reactions,
                                                  allowed) if config.sei_from_extents else None
        wn = torch.tensor(config.wavenumber, dtype=torch.float32) if config.wavenumber else \
            torch.linspace(0.0, 1.0, config.W)
        self.register_buffer("wavenumber", wn, persistent=False)
        self._marker_slices = C.marker_slices(wn, config.marker_windows) if config.wavenumber else []
        if config.composition_encoding == "templates":   # open vocabulary (abcc_fast.vocabulary)
            self.composition_encoder = V.TemplateEncoder(config.W, config.patch, config.dim, config.template_dim)
            self.register_buffer("component_templates", self._known_templates(config))

    @property
    def _sei_from_extents(self) -> bool:
        """The SEI stream comes from the extents (``sei_from_extents`` with both streams on)."""
        return self.config.sei_from_extents and self.config.streams == 2

    @property
    def has_unused_parameters(self) -> bool:
        """True when a training step leaves parameters without a gradient (the trunk's SEI
        coefficients with ``streams=1`` or ``sei_from_extents``): DDP must search for them."""
        return self.config.streams == 1 or self.config.sei_from_extents

    @staticmethod
    def _known_templates(cfg: ABCCConfig) -> torch.Tensor:
        """[C, 2, W] free/bound templates of the vocabulary on the model grid (saved with the weights).
        Components unknown to chemistry get zeros: set them with ``set_component_templates`` (a saved
        model loads its own)."""
        if not cfg.wavenumber:
            raise ValueError("ABCCConfig: composition_encoding='templates' needs the wavenumber grid (config.wavenumber)")
        names = list(cfg.components) or (chem.COMPONENT_NAMES if cfg.n_components == len(chem.COMPONENT_NAMES) else [])
        if len(names) != cfg.n_components:
            raise ValueError(f"ABCCConfig: composition_encoding='templates' needs the {cfg.n_components} component "
                             f"names (config.components, got {len(names)})")
        if all(n in chem.COMPONENTS for n in names):
            return torch.from_numpy(V.known_template_matrix(names, cfg.wavenumber))
        return torch.zeros(cfg.n_components, 2, cfg.W)

    def set_component_templates(self, templates) -> None:
        """Replace the vocabulary's templates: [C, 2, W] array/tensor, or C ComponentTemplate-likes
        (see ``abcc_fast.vocabulary.as_template``) in ``config.components`` order."""
        if self.config.composition_encoding != "templates":
            raise ValueError("set_component_templates: this model uses composition_encoding='vocabulary'")
        if isinstance(templates, (list, tuple)):
            templates = np.stack([V.as_template(t, self.config.wavenumber).array() for t in templates])
        t = torch.as_tensor(templates, dtype=self.component_templates.dtype)
        if tuple(t.shape) != tuple(self.component_templates.shape):
            raise ValueError(f"set_component_templates: expected shape {tuple(self.component_templates.shape)}, "
                             f"got {tuple(t.shape)}")
        self.component_templates.copy_(t.to(self.component_templates.device))

    def composition_embedding(self, composition: torch.Tensor, extra_templates: Optional[torch.Tensor] = None):
        """The composition part of the context: composition [B, C] itself (vocabulary encoding), or
        sum_i x_i E(template_i) [B, template_dim] over the vocabulary's templates followed by
        ``extra_templates`` [E, 2, W] (templates encoding; composition then has C + E columns)."""
        cfg = self.config
        n_extra = 0 if extra_templates is None else int(extra_templates.shape[0])
        if cfg.composition_encoding != "templates":
            if n_extra:
                raise ValueError("ABCC: this model encodes composition over a fixed vocabulary "
                                 "(composition_encoding='vocabulary'); it cannot represent new components -- "
                                 "train with composition_encoding='templates'")
            return composition
        tpl = self.component_templates
        if not bool(tpl.abs().sum() > 0):
            raise ValueError("ABCC: the component templates are not set (components unknown to chemistry); "
                             "call set_component_templates")
        if n_extra:
            tpl = torch.cat([tpl, extra_templates.to(tpl.device, tpl.dtype)])
        return self.composition_encoder(composition, tpl)

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _z(self, x):
        return (x - self.config.norm_mean) / self.config.norm_std

    def forward(self, *args, **kwargs):
        """``forward(batch: dict, generator=None)`` -> ``training_loss(batch)`` (the DDP entry);
        ``forward(x, static, r, tau, state_r, state_tau, context, electrode)`` -> the average
        velocities (u_solvent, u_sei, u_baseline) [B, W] in z-units (see ``velocity``)."""
        if args and isinstance(args[0], dict):
            return self.training_loss(*args, **kwargs)
        return self.velocity(*args, **kwargs)

    def context(self, composition: torch.Tensor, time_s: Optional[torch.Tensor] = None,
                voltage: Optional[torch.Tensor] = None, extra_templates: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-sample context the network is conditioned on: composition [B, C], plus (use_duration)
        the scaled log protocol duration (log(time_s[:, -1] - time_s[:, 0]) - m) / s, plus
        (profile_points > 0) the whole voltage profile [B, T] resampled to profile_points times and
        standardised -> [B, context_size]. Rates and film-growth kinetics act in seconds, so the
        duration is informative; the profile tells the protocol (galvanostatic, CV, GITT) and where
        the cell goes. Without time_s the training split's typical duration (exp m) is assumed.
        With composition_encoding="templates" the composition part is ``composition_embedding``."""
        cfg = self.config
        parts = [self.composition_embedding(composition, extra_templates)]
        if cfg.use_duration:
            parts.append(duration_feature(time_s, composition, cfg.duration_log_mean, cfg.duration_log_std))
        if cfg.profile_points:
            if voltage is None:
                raise ValueError("ABCC.context: this model is conditioned on the voltage profile; pass voltage [B, T]")
            v = voltage.to(composition.device, composition.dtype)
            grid = torch.linspace(0, 1, cfg.profile_points, device=v.device, dtype=v.dtype)
            prof = interpolate(v, grid.expand(v.shape[0], -1))
            parts.append((prof - cfg.volt_mean) / cfg.volt_std)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def protocol_state(self, voltage: torch.Tensor, time_s: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The protocol state at every frame: voltage [B, T] (V), time_s [B, T] (s) -> [B, T, n_state].

        Columns: V; (current_proxy) asinh(dV/dt / 0.1 V h^-1), dV/dt from central differences in
        physical time smoothed over three frames (the sign and size of the current in a
        galvanostatic step, the sweep direction in a CV); per history level E_j the cumulative
        exposure below it in hours, X_j(t) = log(1 + int_0^t sigmoid((E_j - V(s)) / w) ds)
        (trapezoid over frames; film growth integrates a potential-gated rate over time);
        (turnaround) the frame's place against the turn from lithiation to delithiation
        (``series.turnaround_phase``, 2 + len(turn_relax_hours) columns); (history_elapsed) log(1 + hours).
        Smooth in time, so the JVP in r uses its time derivative like V's. Without time_s the
        frames are taken as evenly spaced over the training split's typical duration."""
        cfg = self.config
        B, T = voltage.shape
        if time_s is None:
            dur_h = math.exp(cfg.duration_log_mean) / 3600.0
            t_h = torch.linspace(0, dur_h, T, device=voltage.device, dtype=voltage.dtype).expand(B, T)
        else:
            t = time_s.to(voltage.device, torch.float64)
            t_h = ((t - t[:, :1]) / 3600.0).clamp_min(0).to(voltage.dtype)
        cols = [voltage[..., None]]
        if cfg.current_proxy:
            cols.append(current_proxy(voltage, t_h)[..., None])
        if cfg.history_levels:
            cols.append(exposure_below(voltage, t_h, cfg.history_levels, cfg.history_width))
        if cfg.turnaround:
            cols.append(turnaround_phase(voltage, t_h, relax_hours=cfg.turn_relax_hours))
        if cfg.history_elapsed:
            cols.append(t_h.log1p()[..., None])
        return torch.cat(cols, dim=-1)

    def velocity(self, x, static, r, tau, state_r, state_tau, context, electrode):
        """Average velocities of both streams over [r, tau]: x, static [B, W] z-units; r, tau [B];
        state_r, state_tau: the protocol states s(r), s(tau) [B, n_state] (see ``protocol_state``;
        column 0 is V); context: [B, context_size] (see ``context``); electrode
        int64 [B] -> (u_solvent, u_sei, u_baseline) [B, W] (u_baseline: the smooth baseline
        nuisance, outside both streams; frames = solvent + SEI + baseline). With ``streams=1`` (the
        one-stream ablation) u_sei is 0: the solvent stream and the baseline carry every change."""
        if self.config.sei_from_extents:
            raise ValueError("ABCC.velocity: with sei_from_extents the SEI stream integrates the reaction rates over "
                             "the whole protocol, which one (r, tau) pair does not carry; use predict (or "
                             "training_loss), which take every frame's protocol state")
        u_solvent, u_sei, u_baseline = self.backbone(x, static, r, tau, state_r, state_tau, context, electrode)
        if self.config.streams == 1:
            u_sei = torch.zeros_like(u_sei)
        return u_solvent, u_sei, u_baseline

    def _total_velocity_jvp(self, x, static, r, tau, state_r, state_tau, context, electrode,
                            v, dstate_dr) -> torch.Tensor:
        """d/dr u(x_r, r, tau) [B, W] for one tau per row: ``_source_jvp`` with a single target time
        (tangent (v, 1, ds/dr) on (x, r, s(r)))."""
        return self._source_jvp(x, static, r, state_r, context, electrode, tau[:, None], state_tau[:, None],
                                v, dstate_dr)[:, 0]

    def _decode(self, enc, tau, state_tau):
        """backbone.decode with the one-stream ablation's u_sei = 0."""
        us, uz, ub = self.backbone.decode(enc, tau, state_tau)
        if self.config.streams == 1:
            uz = torch.zeros_like(uz)
        return us, uz, ub

    def _extent_sei(self, state, context, electrode) -> torch.Tensor:
        """``sei_from_extents``: the SEI stream z(tau_k) = xi(tau_k) @ P [B, T, W] (z-units) on the
        whole frame grid tau_k = k / (T - 1), from the protocol state [B, T, n_state]: the extents
        integrate the reaction rates over every frame from tau = 0 (z(0) = 0)."""
        B, T = state.shape[:2]
        grid = torch.linspace(0, 1, T, device=state.device, dtype=state.dtype).expand(B, T)
        xi = self.extent_head(grid, state, context, electrode)                         # [B, T, K]
        rows = self.backbone._row_masks(context)[1] if self.config.sei_reachable_only else None
        spectra = self.reaction_spectra(rows).to(xi.dtype)                             # [K, W] or [B, K, W]
        return xi @ spectra

    # -- training ------------------------------------------------------------------------------
    def training_loss(self, batch: dict, generator: Optional[torch.Generator] = None):
        """Scalar loss and named float parts for one default-collated batch of OpIRDataset samples
        (static [B, W], frames [B, T, W], voltage [B, T], composition [B, C], electrode [B]; the
        synthetic truth fields solvent/sei/extent are never read). Draws its random numbers (the
        MeanFlow sources r, a trajectory subset) from ``generator`` (a CPU torch.Generator) when given."""
        cfg = self.config
        inp = self._training_inputs(batch)
        parts: dict[str, torch.Tensor] = {}
        traj = self._trajectory_loss(inp, generator, parts)
        if cfg.mf_pairs > 0:
            self._meanflow_loss(inp, generator, parts)
        self._constraint_losses(inp, traj, parts)
        if cfg.w_sei_label > 0:
            parts["sei_label"] = C.sei_label_term(traj, batch.get("sei_label"), cfg.norm_std, cfg.sei_label_floor)
        weights = {"disp_traj": cfg.w_displacement, "disp_pairs": cfg.w_displacement,
                   "identity": cfg.w_identity, "sei_nonneg": cfg.w_sei_nonneg, "sei_growth": cfg.w_sei_growth,
                   "sei_sparsity": cfg.w_sei_sparsity,
                   "solvent_new_bands": cfg.w_solvent_new_bands, "smooth": cfg.w_smooth, "mass": cfg.w_mass,
                   "peak_drift": cfg.w_peak_drift, "peak_accel": cfg.w_peak_accel, "sei_label": cfg.w_sei_label}
        loss = sum(weights[k] * v for k, v in parts.items())
        logs = {k: float(v.detach()) for k, v in parts.items()}
        logs["loss"] = float(loss.detach())
        return loss, logs

    def _training_inputs(self, batch: dict) -> dict:
        """The batch in z-units on the model's device, with the context and the protocol state."""
        cfg = self.config
        dev = self.device
        dtype = next(self.parameters()).dtype
        static_raw = batch["static"].to(dev, dtype)
        frames_raw = batch["frames"].to(dev, dtype)
        voltage = batch["voltage"].to(dev, dtype)
        time_s = batch.get("time_s")
        B, T, W = frames_raw.shape
        if W != cfg.W or static_raw.shape != (B, W):
            raise ValueError(f"ABCC.training_loss: static {tuple(static_raw.shape)} / frames {tuple(frames_raw.shape)} "
                             f"do not match the model's grid W={cfg.W}")
        return dict(static_raw=static_raw, static=self._z(static_raw), frames=self._z(frames_raw),
                    context=self.context(batch["composition"].to(dev, dtype), time_s, voltage),
                    state=self.protocol_state(voltage, time_s), electrode=batch["electrode"].to(dev).long(),
                    grid=torch.linspace(0, 1, T, device=dev, dtype=dtype))

    def _trajectory_loss(self, inp: dict, generator, parts: dict) -> dict:
        """r = 0 trajectories (the state predict starts from): one encoding of the static spectrum per
        sample, decoded at every frame (or a random subset of ``traj_frames``);
        L_disp_traj = mean_{k >= 1} ||x_k - frame_k||^2. Returns what the constraints need."""
        cfg = self.config
        static, frames, state, grid = inp["static"], inp["frames"], inp["state"], inp["grid"]
        B, T, W = frames.shape
        if cfg.traj_frames and cfg.traj_frames < T:
            keys = torch.rand(B, T - 1, generator=generator)
            pick = keys.argsort(dim=1)[:, :cfg.traj_frames - 1] + 1
            idx = torch.cat([torch.zeros(B, 1, dtype=torch.long), pick.sort(dim=1).values], 1).to(static.device)
        else:
            idx = torch.arange(T, device=static.device).expand(B, T)
        taus = grid[idx]                                                               # [B, T']
        state_tau = torch.gather(state, 1, idx[..., None].expand(-1, -1, state.shape[-1]))
        frames_traj = torch.gather(frames, 1, idx[..., None].expand(-1, -1, W))
        enc = self.backbone.encode(static, static, torch.zeros_like(grid[:1]).expand(B), state[:, 0],
                                   inp["context"], inp["electrode"])
        us, uz, ub = self._decode(enc, taus, state_tau)
        if self._sei_from_extents:
            z = torch.gather(self._extent_sei(state, inp["context"], inp["electrode"]), 1, idx[..., None].expand(-1, -1, W))
            uz = chord_velocity(z, torch.zeros_like(static), taus, torch.zeros_like(taus[:, 0]))
        frames_hat, solvent, sei = meanflow_integrate(static, us, uz, 0.0, taus, project=False,
                                                      backend=cfg.ops_backend)
        frames_hat = frames_hat + taus[..., None] * ub
        scored = (taus > 0).to(frames.dtype)[..., None]
        parts["disp_traj"] = ((frames_hat - frames_traj).pow(2) * scored).sum() / (scored.sum() * W).clamp_min(1)
        return dict(taus=taus, state_tau=state_tau, frames_traj=frames_traj, frames_hat=frames_hat,
                    solvent=solvent, sei=sei, idx=idx)

    def _meanflow_loss(self, inp: dict, generator, parts: dict) -> None:
        """MeanFlow sources: mf_pairs times r ~ U(0, 1) per sample, x_r interpolated between frames;
        each source is encoded once and decoded at tau = r and at every frame tau_k.
          L_disp_pairs = mean over tau_k > r of ||x_r + (tau_k - r) u - frame_k||^2
          L_identity   = meanflow_target(u, v_r, du/dr) over tau >= r: u_tgt = v_r + (tau - r) du/dr,
        du/dr the JVP with tangent (v_r, 1, ds/dr) on (x_r, r, s(r)), once per source for all taus.
        x_r and v_r come from the frames projected on the batch's top ``identity_rank`` change
        directions (identity_target="lowrank"): central differences of raw frames are mostly noise."""
        cfg = self.config
        static, frames, state, grid = inp["static"], inp["frames"], inp["state"], inp["grid"]
        B, T, W = frames.shape
        M = cfg.mf_pairs
        source = lowrank_frames(frames, static, cfg.identity_rank) if cfg.identity_target == "lowrank" else frames
        r2 = torch.rand(B, M, generator=generator).to(frames.device, frames.dtype)
        r = r2.reshape(-1)                                                             # [B M]
        x_r = interpolate(source, r2).reshape(B * M, W)
        s_r = interpolate(state, r2).reshape(B * M, -1)
        tau = torch.cat([r[:, None], grid.expand(B * M, T)], dim=1)                    # [B M, 1 + T]
        s_tau = torch.cat([s_r[:, None], state.repeat_interleave(M, 0)], dim=1)
        rep = dict(static=static.repeat_interleave(M, 0), context=inp["context"].repeat_interleave(M, 0),
                   electrode=inp["electrode"].repeat_interleave(M, 0))
        enc = self.backbone.encode(x_r, rep["static"], r, s_r, rep["context"], rep["electrode"])
        us, uz, ub = self._decode(enc, tau, s_tau)
        if self._sei_from_extents:
            z_grid = self._extent_sei(state, inp["context"], inp["electrode"])          # [B, T, W]
            z_r = interpolate(z_grid, r2).reshape(B * M, W)
            uz = chord_velocity(torch.cat([z_r[:, None], z_grid.repeat_interleave(M, 0)], 1), z_r, tau, r)
        u = us + uz + ub                                                               # [B M, 1 + T, W]
        ahead = (grid[None] > r[:, None]).to(frames.dtype)                             # [B M, T]
        x_hat = x_r[:, None] + (grid[None] - r[:, None])[..., None] * u[:, 1:]
        res = (x_hat - frames.repeat_interleave(M, 0)).pow(2).mean(-1)
        parts["disp_pairs"] = (res * ahead).sum() / ahead.sum().clamp_min(1)
        if cfg.w_identity <= 0:
            return
        v_r = interpolate(time_derivative(source), r2).reshape(B * M, W)
        if cfg.jvp_mode == "full":
            ds_dr = interpolate(time_derivative(state), r2).reshape(B * M, -1)
            du_dr = self._source_jvp(x_r, rep["static"], r, s_r, rep["context"], rep["electrode"], tau, s_tau,
                                     v_r, ds_dr)
        else:
            du_dr = torch.zeros_like(u)
        keep = torch.cat([torch.ones_like(ahead[:, :1]), (grid[None] >= r[:, None]).to(frames.dtype)], dim=1) > 0
        rows = keep.reshape(-1)
        Q = tau.shape[1]
        parts["identity"], _, _ = meanflow_target(
            u.reshape(-1, W)[rows], v_r.repeat_interleave(Q, 0)[rows], du_dr.reshape(-1, W)[rows],
            r.repeat_interleave(Q)[rows], tau.reshape(-1)[rows], c=cfg.adaptive_c, p=cfg.adaptive_p,
            backend=cfg.ops_backend)

    def _source_jvp(self, x_r, static, r, s_r, context, electrode, tau, s_tau, v_r, ds_dr) -> torch.Tensor:
        """d/dr u(x_r, r, tau) [B, Q, W] of u = u_solvent + u_sei + u_baseline for every decoded tau,
        by forward-mode AD under no_grad (a stop-gradient target: no autograd graph, no parameter
        hooks, so DDP sees only the ordinary primal): tangent (v_r, 1, ds/dr) on (x_r, r, s(r))."""
        with torch.no_grad(), fwAD.dual_level():
            enc = self.backbone.encode(fwAD.make_dual(x_r, v_r), static, fwAD.make_dual(r, torch.ones_like(r)),
                                       fwAD.make_dual(s_r, ds_dr), context, electrode)
            us, uz, ub = self._decode(enc, tau, s_tau)
            du_dr = fwAD.unpack_dual(us + uz + ub).tangent
        return torch.zeros_like(tau[..., None].expand(-1, -1, x_r.shape[-1])) if du_dr is None else du_dr

    def _constraint_losses(self, inp: dict, traj: dict, parts: dict) -> None:
        """The physics and spectrum constraints on the r = 0 trajectories (``constraints.constraint_terms``)."""
        parts.update(C.constraint_terms(self.config, inp, traj, self.extent_head, self.wavenumber,
                                        self._marker_slices))

    # -- inference -----------------------------------------------------------------------------
    def _check_predict_inputs(self, static, voltage, composition, electrode, wavenumber, time_s=None, n_extra=0):
        return check_predict_inputs(self.config, static, voltage, composition, electrode, wavenumber, time_s,
                                    n_extra)

    @torch.no_grad()
    def predict(self, static, voltage, composition, electrode, *, return_streams: bool = False,
                samples: int = 0, noise: float = 0.0, wavenumber=None, time_s=None,
                generator: Optional[torch.Generator] = None, components=None, extra_components=None,
                steps: int = 1) -> dict:
        """All T frames from the static spectrum, in one batched call (raw absorbance in and out).

        Args:
          static [B, W] AU; voltage [B, T] V (T frames at tau_k = k / (T - 1)); composition [B, C]
          mole fractions; electrode [B] indices; wavenumber [W] optional, checked against the model's;
          time_s [B, T] optional seconds (the protocol duration conditions the model; without it the
          training split's typical duration is assumed -- pass it when you have it).
          samples, noise: stochastic mode -- K = samples extra predictions from source states
          static + noise * N(0, 1) (noise in AU), all in the same batched call.
          components: names of composition's columns (known and extra, any order/subset); without
          it composition covers config.components followed by extra_components.
          extra_components: new components (templates encoding only): ComponentTemplate,
          component JSON dict or path (band JSON or NAME=measured.csv); see abcc_fast.vocabulary.
          steps: 1 (default) = every frame is one jump from r = 0. n > 1 chains n jumps over a coarse
          grid of frame indices g_j = round(j (T - 1) / n) (at most T - 1 jumps): the state at
          tau_{g_j} is the jump from the state at tau_{g_{j-1}} (r = tau_{g_{j-1}}, per stream,
          SEI >= 0 projected), and the frames in (g_{j-1}, g_j] are jumps from g_{j-1} -- n batched
          network calls, one per segment (the "one step vs several" ablation).
        Returns:
          {"frames": [B, T, W]} (+ "solvent", "sei" [B, T, W] with return_streams; + "samples"
          [K, B, T, W] and "std" [B, T, W] when samples > 0), on the model's device, float32.
        """
        cfg = self.config
        if samples < 0 or (samples > 0 and not noise >= 0):
            raise ValueError(f"ABCC.predict: samples must be >= 0 and noise >= 0, got {samples}, {noise}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"ABCC.predict: steps must be an integer >= 1 (network jumps per trajectory), got {steps!r}")
        composition, extra_t = self._open_composition(composition, components, extra_components)
        static, voltage, composition, electrode, time_s = self._check_predict_inputs(
            static, voltage, composition, electrode, wavenumber, time_s,
            n_extra=0 if extra_t is None else int(extra_t.shape[0]))
        dev = self.device
        dtype = next(self.parameters()).dtype
        static = static.to(dev, dtype)
        voltage = voltage.to(dev, dtype)
        composition = self.context(composition.to(dev, dtype), time_s, voltage, extra_templates=extra_t)
        state = self.protocol_state(voltage, time_s)                  # [B, T, n_state]
        electrode = electrode.to(dev)
        B, W = static.shape
        T = voltage.shape[1]
        K = int(samples)
        static_z = self._z(static)
        sources = static_z
        if K > 0:
            eps = torch.randn(K, B, W, generator=generator).to(dev, dtype) * (float(noise) / cfg.norm_std)
            sources = torch.cat([static_z, (static_z[None] + eps).reshape(K * B, W)])
        S = sources.shape[0]                           # (K + 1) B source states
        rep = S // B
        taus = torch.linspace(0, 1, T, device=dev, dtype=dtype)
        if steps > 1 and T > 2:
            if cfg.mf_pairs == 0:
                warnings.warn("ABCC.predict(steps > 1): this model was trained from r = 0 only (mf_pairs=0), so "
                              "the jumps from predicted states at r > 0 are untrained; train with mf_pairs >= 1 "
                              "(the mf_sources ablation) for chained jumps", RuntimeWarning, stacklevel=2)
            frames, solvent, sei, baseline = self._multistep(sources, static_z, state, composition, electrode,
                                                             taus, steps)
            return self._predict_output(frames, solvent, sei, baseline, B, K, return_streams)
        zeros = torch.zeros(S, device=dev, dtype=dtype)
        u_solvent, u_sei, u_baseline = self._decode_chunks(
            sources, static_z.repeat(rep, 1), zeros, state[:, 0].repeat(rep, 1), composition.repeat(rep, 1),
            electrode.repeat(rep), taus.expand(S, T), state.repeat(rep, 1, 1))
        if self._sei_from_extents:
            z = self._extent_sei(state, composition, electrode).repeat(rep, 1, 1)
            u_sei = chord_velocity(z, torch.zeros_like(sources), taus.expand(S, T), zeros)
        frames, solvent, sei = meanflow_integrate(sources, u_solvent, u_sei, 0.0, taus, project=True,
                                                  backend=cfg.ops_backend)
        baseline = taus[None, :, None] * u_baseline                    # baseline(0) = 0
        frames = frames + baseline
        return self._predict_output(frames, solvent, sei, baseline, B, K, return_streams)

    def _decode_chunks(self, x, static, r, state_r, context, electrode, tau, state_tau):
        """Encode S sources once each and decode their taus [S, Q], in chunks of about
        ``predict_chunk`` (source, tau) queries -> (u_solvent, u_sei, u_baseline) [S, Q, W]."""
        S, Q = tau.shape
        step = max(1, int(self.config.predict_chunk) // max(Q, 1))
        outs = []
        for s0 in range(0, S, step):
            sl = slice(s0, min(s0 + step, S))
            enc = self.backbone.encode(x[sl], static[sl], r[sl], state_r[sl], context[sl], electrode[sl])
            outs.append(self._decode(enc, tau[sl], state_tau[sl]))
        return tuple(torch.cat(o) for o in zip(*outs))

    def _predict_output(self, frames, solvent, sei, baseline, B: int, K: int, return_streams: bool) -> dict:
        """predict's dict from the z-unit results [(K + 1) B, T, W] (raw absorbance, float32)."""
        cfg = self.config
        T, W = frames.shape[1], frames.shape[2]
        mean, std = cfg.norm_mean, cfg.norm_std
        frames = (frames * std + mean).float()
        out = {"frames": frames[:B]}
        if return_streams:
            out["solvent"] = (solvent[:B] * std + mean).float()
            out["sei"] = (sei[:B] * std).float()
            out["baseline"] = (baseline[:B] * std).float()
        if K > 0:
            smp = frames[B:].view(K, B, T, W)
            out["samples"] = smp
            out["std"] = smp.std(dim=0, unbiased=K > 1) if K > 1 else torch.zeros_like(smp[0])
        return out

    def _multistep(self, sources, static_z, state, composition, electrode, taus, steps: int):
        """predict(steps=n > 1): chained jumps over the coarse grid g_j = round(j (T - 1) / n).

        sources [S, W] (S = (K + 1) B source states, z-units), static_z [B, W], state [B, T, n_state],
        composition: the context [B, ctx], electrode [B], taus [T] -> (frames, solvent, sei, baseline)
        [S, T, W] z-units. Each stream jumps from its own state: y_tau = y_r + (tau - r) u_solvent,
        z_tau = max(z_r + (tau - r) u_sei, 0), b_tau = b_r + (tau - r) u_baseline; the network reads
        x_r = y_r + z_r + b_r (as in training, where x_r is the observed frame at r)."""
        cfg = self.config
        S, W = sources.shape
        B, T = state.shape[0], state.shape[1]
        rep = S // B
        n = min(int(steps), T - 1)
        grid = sorted({round(j * (T - 1) / n) for j in range(n + 1)})          # frame indices, 0 .. T - 1
        frames = torch.empty(S, T, W, device=sources.device, dtype=sources.dtype)
        solvent, sei, baseline = torch.empty_like(frames), torch.empty_like(frames), torch.empty_like(frames)
        y, z, b = sources, torch.zeros_like(sources), torch.zeros_like(sources)
        state_s = state.repeat(rep, 1, 1)                                          # [S, T, n_state]
        comp_s, elec_s, static_s = composition.repeat(rep, 1), electrode.repeat(rep), static_z.repeat(rep, 1)
        z_grid = self._extent_sei(state, composition, electrode).repeat(rep, 1, 1) \
            if self._sei_from_extents else None
        for j in range(1, len(grid)):
            g0, g1 = grid[j - 1], grid[j]
            ks = torch.arange(0 if j == 1 else g0 + 1, g1 + 1, device=sources.device)   # frames of this jump
            L = ks.numel()
            r = taus[g0]
            us, uz, ub = self._decode_chunks(y + z + b, static_s, r.expand(S), state_s[:, g0], comp_s, elec_s,
                                             taus[ks].expand(S, L), state_s[:, ks])
            if z_grid is not None:                                                 # sei_from_extents
                uz = chord_velocity(z_grid[:, ks], z, taus[ks].expand(S, L), r.expand(S))
            f, sv, se = meanflow_integrate(y, us, uz, r.expand(S).contiguous(),
                                           taus[ks].expand(S, L).contiguous(), x0_sei=z, project=True,
                                           backend=cfg.ops_backend)
            bl = b[:, None] + (taus[ks] - r)[None, :, None] * ub
            frames[:, ks], solvent[:, ks], sei[:, ks], baseline[:, ks] = f + bl, sv, se, bl
            y, z, b = sv[:, -1], se[:, -1], bl[:, -1]
        return frames, solvent, sei, baseline

    def _open_composition(self, composition, components=None, extra_components=None):
        """(composition over config.components + extra names, extra templates [E, 2, W] or None)."""
        cfg = self.config
        if components is None and not extra_components:
            return composition, None
        extra = []
        if extra_components:
            if cfg.composition_encoding != "templates":
                got = ", ".join(getattr(c, "name", None) or str(c) for c in extra_components)
                raise ValueError(f"ABCC.predict: this model encodes composition over a fixed vocabulary "
                                 f"(composition_encoding='vocabulary': {', '.join(cfg.components) or cfg.n_components}); "
                                 f"it cannot represent the new component(s) {got}. Use a model trained with "
                                 "composition_encoding='templates'")
            extra = [V.as_template(c, cfg.wavenumber) for c in extra_components]
        names = list(cfg.components) + [t.name for t in extra]
        if len(set(names)) != len(names):
            raise ValueError(f"ABCC.predict: duplicate component names {names}")
        tpl = torch.stack([torch.from_numpy(t.array()) for t in extra]) if extra else None
        if components is None:
            return composition, tpl
        if not cfg.components:
            raise ValueError("ABCC.predict: components= needs a model whose config names its components")
        comp = torch.as_tensor(composition, dtype=torch.float32)
        comp = comp[None] if comp.dim() == 1 else comp
        if comp.dim() != 2 or comp.shape[1] != len(components):
            raise ValueError(f"ABCC.predict: composition must be [B, {len(components)}] (one column per name in "
                             f"components), got shape {tuple(comp.shape)}")
        full = torch.zeros(comp.shape[0], len(names))
        for j, n in enumerate(components):
            if n not in names:
                how = ("pass its template in extra_components" if cfg.composition_encoding == "templates" else
                       "this vocabulary-encoded model cannot represent it (composition_encoding='templates' can)")
                raise ValueError(f"ABCC.predict: unknown component {n!r}; this model knows {', '.join(names)}; {how}")
            full[:, names.index(n)] += comp[:, j]
        return full, tpl

    # -- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, path) -> Path:
        """Write ``path/model.safetensors`` and ``path/config.json`` atomically (a temporary sibling
        directory swapped into place); returns the path."""
        return save_model_dir(self, path, MODEL_TYPE, self.config.to_dict())

    @classmethod
    def from_pretrained(cls, path, map_location="cpu") -> "ABCC":
        """Load a directory written by ``save_pretrained``, or a packaged pretrained model by name
        (``"opirsim"``: abcc_fast/pretrained, used when no file or folder of that name exists)."""
        path = resolve(path)
        meta = read_model_meta(path, "ABCC.from_pretrained")
        if meta.get("model_type") != MODEL_TYPE or "config" not in meta:
            raise ValueError(f"ABCC.from_pretrained: {Path(path) / CONFIG_NAME} is not an ABCC config (model_type "
                             f"{meta.get('model_type')!r})")
        if "jvp_fraction" in meta["config"]:
            raise ValueError(f"ABCC.from_pretrained: {path} holds a first-generation ABCC (one network call per "
                             "frame), whose weights do not fit the current encoder-decoder; retrain it with "
                             "`abcc train` (or load it with the abcc_fast release that saved it)")
        return load_weights(cls(ABCCConfig.from_dict(meta["config"])), path, "ABCC.from_pretrained", map_location)
