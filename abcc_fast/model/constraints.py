"""Physics and spectrum constraints of ABCC (docs/model.md), as small named penalty functions.

All of them act on the r = 0 trajectories (every frame jumped to from the static spectrum), where the
two streams are defined absolutely: y(0) = static, z(0) = 0. Spectra in z-units (x_z = (x - mean) /
std) unless said otherwise; trajectories are [B, T', W] over ascending taus [B, T'].

  sei_nonnegative      mean relu(-z)^2
  sei_sparsity         mean |z|   (identifiability: y + c, z - c fit the frames alike)
  sei_growth           mean relu(z_{k-1} - z_k)^2                          ("mostly growing": a penalty)
  solvent_new_bands    mean m * relu(y - static)^2, m = 1 where the dilated static spectrum has no band
  wavenumber_smoothness mean (D2_nu (y - static))^2 + mean (D2_nu z)^2      (second differences along nu)
  mass_conservation    A_sol = mean_nu(static - y), A_sei = mean_nu z, extent xi >= 0 non-decreasing:
                       mean (A_sol - xi . alpha)^2 + (A_sei - xi . beta)^2, alpha, beta > 0 learned
                       (consumed solvent area and grown SEI area are both linear
                       in the reaction extents)
  peak_drift           Huber_1cm((c_k(pred) - c_0(pred)) - (c_k(data) - c_0(data))) over the marker
                       windows that hold a band in the data (band_mask); c_0 is the static spectrum's
                       centroid on both sides (the prediction starts from it)
  peak_acceleration    mean a_k^2 of the predicted centroids' acceleration a = c''(tau_k) h^2 (cm^-1;
                       h = 1/(T-1), so the plain second difference on the full frame grid), same windows;
                       with the data's centroids, only the part beyond the data's own acceleration,
                       relu(|a(pred)| - |a(data)|): OpIRSim's true centroids are not smooth in time
                       (polarisation follows the current, which switches), so a plain smoothness
                       penalty fights the truth
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import chemistry as chem
from .backbone import Reachability, context_size, fourier_features, sei_template_products, state_size
from .config import ABCCConfig

PEAK_EDGE_POINTS = 3  # as OpIRBench's peak_shift (baseline through the window edges)


def sei_nonnegative(sei: torch.Tensor) -> torch.Tensor:
    return F.relu(-sei).pow(2).mean()


def sei_sparsity(sei: torch.Tensor) -> torch.Tensor:
    """mean |z|: without it y + c and z - c fit the frames equally (the streams are unidentified)."""
    return sei.abs().mean()


def sei_growth(sei: torch.Tensor) -> torch.Tensor:
    if sei.shape[1] < 2:
        return sei.new_zeros(())
    return F.relu(sei[:, :-1] - sei[:, 1:]).pow(2).mean()


def no_band_mask(static_raw: torch.Tensor, threshold: float, dilate: int) -> torch.Tensor:
    """[B, W] float mask: 1 where the static spectrum (offset-corrected, dilated by a running max
    over `dilate` points) stays below `threshold` x its maximum: no band there to shift or deplete."""
    s = static_raw - static_raw.quantile(0.05, dim=-1, keepdim=True)
    k = max(1, int(dilate)) | 1
    s = F.max_pool1d(s[:, None], kernel_size=k, stride=1, padding=k // 2)[:, 0]
    peak = s.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return (s < threshold * peak).to(static_raw.dtype)


def solvent_new_bands(solvent: torch.Tensor, static_z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (mask[:, None] * F.relu(solvent - static_z[:, None]).pow(2)).mean()


def _d2(x: torch.Tensor) -> torch.Tensor:
    return x[..., 2:] - 2 * x[..., 1:-1] + x[..., :-2]


def wavenumber_smoothness(solvent: torch.Tensor, sei: torch.Tensor, static_z: torch.Tensor) -> torch.Tensor:
    if solvent.shape[-1] < 3:
        return solvent.new_zeros(())
    return _d2(solvent - static_z[:, None]).pow(2).mean() + _d2(sei).pow(2).mean()


ONSET_DEFAULT_V = 1.0   # extent_onsets: the initial onset of a reaction the tables do not give (V vs Li/Li+)
ONSET_ALWAYS_V = 5.0    # a tabulated onset above this marks a reaction without electrons: not gated
ONSET_WIDTH_V = 0.05    # the gates' initial width (V)
PATH_POWER_MIN = 0.2    # onset_path: the least power of the within-interval potential path
PATH_PIECES = 16        # onset_path: chords the bent path is averaged over

INITIAL_RATE_LOGIT = -4.0   # the extent head's rate bias at start: softplus(-4) ~ 0.018 per unit tau
INITIAL_RATE = math.log1p(math.exp(INITIAL_RATE_LOGIT))   # extent_passivation scales its coverage by it


def path_mean_sigmoid(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """The mean of sigmoid(u) over u running linearly from a to b: (softplus(b) - softplus(a)) / (b - a)
    (sigmoid is softplus' derivative); sigmoid((a + b) / 2) where |b - a| < eps (error O((b - a)^2))."""
    d = b - a
    short = d.abs() < eps
    safe = torch.where(short, torch.ones_like(d), d)
    return torch.where(short, torch.sigmoid(0.5 * (a + b)), (F.softplus(b) - F.softplus(a)) / safe)


def path_mean_sigmoid_bent(a: torch.Tensor, b: torch.Tensor, power: torch.Tensor,
                           pieces: int = PATH_PIECES) -> torch.Tensor:
    """The mean of sigmoid(u) over an interval whose argument runs u(s) = b + (a - b)(1 - s)^p,
    s in [0, 1] (a power-law potential path seen through the gate's affine map): the path as
    ``pieces`` chords of equal duration between its points at s = i / pieces, each chord's mean in
    closed form (``path_mean_sigmoid``). A flat interval gives sigmoid(a) for any p; p = 1 gives the
    linear path exactly; a sharp gate's share is exact at the chords' ends."""
    s = torch.linspace(0.0, 1.0, pieces + 1, dtype=a.dtype, device=a.device)
    knots = b[..., None] + (a - b)[..., None] * (1 - s) ** power[..., None]        # [..., pieces + 1]
    return path_mean_sigmoid(knots[..., :-1], knots[..., 1:]).mean(-1)


def log1p_ratio(x: torch.Tensor) -> torch.Tensor:
    """log(1 + x) / x for x >= 0, smooth through x = 0 (1 - x / 2 + x^2 / 3 below 1e-4)."""
    small = x < 1e-4
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1 - x / 2 + x * x / 3, torch.log1p(safe) / safe)


class ExtentHead(nn.Module):
    """Reaction extent xi_k(tau) >= 0, non-decreasing in tau:
    xi(tau_j) = sum_{i <= j} softplus(g(tau_i, V(tau_i), composition, electrode)) (tau_i - tau_{i-1}),
    plus the positive per-reaction area coefficients alpha (solvent loss) and beta (SEI gain).
    Options (``sei_from_extents`` only): ``extent_chemistry`` zeroes the rates of reactions the cell
    cannot run, ``extent_onsets`` gates each rate below its onset potential (``onset_gate``; with
    ``onset_path``, averaged over each interval's potential path),
    ``extent_passivation`` slows the passivating reactions by their film (``_passivated``)."""

    def __init__(self, cfg: ABCCConfig, hidden: int = 32):
        super().__init__()
        self.n_freq = cfg.n_freq
        self.volt_mean, self.volt_std = cfg.volt_mean, cfg.volt_std
        # with sei_from_extents the rates read the whole protocol state (current, exposure history),
        # otherwise V alone (the mass term's extents, as saved models were trained)
        self.n_state = state_size(cfg) if cfg.sei_from_extents else 1
        self.electrode = nn.Embedding(cfg.n_electrodes, hidden)
        nn.init.zeros_(self.electrode.weight)   # unseen electrodes add nothing (see backbone.SourceCondition)
        self.net = nn.Sequential(nn.Linear(2 * cfg.n_freq + self.n_state + context_size(cfg), hidden), nn.SiLU(),
                                 nn.Linear(hidden, cfg.n_reactions))
        nn.init.zeros_(self.net[2].weight)
        nn.init.constant_(self.net[2].bias, INITIAL_RATE_LOGIT)  # extents start near 0 (INITIAL_RATE)
        self.alpha_raw = nn.Parameter(torch.full((cfg.n_reactions,), -2.0))
        self.beta_raw = nn.Parameter(torch.full((cfg.n_reactions,), -2.0))
        self.chemistry = ReactionChemistry(cfg) if cfg.extent_chemistry else None
        self._init_onsets(cfg)
        if cfg.extent_passivation > 0:
            # which reactions the film slows: the chemistry's own flags where the names are known
            slowed = ReactionChemistry.passivating(cfg) if cfg.extent_chemistry else torch.ones(cfg.n_reactions)
            self.register_buffer("slowed", slowed, persistent=False)
            A = float(cfg.extent_passivation)
            self.log_cover = nn.Parameter(torch.full((cfg.n_reactions,), math.log(A / INITIAL_RATE)))
            # passivating extents are reported x A / log(1 + A): one such reaction at the initial rate
            # ends where it would unslowed (the same SEI amplitude at the start of training)
            self.gain = A / math.log1p(A)
        else:
            self.slowed, self.log_cover = None, None

    def _init_onsets(self, cfg: ABCCConfig) -> None:
        """``extent_onsets``: E_k (from the tables where the reactions are named), a shift per
        (electrode, reaction) starting at 0, a width per reaction; reactions without electrons
        (EMC transesterification) are not gated."""
        self.onset_path = cfg.onset_path
        if not cfg.extent_onsets:
            self.onset = None
            return
        named = cfg.extent_chemistry     # ReactionChemistry(cfg) has checked the names
        tab = [chem.REACTIONS[n].onset for n in cfg.reactions] if named else [ONSET_DEFAULT_V] * cfg.n_reactions
        self.onset = nn.Parameter(torch.tensor([v if v <= ONSET_ALWAYS_V else ONSET_DEFAULT_V for v in tab]))
        self.onset_shift = nn.Embedding(cfg.n_electrodes, cfg.n_reactions)
        nn.init.zeros_(self.onset_shift.weight)
        self.onset_width_raw = nn.Parameter(torch.full((cfg.n_reactions,), math.log(math.expm1(ONSET_WIDTH_V))))
        self.register_buffer("gated", torch.tensor([float(v <= ONSET_ALWAYS_V) for v in tab]), persistent=False)
        if cfg.onset_path:    # the path's power p = PATH_POWER_MIN + softplus(raw), per electrode
            self.path_power_raw = nn.Embedding(cfg.n_electrodes, 1)
            nn.init.constant_(self.path_power_raw.weight, math.log(math.expm1(cfg.onset_path_power - PATH_POWER_MIN)))

    def onset_gate(self, volt: torch.Tensor, electrode: torch.Tensor, volt_prev: torch.Tensor = None) -> torch.Tensor:
        """``extent_onsets``: [B, T', K] in (0, 1): ~1 below reaction k's onset on this electrode (volt
        [B, T'] in V), ~0 above it; 1 for the reactions that are not gated. With ``volt_prev`` [B, T']
        (``onset_path``) the gate of interval j is the share of the interval spent below the onset on
        the path from volt_prev[j] to volt[j]: the sigmoid's mean over the electrode's power-law
        path (``path_mean_sigmoid_bent``; linear for p = 1)."""
        onset = (self.onset + self.onset_shift(electrode))[:, None]                     # [B, 1, K] V
        width = F.softplus(self.onset_width_raw) + 1e-3
        if volt_prev is None:
            gate = torch.sigmoid((onset - volt[..., None]) / width)
        else:
            power = PATH_POWER_MIN + F.softplus(self.path_power_raw(electrode))[:, None]      # [B, 1, 1]
            gate = path_mean_sigmoid_bent((onset - volt_prev[..., None]) / width, (onset - volt[..., None]) / width,
                                          power)
        return self.gated * gate + (1 - self.gated)

    def forward(self, taus, state, composition, electrode):
        """taus [B, T'] (ascending), state [B, T', n_state] the protocol state at them (column 0: V),
        composition [B, C] (the context), electrode [B] -> xi [B, T', K]."""
        B, Tp = taus.shape
        state = state[..., :self.n_state].reshape(B * Tp, -1)
        volt = (state[:, :1] - self.volt_mean) / self.volt_std
        feats = torch.cat([fourier_features(taus.reshape(-1), self.n_freq), volt, state[:, 1:],
                           composition.repeat_interleave(Tp, dim=0)], dim=-1)
        h = self.net[0](feats) + self.electrode(electrode).repeat_interleave(Tp, dim=0)
        rate = F.softplus(self.net[2](self.net[1](h))).view(B, Tp, -1)       # [B, T', K] >= 0
        if self.onset is not None:
            volt_v = state[:, 0].view(B, Tp)
            prev = torch.cat([volt_v[:, :1], volt_v[:, :-1]], dim=1) if self.onset_path else None
            rate = rate * self.onset_gate(volt_v, electrode, prev)
        if self.chemistry is not None:                                         # reactions the cell cannot run: 0
            rate = rate * self.chemistry.runs(composition).to(rate)[:, None]
        dtau = torch.diff(taus, dim=1, prepend=taus[:, :1]).clamp_min(0)[..., None]
        if self.log_cover is None:
            return torch.cumsum(rate * dtau, dim=1)
        return self._passivated(rate * dtau)

    def _passivated(self, growth: torch.Tensor) -> torch.Tensor:
        """``extent_passivation``: extents [B, T', K] from the unpassivated growth [B, T', K] (rate x
        dtau, the rate held over each interval). The film coverage theta grows with the passivating
        extents, d theta = sum_k c_k s_k dxi_k, and slows them, dxi_k = r_k exp(-s_k theta) dtau
        (s_k = 1 for a passivating reaction). With the rates held, one interval integrates exactly:
        exp(theta) grows by x_j = sum_k c_k s_k r_k dtau, so exp(theta_j) = 1 + cumsum(x) without a
        loop, and a passivating extent grows by r_k dtau exp(-theta_{j-1}) log(1 + y) / y,
        y = x_j exp(-theta_{j-1}) (logarithmic growth: any step size is stable; y -> 0 gives back the
        plain sum); passivating extents are reported x ``gain``."""
        s = self.slowed.to(growth)
        x = growth @ (torch.exp(self.log_cover).to(growth) * s)                      # [B, T']
        cover_prev = 1 + torch.cumsum(x, dim=1) - x                                  # exp(theta_{j-1})
        damp = log1p_ratio(x / cover_prev) / cover_prev
        xi = torch.cumsum(growth * (s * damp[..., None] + (1 - s)), dim=1)
        return xi * (1 + (self.gain - 1) * s)

    def coefficients(self):
        return F.softplus(self.alpha_raw), F.softplus(self.beta_raw)


class ReactionChemistry:
    """The stoichiometry of the reaction families (``data.chemistry.REACTIONS``, in the order of
    ``cfg.reactions``), for ``extent_chemistry``:

    - ``products(cfg)`` [K, M]: 1 where reaction k makes the film product of SEI template row m
      (any aging state), so each extent grows only its own reaction's products;
    - ``runs(context)`` [B, K]: 1 where reaction k can run in the cell: every component it consumes
      is held, or made by another reaction the cell runs (EMC transesterification gives DMC and DEC),
      as ``data.templates.reachable`` closes it. Reads the composition columns of the context."""

    def __init__(self, cfg: ABCCConfig):
        cfg.check_reaction_names()
        self.names, self.n_components = list(cfg.reactions), cfg.n_components
        self.reach = Reachability(cfg.components, [])
        comps = list(cfg.components)
        consumes = [chem.REACTIONS[n].consumes for n in self.names]
        self.needs = torch.tensor([[c in need for c in comps] for need in consumes])            # [K, C] bool
        # a reaction consuming a component the vocabulary lacks never runs
        self.possible = torch.tensor([all(c in comps for c in need) for need in consumes])      # [K] bool

    @staticmethod
    def passivating(cfg: ABCCConfig) -> torch.Tensor:
        """[K] 1 where reaction k's film passivates the electrode (its default, before electrode
        modifiers such as PC on graphite)."""
        cfg.check_reaction_names()
        return torch.tensor([float(chem.REACTIONS[n].passivating) for n in cfg.reactions])

    @staticmethod
    def products(cfg: ABCCConfig) -> torch.Tensor:
        cfg.check_reaction_names()
        rows = sei_template_products(cfg)
        return torch.tensor([[float(p in chem.REACTIONS[n].produces) for p in rows] for n in cfg.reactions])

    def runs(self, context: torch.Tensor) -> torch.Tensor:
        held = self.reach(context[:, :self.n_components] > 0)[0]                       # [B, C] bool
        needs, possible = self.needs.to(held.device), self.possible.to(held.device)
        missing = (needs[None] & ~held[:, None]).any(-1)                               # [B, K]
        return (possible[None] & ~missing).float()


class ReactionSpectra(nn.Module):
    """One non-negative spectrum per reaction family, P = softplus(mix) @ templates [K, W]: the SEI
    stream of ``sei_from_extents`` is xi(tau) @ P (the film products each reaction makes, along
    their aging states; OpIRSim's own SEI stream is linear in its extents to 2e-4 of its energy)."""

    def __init__(self, templates: torch.Tensor, n_reactions: int, allowed: torch.Tensor = None):
        """``allowed`` [K, M] (``extent_chemistry``): 1 where reaction k makes the product of template
        row m (``ReactionChemistry.products``); None: every reaction may mix every row."""
        super().__init__()
        self.register_buffer("templates", templates.float(), persistent=False)
        self.register_buffer("allowed", None if allowed is None else allowed.float(), persistent=False)
        g = torch.Generator().manual_seed(0)
        self.mix = nn.Parameter(-4.0 + 0.5 * torch.randn(n_reactions, templates.shape[0], generator=g))

    def forward(self, rows: torch.Tensor = None) -> torch.Tensor:
        """[K, W]; with rows [B, M] (the template rows each cell's chemistry allows) [B, K, W]."""
        mix = F.softplus(self.mix) if self.allowed is None else F.softplus(self.mix) * self.allowed
        if rows is None:
            return mix @ self.templates
        return (mix[None] * rows.to(mix.dtype)[:, None]) @ self.templates


def project_out(residual: torch.Tensor, nuisance: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """residual [B, T'] minus its least-squares fit on the per-sample nuisance columns [B, T', J].

    In float32 (float64 for float64 residuals) and outside autocast: under bf16 autocast the normal
    equations' products would come out in bf16 (and linalg.solve refuses mixed dtypes)."""
    dt = torch.float64 if residual.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=residual.device.type, enabled=False):
        res, nui = residual.to(dt), nuisance.to(dt)
        g = nui.transpose(1, 2) @ nui + eps * torch.eye(nui.shape[-1], dtype=dt, device=nui.device)
        coef = torch.linalg.solve(g, nui.transpose(1, 2) @ res[..., None])                # [B, J, 1]
        return res - (nui @ coef)[..., 0]


LABEL_ENERGY_MIN_AU2 = 1e-10   # sei_label_floor: the least denominator (AU^2: a 1e-5 AU film over the whole grid), so
                               # a sample without any film (label 0) weighs its SEI stream finitely


def sei_label_term(traj: dict, label_raw, norm_std: float, floor: float = 0.0) -> torch.Tensor:
    """``w_sei_label``: mean over the trajectory frames after tau = 0 of ||sei - label||^2 / W (z-units);
    ``label_raw`` [B, T, W] (AU) the template fit of the frames that the trainer adds to each batch
    (``analysis.sei_labels``), ``traj`` the r = 0 trajectories (sei [B, T', W] at frames idx, taus).
    ``floor`` > 0 (``sei_label_floor``): each frame's error relative to e_t + floor x max_t e_t, e_t the
    label's energy ||label_t||^2 / W (+ LABEL_ENERGY_MIN_AU2): a film's first interval, where its amount is a
    small part of the largest, weighs as much as its last (the onsets are read from fractions of the largest)."""
    if label_raw is None:
        raise ValueError("w_sei_label > 0 needs the batch's 'sei_label' [B, T, W]: train with abcc_fast.train.train "
                         "(abcc train), which adds the template-fit labels (abcc_fast.analysis.sei_labels)")
    sei = traj["sei"]
    W = sei.shape[-1]
    full = label_raw.to(sei.device, sei.dtype) / norm_std                              # [B, T, W]
    label = torch.gather(full, 1, traj["idx"][..., None].expand(-1, -1, W))
    scored = (traj["taus"] > 0).to(sei.dtype)                                          # [B, T']
    err = (sei - label).pow(2).mean(-1)                                                # [B, T']
    if floor > 0:
        energy = label.pow(2).mean(-1)
        ref = full.pow(2).mean(-1).amax(1, keepdim=True)                               # [B, 1]
        err = err / (energy + floor * ref + LABEL_ENERGY_MIN_AU2 / norm_std ** 2)
    return (err * scored).sum() / scored.sum().clamp_min(1)


def mass_conservation(solvent, sei, static_z, extent, alpha, beta, nuisance=None) -> torch.Tensor:
    """Solvent area lost and SEI area gained, each tied to the reaction extents: mean over samples
    and times of (area loss - xi alpha)^2 + (area gain - xi beta)^2. ``nuisance`` [B, T', J]: columns
    of solvent-area changes that are not reactions (the static spectrum's own contact gain, a gain
    drift over the cycle, salt polarisation following the current); the solvent residual is
    penalised only outside their per-sample least-squares fit."""
    area_solvent_loss = (static_z[:, None] - solvent).mean(-1)          # [B, T']
    area_sei_gain = sei.mean(-1)
    res_solvent = area_solvent_loss - extent @ alpha
    if nuisance is not None:
        res_solvent = project_out(res_solvent, nuisance.to(res_solvent.dtype))
    return (res_solvent.pow(2) + (area_sei_gain - extent @ beta).pow(2)).mean()


def marker_slices(wavenumber, marker_windows: dict) -> list:
    """[(name, i0, i1)] of the marker windows inside the grid with enough points for a centroid."""
    wn = torch.as_tensor(wavenumber, dtype=torch.float64)
    out = []
    for name in sorted(marker_windows):
        lo, hi = marker_windows[name]
        idx = torch.nonzero((wn >= lo) & (wn <= hi)).reshape(-1)
        if idx.numel() >= 2 * PEAK_EDGE_POINTS + 2:
            out.append((name, int(idx[0]), int(idx[-1])))
    return out


def band_centroids(frames_raw: torch.Tensor, wavenumber: torch.Tensor, slices: list, *,
                   with_area: bool = False):
    """Differentiable band centroids (cm^-1) [..., n_windows], OpIRBench's definition: a = clip(x -
    edge baseline, 0), centroid = sum(nu a) / sum(a) (window middle when the area is 0). With
    ``with_area`` also the mean baseline-corrected absorbance a of each window [..., n_windows]."""
    k = PEAK_EDGE_POINTS
    cents, areas = [], []
    for _, i0, i1 in slices:
        seg = frames_raw[..., i0:i1 + 1]
        nu = wavenumber[i0:i1 + 1]
        nu_l, nu_r = nu[:k].mean(), nu[-k:].mean()
        a_l, a_r = seg[..., :k].mean(-1, keepdim=True), seg[..., -k:].mean(-1, keepdim=True)
        a = (seg - (a_l + (a_r - a_l) * (nu - nu_l) / (nu_r - nu_l))).clamp_min(0.0)
        area = a.sum(-1)
        safe = torch.where(area > 0, area, torch.ones_like(area))
        cents.append(torch.where(area > 0, (a * nu).sum(-1) / safe, 0.5 * (nu[0] + nu[-1])))
        areas.append(area / seg.shape[-1])
    if with_area:
        return torch.stack(cents, -1), torch.stack(areas, -1)
    return torch.stack(cents, -1)


def band_mask(static_raw: torch.Tensor, mean_area: torch.Tensor, fraction: float = 0.02) -> torch.Tensor:
    """[B, n_windows] 1 where a window holds a real band in the data (mean baseline-corrected
    absorbance above `fraction` of the spectrum's maximum); centroids of empty windows are noise."""
    peak = static_raw.amax(-1, keepdim=True).clamp_min(1e-12)
    return (mean_area > fraction * peak).to(static_raw.dtype)


def peak_drift(pred_cent: torch.Tensor, data_cent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Huber (1 cm^-1) mismatch of the centroid drift since the first trajectory point, over the
    windows with a band (mask [B, n_windows])."""
    dp = pred_cent[:, 1:] - pred_cent[:, :1]
    dd = data_cent[:, 1:] - data_cent[:, :1]
    if dp.numel() == 0:
        return pred_cent.new_zeros(())
    h = F.smooth_l1_loss(dp, dd, beta=1.0, reduction="none") * mask[:, None]
    return h.sum() / (mask.sum() * dp.shape[1]).clamp_min(1)


def centroid_acceleration(cent: torch.Tensor, taus: torch.Tensor, T: int) -> torch.Tensor:
    """[B, T'-2, n_windows] c''(tau) h^2 with h = 1 / (T - 1) (= the plain second difference on the
    full frame grid; divided differences for a subset of frames), cm^-1."""
    t = taus[..., None]
    d1 = (cent[:, 1:] - cent[:, :-1]) / (t[:, 1:] - t[:, :-1]).clamp_min(1e-6)
    d2 = 2 * (d1[:, 1:] - d1[:, :-1]) / (t[:, 2:] - t[:, :-2]).clamp_min(1e-6)
    return d2 / (T - 1) ** 2


def peak_acceleration(pred_cent: torch.Tensor, taus: torch.Tensor, mask: torch.Tensor, T: int,
                      data_cent: torch.Tensor = None) -> torch.Tensor:
    """Mean squared centroid acceleration (``centroid_acceleration``) over the windows with a band;
    with ``data_cent`` only the predicted acceleration beyond the data's, relu(|a(pred)| - |a(data)|)."""
    if pred_cent.shape[1] < 3:
        return pred_cent.new_zeros(())
    acc = centroid_acceleration(pred_cent, taus, T)
    if data_cent is not None:
        acc = F.relu(acc.abs() - centroid_acceleration(data_cent, taus, T).abs())
    return (acc.pow(2) * mask[:, None]).sum() / (mask.sum() * acc.shape[1]).clamp_min(1)


def mass_nuisance(taus: torch.Tensor, state_tau: torch.Tensor, current_proxy: bool) -> torch.Tensor:
    """[B, T', 3] solvent-area changes that no reaction makes: a step after tau = 0 (the static
    spectrum is a separate measurement with its own contact), tau (gain drift over the cycle)
    and the current proxy at tau (salt polarisation follows the current; zeros without it)."""
    current = state_tau[..., 1] if current_proxy else torch.zeros_like(taus)
    return torch.stack([(taus > 0).to(taus.dtype), taus, current], dim=-1)


def peak_terms(cfg: ABCCConfig, inp: dict, traj: dict, wavenumber: torch.Tensor, slices: list) -> dict:
    """peak_drift and peak_acceleration of the r = 0 trajectories over the marker windows with a band."""
    out = {}
    std, mean = cfg.norm_std, cfg.norm_mean
    wn = wavenumber.to(inp["static"].dtype)
    pred_c = band_centroids(traj["frames_hat"] * std + mean, wn, slices)
    with torch.no_grad():
        data_c, data_area = band_centroids(traj["frames_traj"] * std + mean, wn, slices, with_area=True)
        band = band_mask(inp["static_raw"], data_area[:, 0])
        # the trajectory's first point is tau = 0, where the prediction is the static spectrum: the
        # data's drift is measured from the same reference (not from frame 0, a separate measurement
        # with its own contact)
        data_c = torch.cat([band_centroids(inp["static_raw"], wn, slices)[:, None], data_c[:, 1:]], dim=1)
    if cfg.w_peak_drift > 0:
        out["peak_drift"] = peak_drift(pred_c, data_c, band)
    if cfg.w_peak_accel > 0:
        out["peak_accel"] = peak_acceleration(pred_c, traj["taus"], band, inp["frames"].shape[1],
                                              data_c if cfg.peak_accel == "excess" else None)
    return out


def constraint_terms(cfg: ABCCConfig, inp: dict, traj: dict, extent_head, wavenumber: torch.Tensor,
                     slices: list) -> dict:
    """The weighted-on physics and spectrum terms of ABCC's r = 0 trajectories (``traj``: solvent,
    sei, taus, state_tau, frames_hat, frames_traj; ``inp``: static, static_raw, frames, context,
    electrode), by name."""
    solvent, sei, static = traj["solvent"], traj["sei"], inp["static"]
    parts = {}
    if cfg.w_sei_nonneg > 0:
        parts["sei_nonneg"] = sei_nonnegative(sei)
    if cfg.w_sei_growth > 0:
        parts["sei_growth"] = sei_growth(sei)
    if cfg.w_sei_sparsity > 0:
        parts["sei_sparsity"] = sei_sparsity(sei)
    if cfg.w_solvent_new_bands > 0:
        mask = no_band_mask(inp["static_raw"], cfg.new_band_threshold, cfg.new_band_dilate)
        parts["solvent_new_bands"] = solvent_new_bands(solvent, static, mask)
    if cfg.w_smooth > 0:
        parts["smooth"] = wavenumber_smoothness(solvent, sei, static)
    if cfg.w_mass > 0 and extent_head is not None:
        extent = extent_head(traj["taus"], traj["state_tau"], inp["context"], inp["electrode"])
        alpha, beta = extent_head.coefficients()
        nuisance = mass_nuisance(traj["taus"], traj["state_tau"], cfg.current_proxy) if cfg.mass_nuisance else None
        parts["mass"] = mass_conservation(solvent, sei, static, extent, alpha, beta, nuisance)
    if (cfg.w_peak_drift > 0 or cfg.w_peak_accel > 0) and slices:
        parts.update(peak_terms(cfg, inp, traj, wavenumber, slices))
    return parts
