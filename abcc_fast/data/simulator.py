"""OpIRSim: a physics-based simulator of operando ATR-IR spectra of the first formation cycle.

Forward model (docs/opirsim.md), per sample, frame t and wavenumber nu::

    A(nu,t) = g(t) G_ATR(nu) [ sum_i c_i,free(t) S_i,free(nu) + c_i,bound(t) S_i,bound(nu)
                               + sum_a c_a,free S_a,free + c_a,pair S_a,pair + sum_d m_d(t) S_d ]
                      * exp(-2 L(t) / d_p(nu))                                    -> ``solvent``
            + G_film sum_p n_p(t) S_p(nu; drift_p(t), broadening_p(t))            -> ``sei``
            + B(nu,t) + E(nu) theta(t) + atmospheric residue                       -> baseline
            + eps(nu,t)  heteroscedastic, sigma(nu) ~ sigma_0 10^A(nu)             -> noise

- free/bound split from the solvation rule (``speciation``) with the local salt concentration
  c_Li(t) = c0 (1 + pi(t)), pi a first-order lag (time constant of minutes) driven by the current
  (salt depletion during lithiation); anion ion pairing by mass action;
- G_ATR(nu) proportional to d_p(nu) ~ 1/nu (crystal-dependent d_p at 1000 cm^-1);
- electrolyte displaced by the film: factor exp(-2 L / d_p(nu));
- reaction kinetics dxi_k/dt = k_k sigma((E_onset,k - E)/w_k) (1 - theta_pass) c/(c + K_m) with the
  stoichiometry of chemistry.REACTIONS, passivation theta = L_pass / L_max (not for PC on
  graphite), fresh Li on Cu/Li and cracking on Si re-exposing surface;
- SEI product bands grow with their amounts, drift (1-10 cm^-1) and broaden (10-30 %) as the film
  ages; soluble dimers (DMDOHC/DEDOHC) live in the electrolyte and leave the probed volume;
- baseline drift (Legendre polynomials, 1e-3..1e-2 AU, occasional re-seating jumps), electrode
  broadband term scaled by the state of charge, water-vapour/CO2 residue, slow gain drift;
- instrument: 4 cm^-1 resolution, Happ-Genzel apodisation (the instrument line shape is convolved
  into every template).

The static spectrum is a separate measurement of the pristine cell: the same electrolyte at rest, with
its own baseline, atmospheric residue and noise.

Everything is vectorised over samples; templates are precomputed once per grid (``Basis``), so one
frame is a few small matrix products. Each sample's random numbers come from its own generator
seeded by (seed, sample index), so any chunking gives the same bytes.

The simulator is three modules: ``draws`` (the random draws, by name, and the parameters they map
to), ``physics`` (templates, reaction network, speciation, protocol, kinetics) and this one, which
assembles the spectra, generates datasets and caches the default one.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import chemistry as chem
from . import draws
from . import protocols as proto
# the draws and physics names below are also read as abcc_fast.data.simulator.<name> (tests, bench/)
from .draws import (CONTACT_LO, CONTACT_SPAN, CONTACT_UNIFORM, HIDDEN_DRAWS, HIDDEN_UNIFORMS, N_FRAME_NORMALS,  # noqa: F401
                    N_UNIFORM, STATIC_GAIN_MAX, STATIC_GAIN_UNIFORM, Z_CO2, Z_LEGENDRE, Z_RESEAT, Z_WATER,
                    conditional_randoms, draw_randoms, sample_parameters)
from .format import SHARD_SAMPLES, DatasetWriter, load
from .physics import (AGING_STATES, CRYSTALS, DP_1000_NM, Basis, Network, cycling_protocol,  # noqa: F401
                      happ_genzel_ils, initial_concentrations, integrate_kinetics, pseudo_voigt, render_species,
                      speciation)

GENERATOR_NAME = "OpIRSim"
GENERATOR_VERSION = "1.2.0"
DEFAULT_N_SAMPLES = 7118


@dataclass
class SimConfig:
    """Grid and instrument settings shared by every sample of a dataset."""
    T: int = 32
    W: int = 512
    wn_range: tuple = (700.0, 1900.0)
    resolution: float = 4.0       # cm^-1, Happ-Genzel apodised
    substeps: int = 8             # kinetics steps between two frames
    systems: Optional[Sequence[int]] = None  # system numbers to draw from (default: all 10)

    def grid(self) -> np.ndarray:
        return np.linspace(self.wn_range[0], self.wn_range[1], self.W)

    def system_numbers(self) -> list[int]:
        nums = list(self.systems) if self.systems else [s.number for s in chem.SYSTEMS]
        valid = {s.number for s in chem.SYSTEMS}
        for n in nums:
            if n not in valid:
                raise ValueError(f"unknown system {n!r}; systems are numbered 1..10 as in docs/opirsim.md")
        return nums

    def validate(self) -> None:
        if self.T < 2:
            raise ValueError(f"T must be >= 2 frames, got {self.T}")
        if self.W < 16:
            raise ValueError(f"W must be >= 16 wavenumber points, got {self.W}")
        lo, hi = self.wn_range
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
            raise ValueError(f"wavenumber range must be 0 < start < stop, got {self.wn_range}")
        self.system_numbers()

    def to_json(self) -> dict:
        return {"T": self.T, "W": self.W, "wn_range": list(self.wn_range), "resolution": self.resolution,
                "substeps": self.substeps, "systems": self.system_numbers()}

    @classmethod
    def from_json(cls, d: dict) -> "SimConfig":
        """The inverse of ``to_json`` (a manifest's generator config; extra keys such as n_samples are
        ignored): the settings to re-simulate a dataset's samples."""
        return cls(T=int(d["T"]), W=int(d["W"]), wn_range=(float(d["wn_range"][0]), float(d["wn_range"][1])),
                   resolution=float(d.get("resolution", 4.0)), substeps=int(d.get("substeps", 8)),
                   systems=d.get("systems"))




def _f32(a: np.ndarray) -> np.ndarray:
    """float32 copy with values below 1e-30 flushed to zero: float32 denormals (Gaussian tails,
    sigmoid tails) make BLAS and ufuncs 10-100x slower."""
    a = np.asarray(a, dtype=np.float32)
    return np.where(np.abs(a) < 1e-30, np.float32(0.0), a)


# ---------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------
class OpIRSim:
    """Vectorised OpIRSim for one grid/config. ``simulate(indices, seed)`` -> dict of arrays.

    Example::

        sim = OpIRSim(SimConfig(T=32, W=512))
        out = sim.simulate(np.arange(64), seed=0)
        out["frames"].shape   # (64, 32, 512)
    """

    def __init__(self, config: Optional[SimConfig] = None):
        self.config = config or SimConfig()
        self.config.validate()
        self.wavenumber = self.config.grid()
        self.basis = Basis(self.wavenumber, self.config.resolution)
        self.net = Network()
        self.system_numbers = self.config.system_numbers()
        self._electrolyte32 = _f32(self.basis.electrolyte)
        self._electrolyte_t = torch.from_numpy(self._electrolyte32)
        self._sei_t = torch.from_numpy(_f32(self.basis.sei.reshape(-1, self.wavenumber.size)))
        self._baseline_t = torch.from_numpy(_f32(self.basis.baseline))
        self._wn_k = torch.from_numpy(_f32(self.wavenumber / 1000.0))

    def system_of(self, indices: np.ndarray) -> np.ndarray:
        """0-based system positions of global sample indices (balanced round robin)."""
        nums = np.asarray(self.system_numbers)
        return nums[np.asarray(indices) % len(nums)] - 1

    def simulate(self, indices: Sequence[int], seed: int = 0, overrides: Optional[dict] = None,
                 return_extras: bool = False, randoms: Optional[tuple] = None,
                 modifiers: Optional[dict] = None) -> dict:
        """Simulate the samples with global indices ``indices``.

        Returns float32 arrays: ``static`` [S, W], ``frames``, ``solvent``, ``sei`` [S, T, W],
        ``voltage``, ``time_s`` [S, T], ``extent`` [S, T, K], ``composition`` [S, C]; int64
        ``system``, ``electrode`` [S]. With ``return_extras``: also ``baseline`` [S, T, W], ``params``
        (dict), ``concentrations`` [S, T, C], ``polarisation`` [S, T], ``film_nm`` [S, T],
        ``noise_sigma`` [S], ``x`` [S, T]. ``randoms``: (U, Z, noise) as ``draw_randoms`` returns them,
        to use instead of the per-sample draws (``conditional_randoms`` builds such sets).
        ``modifiers``: {(reaction, electrode): (onset shift V, rate factor, passivating)} in place of
        ``chemistry.ELECTRODE_MODIFIERS``.
        """
        cfg = self.config
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        T, W = cfg.T, cfg.W
        U, Z, noise = draw_randoms(seed, idx, T, W) if randoms is None else randoms
        # read through the module: abcc_fast.vocabulary extends the parameters of extra components
        p = draws.sample_parameters(U, self.system_of(idx), overrides)
        c0 = initial_concentrations(p)
        pr = cycling_protocol(p, c0, (T - 1) * cfg.substeps)
        st = integrate_kinetics(self.net, p, c0, pr, T, cfg.substeps, modifiers)

        dp1000 = np.array([DP_1000_NM[CRYSTALS[k]] for k in p["crystal"]])
        atr_amp = p["contact"] * dp1000 / DP_1000_NM["diamond"]            # G_ATR prefactor
        solvent = self._solvent_stream(p, st, atr_amp, dp1000)
        sei = self._sei_stream(p, st["n_film"])
        # baseline, electrode broadband, atmosphere
        base = self._baseline_coefs(p, Z, st, pr)                              # [S, T+1, 8]
        S = idx.size
        baseline = (torch.from_numpy(_f32(base).reshape(S * (T + 1), -1)) @ self._baseline_t).reshape(S, T + 1, W)
        frames, sigma, edge = self._frames(p, solvent, sei, baseline, noise)
        baseline_static = baseline[:, T]
        solvent, sei, frames, baseline = solvent.numpy(), sei.numpy(), frames.numpy(), baseline.numpy()
        static = self._static_spectrum(p, c0, atr_amp, baseline_static.numpy(), sigma, edge, noise[:, T])

        c_all = st["c"][:, 0]
        composition = c_all / c_all.sum(1, keepdims=True)
        out = {
            "static": static.astype(np.float32, copy=False),
            "frames": frames,
            "voltage": st["E"].astype(np.float32),
            "time_s": (st["t_h"] * 3600.0).astype(np.float32),
            "system": p["system"].astype(np.int64),
            "composition": composition.astype(np.float32),
            "electrode": p["electrode"].astype(np.int64),
            "solvent": solvent,
            "sei": sei,
            "extent": st["xi"].astype(np.float32),
        }
        if return_extras:
            out.update(baseline=baseline[:, :T], static_baseline=baseline[:, T], params=p,
                       concentrations=st["c"], polarisation=st["pol"], film_nm=st["L"],
                       noise_sigma=p["noise_sigma"], x=st["x"], n_film=st["n_film"],
                       exfoliating=pr["exfoliating"])
        return out

    def _solvent_stream(self, p: dict, st: dict, atr_amp: np.ndarray, dp1000: np.ndarray) -> torch.Tensor:
        """[S, T, W] electrolyte stream: speciation at the local salt concentration, ATR prefactor and
        gain drift, displaced by the film."""
        B = self.basis
        S, T, W = st["c"].shape[0], self.config.T, self.config.W
        free, bound = speciation(st["c"], st["pol"], p["solvation_number"][:, None])
        coef = np.zeros((S, T, B.electrolyte.shape[0]))
        for i, name in enumerate(chem.COMPONENT_NAMES):
            coef[..., B.free_row[name]] = free[..., i]
            coef[..., B.bound_row[name]] = bound[..., i]
        for q, name in enumerate(chem.SOLUBLE_SPECIES):
            coef[..., B.soluble_row[name]] = st["m_sol"][..., q]
        tau = np.linspace(0.0, 1.0, T)
        gain = 1.0 + p["gain_drift"][:, None] * tau[None, :]                   # [S, T]
        coef *= (atr_amp[:, None] * gain)[..., None]
        # the heavy [S, T, W] work runs in torch (multi-threaded matmul and elementwise ops)
        solvent = (torch.from_numpy(_f32(coef).reshape(S * T, -1)) @ self._electrolyte_t).reshape(S, T, W)
        # displacement of electrolyte by the film: exp(-2 L / d_p(nu)), d_p = dp1000 * 1000/nu
        disp_rate = _f32(2.0 * st["L"] / dp1000[:, None])       # [S, T] per (1000/nu)
        solvent.mul_(torch.exp(torch.from_numpy(-disp_rate)[..., None] * self._wn_k))
        return solvent

    def _sei_stream(self, p: dict, n_film: np.ndarray) -> torch.Tensor:
        """[S, T, W] SEI stream: product amounts [S, T, P] on aging-state templates (drift + broadening)."""
        S, T, P = n_film.shape
        J = AGING_STATES
        age = (1.0 - np.exp(-n_film / p["aging_molar"][:, None, None])) * (J - 1)
        j0 = np.minimum(np.floor(age).astype(np.int64), J - 2)
        w1 = age - j0
        sei_coef = np.zeros((S, T, P, J))
        np.put_along_axis(sei_coef, j0[..., None], (n_film * (1 - w1))[..., None], axis=-1)
        np.put_along_axis(sei_coef, (j0 + 1)[..., None], (n_film * w1)[..., None], axis=-1)
        return (torch.from_numpy(_f32(sei_coef).reshape(S * T, P * J)) @ self._sei_t).reshape(S, T, self.config.W)

    def _frames(self, p: dict, solvent: torch.Tensor, sei: torch.Tensor, baseline: torch.Tensor,
                noise: np.ndarray):
        """(frames [S, T, W], noise sigma [S], fibre edge factor [S, W]): the clean sum with
        heteroscedastic noise sigma(nu) = sigma_0 10^A(nu), larger near fibre cut-offs."""
        T = self.config.T
        clean = solvent + sei
        clean += baseline[:, :T]
        sigma = p["noise_sigma"].astype(np.float32)
        cutoff = 1.0 + 4.0 / (1.0 + np.exp(-(900.0 - self.wavenumber) / 15.0))
        fibre = (np.array(CRYSTALS)[p["crystal"]] == "fibre")[:, None]
        edge = _f32(np.where(fibre, cutoff[None, :], 1.0))                      # [S, W]
        frames = clean.clamp(-1.0, 2.0).mul_(math.log(10.0)).exp_()
        frames.mul_(torch.from_numpy(sigma[:, None] * edge)[:, None, :]).mul_(torch.from_numpy(noise[:, :T]))
        frames.add_(clean)
        return frames, sigma, edge

    def _static_spectrum(self, p: dict, c0: np.ndarray, atr_amp: np.ndarray, baseline_static: np.ndarray,
                         sigma: np.ndarray, edge: np.ndarray, noise_static: np.ndarray) -> np.ndarray:
        """[S, W] the static spectrum: the pristine cell at rest, a separate measurement (own baseline
        and noise)."""
        B = self.basis
        S = c0.shape[0]
        free0, bound0 = speciation(c0, np.zeros(S), p["solvation_number"])
        coef0 = np.zeros((S, B.electrolyte.shape[0]))
        for i, name in enumerate(chem.COMPONENT_NAMES):
            coef0[:, B.free_row[name]] = free0[:, i]
            coef0[:, B.bound_row[name]] = bound0[:, i]
        # a separate measurement: the cell re-seated on the crystal gives a slightly different contact
        static_gain = 1.0 + p["static_gain"]
        static_clean = _f32(coef0 * (atr_amp * static_gain)[:, None]) @ self._electrolyte32
        static_clean = static_clean + baseline_static
        s_sigma = sigma * p["static_noise_factor"].astype(np.float32)
        return static_clean + (s_sigma[:, None] * np.power(np.float32(10.0), np.clip(static_clean, -1, 2))
                               * edge * noise_static)

    def conditional_mean(self, indices: Sequence[int], seed: int = 0, replicates: int = 16,
                         draw_seed: int = 0, overrides: Optional[dict] = None,
                         modifiers: Optional[dict] = None) -> dict:
        """Monte-Carlo mean of ``frames``, ``solvent`` and ``sei`` over the parameters no input reveals
        (HIDDEN_DRAWS, operando baseline/atmosphere normals, frame noise, the contact/static-gain
        split of the static spectrum's scale), the inputs of each sample
        held fixed: the best any predictor of these inputs can do in mean squared error, up to the
        Monte-Carlo error (the MSE of a mean of M draws exceeds the bound by the hidden variance / M).

        Returns float32 ``frames``, ``solvent``, ``sei`` [S, T, W] and ``static`` [S, W] (identical to
        the dataset's static spectra: the inputs are not redrawn). ``overrides`` and ``modifiers``
        (see ``simulate``) change the physics the replicates are simulated with, e.g. to leave out
        an electrode effect a model could not have learned (``opirbench.oracle``)."""
        cfg = self.config
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        M = int(replicates)
        if M < 1:
            raise ValueError(f"replicates must be >= 1, got {replicates}")
        randoms = conditional_randoms(seed, idx, cfg.T, cfg.W, M, draw_seed)
        out = self.simulate(np.tile(idx, M), seed=seed, randoms=randoms, overrides=overrides, modifiers=modifiers)
        S = idx.size
        res = {k: out[k].reshape(M, S, cfg.T, cfg.W).mean(0, dtype=np.float64).astype(np.float32)
               for k in ("frames", "solvent", "sei")}
        res["static"] = out["static"][:S]
        return res

    def _baseline_coefs(self, p: dict, Z: np.ndarray, st: dict, pr: dict) -> np.ndarray:
        """[S, T+1, 8] coefficients of the baseline basis: frames 0..T-1, then the static spectrum."""
        S, T1, _ = Z.shape
        T = T1 - 1
        scale = p["baseline_scale"][:, None]
        order = np.array([1.0, 0.5, 0.3, 0.2])
        tau = np.linspace(0.0, 1.0, T)[None, :]
        coefs = np.zeros((S, T + 1, 8))
        for q in range(4):
            offset = 0.5 * Z[:, 0, Z_LEGENDRE + q][:, None]
            drift = Z[:, 1, Z_LEGENDRE + q][:, None] * tau                       # slow drift over the cycle
            walk = 0.15 * np.cumsum(Z[:, 2:T + 2, Z_LEGENDRE + q], axis=1) / math.sqrt(T) if T > 1 else 0.0
            walk = np.concatenate([np.zeros((S, 1)), walk[:, :T - 1]], axis=1) if T > 1 else np.zeros((S, 1))
            coefs[:, :T, q] = scale * order[q] * (offset + drift + walk)
            coefs[:, T, q] = scale[:, 0] * order[q] * 0.5 * Z[:, T, Z_LEGENDRE + q]   # static: own baseline
        # re-seating: an abrupt offset/slope change at a random frame
        k_star = np.floor(1 + p["reseat_pos"] * (T - 1)).astype(int)
        jump = (np.arange(T)[None, :] >= k_star[:, None]) & p["reseat"][:, None]
        coefs[:, :T, 0] += jump * scale * 1.5 * np.sign(Z[:, 0, Z_RESEAT])[:, None]
        coefs[:, :T, 1] += jump * scale * 0.7 * Z[:, 1, Z_RESEAT][:, None]
        # electrode broadband term E(nu) theta(t), theta = state of charge (Gervillie 2022)
        el = np.array(chem.ELECTRODES)[p["electrode"]]
        el_factor = np.select([el == "graphite", el == "Si", el == "LTO"], [1.0, 1.0, 0.5], 0.3)
        theta = np.clip(st["x"], 0.0, 1.0)
        amp = (p["electrode_term"] * el_factor)[:, None] * theta
        coefs[:, :T, 4] = amp
        coefs[:, :T, 5] = amp * p["electrode_slope"][:, None]
        # atmospheric residue: water vapour and CO2, random small amplitude per measurement
        atm = p["atmosphere"][:, None]
        coefs[:, :, 6] = atm * Z[:, :, Z_WATER]
        coefs[:, :, 7] = atm * Z[:, :, Z_CO2]
        return coefs




# ---------------------------------------------------------------------------------------------
# Dataset generation
# ---------------------------------------------------------------------------------------------
def build_manifest(sim: OpIRSim, seed: int, n_samples: int, name: Optional[str] = None) -> dict:
    """Manifest of an OpIRSim dataset (everything except shards/splits/normalisation)."""
    sei_area = dict(zip(sim.net.names, sim.net.sei_area_per_extent(sim.basis).tolist()))
    cfg = sim.config.to_json()
    cfg["n_samples"] = int(n_samples)
    return {
        "name": name or f"opirsim-v{GENERATOR_VERSION}-seed{seed}",
        "generator": {"name": GENERATOR_NAME, "version": GENERATOR_VERSION, "seed": int(seed),
                      "config": cfg},
        "systems": chem.system_table(),
        "components": list(chem.COMPONENT_NAMES),
        "electrodes": list(chem.ELECTRODES),
        "reactions": list(sim.net.names),
        # stoichiometry; sei_area_per_extent = in-window integral of the `sei` field
        # (AU cm^-1) per unit extent: integral(sei[t]) = sum_k sei_area_per_extent_k * extent[t, k]
        "stoichiometry": chem.stoichiometry_table(sei_area),
        "marker_windows": {k: list(v) for k, v in chem.MARKER_WINDOWS.items()},
        "units": {"wavenumber": "cm^-1", "absorbance": "AU", "voltage": "V vs Li/Li+",
                  "time_s": "s", "extent": "mol/L of probed electrolyte", "composition": "mole fraction"},
        "protocols": list(proto.PROTOCOLS),
        "synthetic": True,
    }


def generate(out_dir, n_samples: int = DEFAULT_N_SAMPLES, T: int = 32, W: int = 512,
             wn_range=(700.0, 1900.0), systems: Optional[Sequence[int]] = None, seed: int = 0,
             progress: bool = True, name: Optional[str] = None, shard_samples: Optional[int] = None) -> Path:
    """Generate an OpIRSim dataset directory (atomically) and return its path.

    ``systems``: system numbers (docs/opirsim.md) to draw from (default all 10; sample i gets system
    ``systems[i % len(systems)]``). Deterministic: the same arguments give the same bytes on the
    same platform (per-sample generators seeded by (seed, i); shards of ``shard_samples``).

    Example::

        path = generate("/tmp/opirsim_small", n_samples=200, T=16, W=256, seed=1)
        ds = load(path)
    """
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    cfg = SimConfig(T=int(T), W=int(W), wn_range=(float(wn_range[0]), float(wn_range[1])),
                    systems=list(systems) if systems else None)
    sim = OpIRSim(cfg)
    manifest = build_manifest(sim, seed, n_samples, name)
    chunk = int(shard_samples or SHARD_SAMPLES)
    bar = None
    if progress:
        bar = tqdm(total=int(n_samples), desc="OpIRSim", unit="sample")
    try:
        with DatasetWriter(out_dir, manifest, sim.wavenumber.astype(np.float32)) as writer:
            for lo in range(0, int(n_samples), chunk):
                idx = np.arange(lo, min(int(n_samples), lo + chunk))
                out = sim.simulate(idx, seed=seed)
                writer.add(out)
                if bar is not None:
                    bar.update(idx.size)
    finally:
        if bar is not None:
            bar.close()
    return Path(out_dir)


def default_cache_dir() -> Path:
    return Path(os.environ.get("ABCC_DATA_DIR") or Path.home() / ".cache" / "abcc_fast")


def default_dataset_path(seed: int = 0) -> Path:
    return default_cache_dir() / f"opirsim-v{GENERATOR_VERSION}-seed{seed}-n{DEFAULT_N_SAMPLES}-T32-W512"


def default_dataset(progress: bool = True, seed: int = 0):
    """The embedded default dataset (7,118 samples, T=32, W=512 over 700-1900 cm^-1).

    Generated on first use into ``$ABCC_DATA_DIR`` (or ``~/.cache/abcc_fast/``), named by generator
    version and seed, then loaded. A cached copy that fails validation is regenerated."""
    import fcntl  # POSIX only: imported where the cache lock is taken

    path = default_dataset_path(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one generator at a time (several ranks or commands may ask at once); the others wait, then load
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (path / "manifest.json").exists():
                try:
                    return load(path)
                except ValueError as err:
                    warnings.warn(f"cached default dataset is invalid ({err}); regenerating it")
            generate(path, n_samples=DEFAULT_N_SAMPLES, seed=seed, progress=progress)
            return load(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
