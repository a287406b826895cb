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
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from . import chemistry as chem
from . import protocols as proto

GENERATOR_NAME = "OpIRSim"
GENERATOR_VERSION = "1.2.0"
DEFAULT_N_SAMPLES = 7118
N_UNIFORM = 96          # uniforms per sample (parameter draws)
N_FRAME_NORMALS = 8     # per-frame normals (baseline random walk, atmosphere, ...)
AGING_STATES = 5        # SEI templates along the aging coordinate (drift + broadening)

CRYSTALS = ["diamond", "Ge", "Si", "fibre"]
# d_p at 1000 cm^-1 (nm), 45 deg, electrolyte n ~1.42: diamond/ZnSe 1.7 um, Ge 0.65, Si 0.81;
# chalcogenide fibre (assumption: similar to diamond, but noisy below ~900 cm^-1)
DP_1000_NM = {"diamond": 1700.0, "Ge": 650.0, "Si": 810.0, "fibre": 1500.0}
CRYSTAL_PROB = [0.45, 0.2, 0.15, 0.2]


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


# ---------------------------------------------------------------------------------------------
# Line shapes and templates
# ---------------------------------------------------------------------------------------------
def pseudo_voigt(nu: np.ndarray, position: float, fwhm: float, eta: float) -> np.ndarray:
    """Peak-height-1 pseudo-Voigt: eta Lorentzian + (1-eta) Gaussian of the same FWHM."""
    x = (nu - position) / (0.5 * fwhm)
    return eta / (1.0 + x * x) + (1.0 - eta) * np.exp(-math.log(2.0) * x * x)


def pv_area(height: float, fwhm: float, eta: float) -> float:
    """Integrated area of a pseudo-Voigt of given height and FWHM."""
    return height * fwhm * (eta * math.pi / 2 + (1 - eta) * math.sqrt(math.pi / (4 * math.log(2))))


def happ_genzel_ils(resolution: float, step: float) -> np.ndarray:
    """Instrument line shape of a Happ-Genzel apodised interferogram, max OPD L = 1/resolution,
    sampled at ``step`` cm^-1, unit sum. ILS(nu) = int_{-L}^{L} (0.54 + 0.46 cos(pi x / L)) cos(2 pi nu x) dx."""
    L = 1.0 / resolution
    half = int(math.ceil(4.0 * resolution / step))
    nu = np.arange(-half, half + 1) * step
    x = np.linspace(-L, L, 801)
    apod = 0.54 + 0.46 * np.cos(np.pi * x / L)
    k = np.trapezoid(apod[None, :] * np.cos(2 * np.pi * nu[:, None] * x[None, :]), x, axis=1)
    return k / k.sum()


class Basis:
    """All spectral templates on the output grid, after ATR weighting and the instrument line shape.

    Attributes (W = grid points):
      ``electrolyte`` [Be, W]: rows = free and bound state of every component, then soluble species;
        units AU per mol/L at the reference ATR depth (d_p at 1000 cm^-1), ATR 1/nu weighting included.
      ``sei`` [P, J, W]: film species templates along the aging coordinate (J states), AU per mol/L,
        each state with the same in-window area (so drift/broadening conserve the band area).
      ``sei_area`` [P]: in-window integrated area (AU cm^-1 per mol/L) of each film species.
      ``baseline`` [8, W]: Legendre P0..P3, electrode broadband (flat, slope), water vapour, CO2.
    """

    def __init__(self, wavenumber: np.ndarray, resolution: float = 4.0):
        self.wavenumber = np.asarray(wavenumber, dtype=np.float64)
        self.resolution = float(resolution)
        lo, hi = float(self.wavenumber[0]), float(self.wavenumber[-1])
        step = min(0.25, float(np.min(np.diff(self.wavenumber))) / 2)
        margin = 80.0
        self.fine = np.arange(lo - margin, hi + margin + step, step)
        self.ils = happ_genzel_ils(resolution, step)
        self.atr = 1000.0 / self.fine          # d_p(nu) / d_p(1000 cm^-1)

        comps = chem.COMPONENT_NAMES
        rows, self.free_row, self.bound_row = [], {}, {}
        for name in comps:
            c = chem.COMPONENTS[name]
            self.free_row[name] = len(rows)
            rows.append(self._render(self._free_peaks(c), c.peak_per_molar, atr=True))
            self.bound_row[name] = len(rows)
            rows.append(self._render(self._bound_peaks(c), c.peak_per_molar, atr=True))
        self.soluble_row = {}
        for name in chem.SOLUBLE_SPECIES:
            s = chem.SEI_SPECIES[name]
            self.soluble_row[name] = len(rows)
            rows.append(self._render(s.peaks, s.peak_per_molar, atr=True))
        self.electrolyte = np.stack(rows)

        J = AGING_STATES
        sei = np.zeros((len(chem.FILM_SPECIES), J, self.wavenumber.size))
        for p, name in enumerate(chem.FILM_SPECIES):
            s = chem.SEI_SPECIES[name]
            for j in range(J):
                a = j / (J - 1)
                peaks = [chem.Peak(pk.position + s.drift * a, pk.height / (1 + s.broaden * a),
                                   pk.fwhm * (1 + s.broaden * a), pk.eta) for pk in s.peaks]
                sei[p, j] = self._render(peaks, s.peak_per_molar, atr=False)
            ref = np.trapezoid(sei[p, 0], self.wavenumber)
            for j in range(1, J):  # exact area conservation on this grid (mass balance)
                sei[p, j] *= ref / np.trapezoid(sei[p, j], self.wavenumber)
        self.sei = sei
        self.sei_area = np.trapezoid(sei[:, 0], self.wavenumber, axis=-1)
        self.baseline = self._baseline_basis()

    # -- templates ----------------------------------------------------------------------------
    @staticmethod
    def _free_peaks(c: chem.Component) -> list:
        return list(c.free)

    @staticmethod
    def _bound_peaks(c: chem.Component) -> list:
        """Bound/paired peaks: mapped free peaks move to the bound position keeping their area."""
        out = []
        for i, pk in enumerate(c.free):
            if i in c.bound:
                pos, fwhm = c.bound[i]
                h = pv_area(pk.height, pk.fwhm, pk.eta) / pv_area(1.0, fwhm, pk.eta)
                out.append(chem.Peak(pos, h, fwhm, pk.eta))
            else:
                out.append(pk)
        return out + list(c.bound_extra)

    def _render(self, peaks, scale: float, atr: bool) -> np.ndarray:
        y = np.zeros_like(self.fine)
        for pk in peaks:
            y += pk.height * pseudo_voigt(self.fine, pk.position, pk.fwhm, pk.eta)
        y *= scale
        if atr:
            y = y * self.atr
        y = np.convolve(y, self.ils, mode="same")
        return np.interp(self.wavenumber, self.fine, y)

    def _baseline_basis(self) -> np.ndarray:
        nu = self.wavenumber
        z = 2 * (nu - nu[0]) / (nu[-1] - nu[0]) - 1
        leg = np.stack([np.ones_like(z), z, 0.5 * (3 * z**2 - 1), 0.5 * (5 * z**3 - 3 * z)])
        slope = 1000.0 / nu
        slope = (slope - slope.mean()) / (np.abs(slope - slope.mean()).max() + 1e-12)
        water = self._water_vapour()
        co2 = self._render([chem.Peak(667.0, 1.0, 3.0, 0.9), chem.Peak(2337.0, 0.6, 15.0, 0.5),
                            chem.Peak(2361.0, 0.7, 15.0, 0.5)], 1.0, atr=False)
        co2 = co2 / max(np.abs(co2).max(), 1e-12) if np.abs(co2).max() > 1e-9 else co2
        return np.stack([*leg, np.ones_like(nu), slope, water, co2])

    def _water_vapour(self) -> np.ndarray:
        """Water-vapour rotational lines of the nu2 band (P/R branches around 1595 cm^-1, ~1300-1900)
        and the stretch region 3500-3900; a fixed pseudo line list, unit maximum."""
        rng = np.random.default_rng(1595)
        pos = np.concatenate([rng.uniform(1300, 1900, 160), rng.uniform(3500, 3950, 120)])
        centre = np.where(pos < 2500, 1595.0, 3700.0)
        env = np.exp(-((np.abs(pos - centre) - 90.0) / 110.0) ** 2)
        inten = env * rng.uniform(0.2, 1.0, pos.size)
        y = np.zeros_like(self.fine)
        for p, a in zip(pos, inten):
            if self.fine[0] - 5 < p < self.fine[-1] + 5:
                y += a * pseudo_voigt(self.fine, p, 0.3, 0.9)
        y = np.convolve(y, self.ils, mode="same")
        y = np.interp(self.wavenumber, self.fine, y)
        m = np.abs(y).max()
        return y / m if m > 1e-12 else y


# ---------------------------------------------------------------------------------------------
# Reaction network as matrices
# ---------------------------------------------------------------------------------------------
class Network:
    """Stoichiometry of chemistry.REACTIONS as matrices over components and film/soluble species."""

    def __init__(self):
        comps, film, sol = chem.COMPONENT_NAMES, chem.FILM_SPECIES, chem.SOLUBLE_SPECIES
        K = len(chem.REACTIONS)
        self.names = chem.REACTION_NAMES
        self.nu = np.zeros((K, len(comps)))       # consumption (+) / production (-) of components
        self.y_film = np.zeros((K, len(film)))
        self.y_sol = np.zeros((K, len(sol)))
        self.film_nm = np.zeros(K)                # film thickness per unit extent (nm per mol/L)
        self.reactant = np.zeros(K, dtype=np.int64)
        self.onset = np.zeros(K)
        self.width = np.zeros(K)
        self.rate = np.zeros(K)
        self.km = np.zeros(K)
        self.passivating = np.zeros(K, dtype=bool)
        for k, r in enumerate(chem.REACTIONS.values()):
            for cname, v in r.consumes.items():
                self.nu[k, comps.index(cname)] += v
            self.reactant[k] = comps.index(next(iter(r.consumes)))
            for pname, y in r.produces.items():
                if pname in film:
                    self.y_film[k, film.index(pname)] = y
                    self.film_nm[k] += y * chem.SEI_SPECIES[pname].film_nm_per_molar
                elif pname in sol:
                    self.y_sol[k, sol.index(pname)] = y
                elif pname in comps:          # transesterification makes solvents
                    self.nu[k, comps.index(pname)] -= y
                elif pname != "gas":          # invisible solids (LiF, Li2S, ...) still build film
                    self.film_nm[k] += y * INVISIBLE_FILM_NM
            self.onset[k], self.width[k], self.rate[k] = r.onset, r.width, r.rate
            self.km[k], self.passivating[k] = r.km, r.passivating
        self.k_transest = self.names.index("EMC_transesterification")
        self.k_pc = self.names.index("PC_to_LPDC")

    def sei_area_per_extent(self, basis: Basis) -> np.ndarray:
        """[K] in-window integrated SEI absorbance (AU cm^-1) per unit extent: sum_p y_pk a_p."""
        return self.y_film @ basis.sei_area


INVISIBLE_FILM_NM = 150.0  # nm per mol/L of invisible solids (LiF, Li2S, ...) in the film (assumption)


# ---------------------------------------------------------------------------------------------
# Per-sample parameters
# ---------------------------------------------------------------------------------------------
def _f32(a: np.ndarray) -> np.ndarray:
    """float32 copy with values below 1e-30 flushed to zero: float32 denormals (Gaussian tails,
    sigmoid tails) make BLAS and ufuncs 10-100x slower."""
    a = np.asarray(a, dtype=np.float32)
    return np.where(np.abs(a) < 1e-30, np.float32(0.0), a)


def _loguniform(u, lo, hi):
    return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))


def _choice(u, probs):
    cum = np.cumsum(probs)
    return np.minimum(np.searchsorted(cum / cum[-1], u, side="right"), len(probs) - 1)


def draw_randoms(seed: int, indices: np.ndarray, T: int, W: int):
    """Per-sample random numbers from a generator seeded by (seed, sample index).

    Returns U [S, N_UNIFORM] uniforms, Z [S, T+1, N_FRAME_NORMALS] normals, noise [S, T+1, W] float32
    standard normals (rows 0..T-1 frames, row T the static spectrum)."""
    S = len(indices)
    U = np.empty((S, N_UNIFORM))
    Z = np.empty((S, T + 1, N_FRAME_NORMALS))
    noise = torch.empty((S, T + 1, W), dtype=torch.float32)
    tg = torch.Generator()
    for r, i in enumerate(indices):
        ss = np.random.SeedSequence([int(seed), int(i)])
        g = np.random.default_rng(ss)
        U[r] = g.random(N_UNIFORM)
        Z[r] = g.standard_normal((T + 1, N_FRAME_NORMALS))
        # the bulk noise comes from torch's (vectorised) normal sampler, seeded from the same
        # per-sample seed sequence: ~2x faster than numpy's for 10^4 values per sample
        tg.manual_seed(int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1)))
        torch.randn((T + 1, W), generator=tg, out=noise[r])
    return U, Z, noise.numpy()


# contact = CONTACT_LO + CONTACT_SPAN * U[:, 32] scales the static spectrum and the operando frames;
# static_gain = STATIC_GAIN_MAX * (2 U[:, 85] - 1) only the static spectrum (a separate measurement,
# the cell re-seated on the crystal). See ``_redraw_static_gain`` for what the inputs reveal of them.
CONTACT_UNIFORM, CONTACT_LO, CONTACT_SPAN = 32, 0.85, 0.3
STATIC_GAIN_UNIFORM, STATIC_GAIN_MAX = 85, 0.015


def sample_parameters(U: np.ndarray, system_pos: np.ndarray, overrides: Optional[dict] = None) -> dict:
    """Map uniforms U [S, N_UNIFORM] to physical parameters (arrays [S] unless noted).

    ``system_pos``: 0-based positions in chemistry.SYSTEMS. ``overrides``: {name: value} replacing
    any drawn parameter (tests and what-if runs), e.g. {"salt_molar": 1.5, "vc_wt": 0, "fec_wt": 0,
    "protocol": "galvanostatic", "noise_sigma": 5e-4, "atmosphere": 0.0}.
    """
    S = U.shape[0]
    comps = chem.COMPONENT_NAMES
    ci = {n: i for i, n in enumerate(comps)}
    p: dict = {"system": system_pos.astype(np.int64)}
    electrode = np.zeros(S, dtype=np.int64)
    salt = np.zeros(S, dtype=np.int64)
    salt_molar = np.zeros(S)
    weights = np.zeros((S, len(comps)))   # solvent mass fractions (before additives)
    fixed_add = np.zeros((S, len(comps)))  # wt% of fixed additives
    extra_salt = np.zeros((S, len(comps)))
    n_s = np.zeros(S)
    rand_add = np.zeros(S, dtype=bool)
    for k, sysd in enumerate(chem.SYSTEMS):
        m = system_pos == k
        if not m.any():
            continue
        el_names = [e for e, _ in sysd.electrodes]
        electrode[m] = [chem.ELECTRODES.index(el_names[j]) for j in
                        _choice(U[m, 0], [pr for _, pr in sysd.electrodes])]
        salt[m] = [ci[sysd.salts[j][0]] for j in _choice(U[m, 1], [pr for _, pr in sysd.salts])]
        lo, hi = sysd.salt_molar
        salt_molar[m] = lo + U[m, 2] * (hi - lo)
        names = list(sysd.solvents)
        for j, n in enumerate(names):
            base = sysd.solvents[n]
            if sysd.by_volume:  # v/v -> w/w with the neat densities
                base = base * chem.COMPONENTS[n].density
            # composition ratios randomised by a factor in [0.7, 1.4]
            jitter = np.exp(0.35 * (2 * U[m, 3 + (j % 2)] - 1)) if len(names) > 1 else 1.0
            weights[m, ci[n]] = base * jitter
        for n, (lo, hi) in sysd.additives.items():
            fixed_add[m, ci[n]] = lo + U[m, 9] * (hi - lo)
        for n, (lo, hi) in sysd.extra_salts.items():
            extra_salt[m, ci[n]] = lo + U[m, 10] * (hi - lo)
        a, b = sysd.solvation_number
        n_s[m] = a + U[m, 11] * (b - a)
        rand_add[m] = sysd.random_additives
    weights /= weights.sum(1, keepdims=True)
    # random VC / FEC at small fractions across the carbonate systems, each with p = 0.3
    vc_wt = np.where(rand_add & (U[:, 5] < 0.3), 0.5 + 2.5 * U[:, 6], 0.0) + fixed_add[:, ci["VC"]]
    fec_wt = np.where(rand_add & (U[:, 7] < 0.3), 1.0 + 5.0 * U[:, 8], 0.0) + fixed_add[:, ci["FEC"]]
    p.update(electrode=electrode, salt=salt, salt_molar=salt_molar, solvent_weights=weights,
             vc_wt=vc_wt, fec_wt=fec_wt, extra_salt=extra_salt, solvation_number=n_s)

    # protocol: galvanostatic 0.5, CV 0.25, GITT 0.25; Li metal is never swept (galvanostatic)
    prot = _choice(U[:, 12], [0.5, 0.25, 0.25])
    prot = np.where((electrode == chem.ELECTRODES.index("Li")) & (prot == 1), 0, prot)
    p["protocol"] = prot
    p["c_rate"] = _loguniform(U[:, 13], 0.05, 0.5)          # 1/h, C/20 .. C/2
    p["gitt_duty"] = 0.2 + 0.3 * U[:, 14]
    p["gitt_period_h"] = 0.5 + 1.5 * U[:, 15]
    p["scan_mV_s"] = _loguniform(U[:, 16], 0.05, 0.5)       # 0.05-1 mV/s
    p["x_end_u"] = U[:, 17]
    p["v_up_u"] = U[:, 18]
    p["eta_V"] = 0.02 + 0.06 * U[:, 19]
    p["tau_eta_h"] = 0.05 + 0.25 * U[:, 20]
    p["tau_x_h"] = 0.05 + 0.25 * U[:, 21]
    p["polarisation"] = 0.04 + 0.11 * U[:, 22]                # |pi| at C/10 (5-30 % of c0 at C/10-1C)
    p["tau_pol_s"] = _loguniform(U[:, 23], 60.0, 1800.0)       # minutes
    p["rate_scale"] = _loguniform(U[:, 24], 0.4, 2.5)
    K = len(chem.REACTIONS)
    p["rate_jitter"] = _loguniform(U[:, 40:40 + K], 0.6, 1.6)  # [S, K]
    p["onset_jitter"] = 0.06 * (2 * U[:, 60:60 + K] - 1)       # [S, K] V
    p["L_max_nm"] = 10.0 + 30.0 * U[:, 29]       # passivation scale; films end at ~10-60 nm
    p["aging_molar"] = _loguniform(U[:, 30], 0.02, 0.2)
    p["crystal"] = _choice(U[:, 31], CRYSTAL_PROB)
    p["contact"] = CONTACT_LO + CONTACT_SPAN * U[:, CONTACT_UNIFORM]
    p["noise_sigma"] = _loguniform(U[:, 33], 1e-4, 1e-3)
    p["static_noise_factor"] = 0.4 + 0.6 * U[:, 34]
    p["baseline_scale"] = _loguniform(U[:, 35], 1e-3, 1e-2)
    p["electrode_term"] = _loguniform(U[:, 37], 1e-3, 1e-2)
    p["atmosphere"] = _loguniform(U[:, 38], 1e-4, 1e-3)
    p["reseat"] = U[:, 39] < 0.1
    p["reseat_pos"] = U[:, 79]
    p["gain_drift"] = 0.01 * (2 * U[:, 78] - 1)               # +-1 %
    p["static_gain"] = STATIC_GAIN_MAX * (2 * U[:, STATIC_GAIN_UNIFORM] - 1)  # static vs operando contact
    p["tau_leave_h"] = 1.0 + 4.0 * U[:, 80]
    p["transest_scale"] = _loguniform(U[:, 81], 0.5, 2.0)
    p["crack"] = 0.5 + 1.5 * U[:, 82]                         # Si: passivation lost per unit |dx|
    p["fresh"] = 0.5 + 1.5 * U[:, 83]                         # Cu/Li: passivation lost per unit plated
    p["electrode_slope"] = 2 * U[:, 84] - 1
    if overrides:
        for k, v in overrides.items():
            if k == "protocol" and isinstance(v, str):
                v = proto.PROTOCOLS.index(v)
            if k == "electrode" and isinstance(v, str):
                v = chem.ELECTRODES.index(v)
            if k not in p:
                raise ValueError(f"unknown simulator override {k!r}; known: {sorted(p)}")
            p[k] = np.broadcast_to(np.asarray(v, dtype=np.asarray(p[k]).dtype), np.shape(p[k])).copy()
    return p


# The uniforms (columns of U) that no input of a sample reveals: nothing in the static spectrum, the
# voltage/time protocol, the composition or the electrode depends on them. Kinetics (rate scale and
# per-reaction jitter, onset jitter, passivation scale, aging, transesterification, cracking, fresh
# Li, soluble-product lifetime), salt polarisation (gain, time constant) and operando-only nuisance
# (electrode broadband term and slope, re-seating, gain drift). Together with the per-frame normals
# Z[:, :T] (operando baseline walk, atmosphere), the frame noise and the split of the static
# spectrum's scale into contact and static gain (``_redraw_static_gain``) they are what even a
# perfect model must average over: ``OpIRSim.conditional_mean`` marginalises exactly these.
HIDDEN_UNIFORMS = tuple(sorted({22, 23, 24, 29, 30, 37, 39, 78, 79, 80, 81, 82, 83, 84}
                               | set(range(40, 40 + len(chem.REACTIONS)))        # rate_jitter
                               | set(range(60, 60 + len(chem.REACTIONS)))))      # onset_jitter


def _redraw_static_gain(U: np.ndarray, u: np.ndarray) -> None:
    """Redraw the static gain of the rows of ``U`` in place from its distribution given what the
    inputs reveal, with ``u`` [rows] uniforms.

    The static spectrum scales with P = contact * (1 + static_gain), the operando frames with
    contact alone: the inputs reveal P, not the split, so a model cannot know the frames' contact
    to better than the static gain's +-1.5 %. Given P (both uniform a priori), static_gain has the
    density 1 / (1 + g) on the interval where contact = P / (1 + g) stays in its range; it is drawn
    by inverting that distribution, and contact is set to P / (1 + g), so P (and every input) is
    unchanged."""
    contact = CONTACT_LO + CONTACT_SPAN * U[:, CONTACT_UNIFORM]
    product = contact * (1.0 + STATIC_GAIN_MAX * (2.0 * U[:, STATIC_GAIN_UNIFORM] - 1.0))
    lo = np.maximum(1.0 - STATIC_GAIN_MAX, product / (CONTACT_LO + CONTACT_SPAN))     # bounds of 1 + g
    hi = np.minimum(1.0 + STATIC_GAIN_MAX, product / CONTACT_LO)
    one_plus_g = lo * np.power(np.maximum(hi, lo) / lo, u)
    U[:, STATIC_GAIN_UNIFORM] = np.clip(((one_plus_g - 1.0) / STATIC_GAIN_MAX + 1.0) / 2.0, 0.0, 1.0)
    U[:, CONTACT_UNIFORM] = np.clip((product / one_plus_g - CONTACT_LO) / CONTACT_SPAN, 0.0, 1.0)


def conditional_randoms(seed: int, indices: np.ndarray, T: int, W: int, replicates: int, draw_seed: int = 0,
                        hidden: Optional[Sequence[int]] = None, frame_normals: bool = True,
                        frame_noise: bool = False, static_gain: Optional[bool] = None):
    """Random numbers for ``replicates`` copies of each sample that keep everything the inputs reveal
    (U outside HIDDEN_UNIFORMS, the static spectrum's normals and noise) and redraw the rest: hidden
    uniforms, the operando frames' normals, the split of the static spectrum's scale into contact
    and static gain (``_redraw_static_gain``: the inputs reveal only their product); the frame noise
    is set to 0 (it has zero mean).

    ``hidden`` (a subset of HIDDEN_UNIFORMS), ``frame_normals=False``, ``frame_noise=True``
    (redrawn instead of 0) and ``static_gain`` split the unpredictable part into its sources
    (bench/bench_oracle.py); ``static_gain`` defaults to True when ``hidden`` is None (everything
    redrawn) and to False when a subset is named. Returns (U, Z, noise) for S * replicates samples,
    replicate-major ([m * S + s] is copy m of sample s). Deterministic per (seed, sample index,
    draw_seed, replicate), whatever the batching."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    S, M = idx.size, int(replicates)
    U, Z, noise = draw_randoms(seed, idx, T, W)
    if static_gain is None:
        static_gain = hidden is None
    hidden = np.array(HIDDEN_UNIFORMS if hidden is None else sorted(hidden), dtype=np.int64)
    if not set(hidden.tolist()) <= set(HIDDEN_UNIFORMS):
        raise ValueError(f"hidden must be a subset of HIDDEN_UNIFORMS; {sorted(set(hidden.tolist()) - set(HIDDEN_UNIFORMS))} "
                         "shape the inputs")
    Ur = np.repeat(U[None], M, 0)
    Zr = np.repeat(Z[None], M, 0)
    nr = np.zeros((M, S, T + 1, W), dtype=np.float32)
    for s, i in enumerate(idx):
        g = np.random.default_rng(np.random.SeedSequence([int(seed), int(i), 0xC0D1, int(draw_seed)]))
        Ur[:, s, hidden] = g.random((M, hidden.size))
        if frame_normals:
            Zr[:, s, :T] = g.standard_normal((M, T, Z.shape[-1]))
        if frame_noise:
            nr[:, s, :T] = g.standard_normal((M, T, W))
        if static_gain:  # its own stream: the draws above do not depend on this switch
            u = np.random.default_rng(np.random.SeedSequence([int(seed), int(i), 0x6A17, int(draw_seed)])).random(M)
            _redraw_static_gain(Ur[:, s], u)
    nr[:, :, T] = noise[None, :, T]
    return Ur.reshape(M * S, -1), Zr.reshape(M * S, T + 1, -1), nr.reshape(M * S, T + 1, W)


def initial_concentrations(p: dict) -> np.ndarray:
    """[S, C] mol/L of every component of the pristine electrolyte (ideal mixing, LP30 check:
    EC:DMC 1:1 w/w + 1 M LiPF6 -> ~6.5 M EC, ~6.4 M DMC)."""
    comps = chem.COMPONENT_NAMES
    ci = {n: i for i, n in enumerate(comps)}
    S = p["salt"].shape[0]
    add = np.zeros((S, len(comps)))
    add[:, ci["VC"]] = p["vc_wt"] / 100.0
    add[:, ci["FEC"]] = p["fec_wt"] / 100.0
    w = p["solvent_weights"] * (1.0 - add.sum(1, keepdims=True)) + add
    molar_mass = np.array([chem.COMPONENTS[n].molar_mass for n in comps])
    density = np.array([chem.COMPONENTS[n].density for n in comps])
    is_salt = np.array([chem.COMPONENTS[n].kind == "salt" for n in comps])
    w = np.where(is_salt[None, :], 0.0, w)
    vol_ml = (w / density).sum(1, keepdims=True)               # mL per g of solvent mix
    c = 1000.0 * (w / molar_mass) / vol_ml
    c_salt = np.zeros_like(c)
    c_salt[np.arange(S), p["salt"]] = p["salt_molar"]
    c_salt += p["extra_salt"]
    c = c * (1.0 - chem.SALT_MOLAR_VOLUME * c_salt.sum(1, keepdims=True)) + c_salt
    return c


def speciation(c: np.ndarray, pi: np.ndarray, n_s: np.ndarray):
    """Free and bound concentrations [.., C] from the solvation rule.

    c [.., C] component concentrations (mol/L), pi [..] relative salt polarisation, n_s [..]
    solvation number. Solvents: sites n_s c_Li shared by preference-weighted concentration,
    bound_i = min(c_i, n_s c_Li w_i c_i / sum_j w_j c_j / sites_i). Salts (local c (1 + pi)):
    paired = c (1 - 1/(1 + kappa c_Li)) (mass action, kappa = ``preference`` of the salt).
    """
    comps = chem.COMPONENT_NAMES
    is_salt = np.array([chem.COMPONENTS[n].kind == "salt" for n in comps])
    pref = np.array([chem.COMPONENTS[n].preference for n in comps])
    sites = np.array([chem.COMPONENTS[n].sites for n in comps])
    c_ion = np.where(is_salt, c * (1.0 + pi[..., None]), 0.0)
    c_li = c_ion.sum(-1)
    c_sol = np.where(is_salt, 0.0, c)
    share = pref * c_sol
    share = share / np.maximum(share.sum(-1, keepdims=True), 1e-12)
    bound_sol = np.minimum(c_sol, (n_s * c_li)[..., None] * share / sites)
    pair_frac = 1.0 - 1.0 / (1.0 + pref * c_li[..., None])
    bound = np.where(is_salt, c_ion * pair_frac, bound_sol)
    free = np.where(is_salt, c_ion - bound, c_sol - bound_sol)
    return free, bound


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

    # -- protocol -------------------------------------------------------------------------------
    def _protocol(self, p: dict, c0: np.ndarray) -> dict:
        cfg = self.config
        S = p["salt"].shape[0]
        N = (cfg.T - 1) * cfg.substeps
        ci = {n: i for i, n in enumerate(chem.COMPONENT_NAMES)}
        el_names = np.array(chem.ELECTRODES)[p["electrode"]]
        # PC on graphite without an effective additive (or EC) exfoliates: no staging, no passivation
        exfol = ((el_names == "graphite") & (c0[:, ci["PC"]] > 1.0) & (c0[:, ci["EC"]] < 1.0)
                 & (p["vc_wt"] + p["fec_wt"] < 1.0))
        curve = np.where(exfol, "graphite_PC", el_names)
        ranges = {"graphite": ((0.07, 0.13), (1.5, 3.0)), "graphite_PC": ((0.85, 0.95), (1.5, 2.0)),
                  "Si": ((0.1, 0.25), (1.0, 2.0)), "LTO": ((0.02, 0.05), (2.0, 2.5)),
                  "Cu": ((0.1, 0.2), (1.0, 1.5)), "Li": ((0.05, 0.15), (0.05, 0.05))}
        out = {k: np.zeros((S, N + 1)) for k in ("t_h", "E", "x", "current")}
        for cv in np.unique(curve):
            for prot in range(3):
                m = (curve == cv) & (p["protocol"] == prot)
                if not m.any():
                    continue
                (xa, xb), (va, vb) = ranges[cv]
                x_end = xa + p["x_end_u"][m] * (xb - xa)
                v_up = va + p["v_up_u"][m] * (vb - va)
                if prot == 1:
                    r = proto.cyclic_voltammetry(cv, N, p["scan_mV_s"][m] * 3.6, x_end, v_up,
                                                 p["tau_x_h"][m])
                else:
                    duty = np.ones(m.sum()) if prot == 0 else p["gitt_duty"][m]
                    rate = p["c_rate"][m] if prot == 0 else 2 * p["c_rate"][m]
                    r = proto.galvanostatic(cv, N, rate, duty, p["gitt_period_h"][m], x_end, v_up,
                                            p["eta_V"][m], p["tau_eta_h"][m])
                for k in out:
                    out[k][m] = r[k]
        out["exfoliating"] = exfol
        out["curve"] = curve
        return out

    # -- kinetics -------------------------------------------------------------------------------
    def _kinetics(self, p: dict, c0: np.ndarray, pr: dict) -> dict:
        """Integrate concentrations, extents, film and polarisation over the fine time grid; return
        the state at the T frame times."""
        cfg, net = self.config, self.net
        S, C = c0.shape
        K = len(net.names)
        N = (cfg.T - 1) * cfg.substeps
        el = np.array(chem.ELECTRODES)[p["electrode"]]
        # per-sample, per-reaction onset, rate and passivation (electrode modifiers)
        onset = net.onset[None, :] + p["onset_jitter"]
        rate = net.rate[None, :] * p["rate_jitter"] * p["rate_scale"][:, None]
        passiv = np.broadcast_to(net.passivating, (S, K)).copy()
        for (rname, ename), (dv, fr, pv) in chem.ELECTRODE_MODIFIERS.items():
            k = net.names.index(rname)
            m = el == ename
            onset[m, k] += dv
            rate[m, k] *= fr
            passiv[m, k] = pv
        passiv[pr["exfoliating"], net.k_pc] = False   # PC on graphite does not passivate
        is_si = (el == "Si")[:, None]
        is_plating = np.isin(el, ["Cu", "Li"])

        c = c0.copy()
        xi = np.zeros((S, K))
        n_film = np.zeros((S, net.y_film.shape[1]))
        m_sol = np.zeros((S, net.y_sol.shape[1]))
        L_total = np.zeros(S)
        L_pass = np.zeros(S)
        pol = np.zeros(S)
        k_roli = chem.FILM_SPECIES.index("ROLi")
        ci_emc = chem.COMPONENT_NAMES.index("EMC")

        T = cfg.T
        rec = {"c": np.zeros((S, T, C)), "xi": np.zeros((S, T, K)), "n_film": np.zeros((S, T, n_film.shape[1])),
               "m_sol": np.zeros((S, T, m_sol.shape[1])), "L": np.zeros((S, T)), "pol": np.zeros((S, T))}

        def record(f):
            rec["c"][:, f], rec["xi"][:, f], rec["n_film"][:, f] = c, xi, n_film
            rec["m_sol"][:, f], rec["L"][:, f], rec["pol"][:, f] = m_sol, L_total, pol

        record(0)
        t_h, E, x, I = pr["t_h"], pr["E"], pr["x"], pr["current"]
        tau_pol_h = p["tau_pol_s"] / 3600.0
        # relative depletion ~ current / (D c0): smaller in concentrated electrolytes;
        # stronger during plating on Cu/Li
        c_salt0 = c0[:, [chem.COMPONENT_NAMES.index(n) for n in chem.SALT_NAMES]].sum(1)
        pol_gain = p["polarisation"] * np.where(is_plating, 1.5, 1.0) / np.maximum(c_salt0, 0.5)
        inv_w = 1.0 / net.width[None, :]
        reactant = net.reactant
        for j in range(N):
            dt = t_h[:, j + 1] - t_h[:, j]                        # [S] hours
            e_mid = 0.5 * (E[:, j] + E[:, j + 1])
            i_mid = 0.5 * (I[:, j] + I[:, j + 1])
            # salt polarisation: first-order lag towards -beta sign(I) sqrt(|I|/0.1)
            target = -pol_gain * np.sign(i_mid) * np.sqrt(np.abs(i_mid) / 0.1)
            pol = target + (pol - target) * np.exp(-dt / tau_pol_h)
            pol = np.minimum(np.maximum(pol, -0.5), 0.5)
            # re-exposed surface: fresh Li while plating (Cu/Li) and cracking on Si
            dx = np.abs(x[:, j + 1] - x[:, j])
            plating = is_plating & (i_mid > 0)
            L_pass = L_pass * np.exp(-(p["fresh"] * dx * plating + p["crack"] * dx * is_si[:, 0]))
            # passivation: growth slows as the passivating film approaches L_max (theta = L/L_max),
            # exp(-4 theta) keeps the late growth parabolic-like instead of stopping dead
            theta = L_pass / p["L_max_nm"]
            drive = 1.0 / (1.0 + np.exp(-(onset - e_mid[:, None]) * inv_w))
            cr = c[:, reactant]
            avail = cr / (cr + net.km[None, :])
            surf = np.where(passiv, np.exp(-4.0 * theta)[:, None], 1.0)
            r = rate * drive * avail * surf
            # alkoxide-catalysed transesterification 2 EMC -> DMC + DEC (no electrons)
            r[:, net.k_transest] = (net.rate[net.k_transest] * p["transest_scale"] * n_film[:, k_roli]
                                    * c[:, ci_emc] / (c[:, ci_emc] + 1.0))
            dxi = r * dt[:, None]
            # never consume more than is there
            need = dxi * np.maximum(net.nu[None, np.arange(K), reactant], 1e-12)
            dxi = np.where(need > cr, cr / np.maximum(net.nu[None, np.arange(K), reactant], 1e-12), dxi)
            xi = xi + dxi
            c = np.maximum(c - dxi @ net.nu, 0.0)
            n_film = n_film + dxi @ net.y_film
            m_sol = (m_sol + dxi @ net.y_sol) * np.exp(-dt / p["tau_leave_h"])[:, None]
            dL = dxi @ net.film_nm
            L_total = L_total + dL
            L_pass = L_pass + (dxi * passiv) @ net.film_nm
            if (j + 1) % cfg.substeps == 0:
                record((j + 1) // cfg.substeps)
        frame_idx = np.arange(T) * cfg.substeps
        rec.update(t_h=t_h[:, frame_idx], E=E[:, frame_idx], x=x[:, frame_idx])
        return rec

    # -- rendering ------------------------------------------------------------------------------
    def simulate(self, indices: Sequence[int], seed: int = 0, overrides: Optional[dict] = None,
                 return_extras: bool = False, randoms: Optional[tuple] = None) -> dict:
        """Simulate the samples with global indices ``indices``.

        Returns float32 arrays: ``static`` [S, W], ``frames``, ``solvent``, ``sei`` [S, T, W],
        ``voltage``, ``time_s`` [S, T], ``extent`` [S, T, K], ``composition`` [S, C]; int64
        ``system``, ``electrode`` [S]. With ``return_extras``: also ``baseline`` [S, T, W], ``params``
        (dict), ``concentrations`` [S, T, C], ``polarisation`` [S, T], ``film_nm`` [S, T],
        ``noise_sigma`` [S], ``x`` [S, T]. ``randoms``: (U, Z, noise) as ``draw_randoms`` returns them,
        to use instead of the per-sample draws (``conditional_randoms`` builds such sets).
        """
        cfg, B = self.config, self.basis
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        S, T, W = idx.size, cfg.T, cfg.W
        U, Z, noise = draw_randoms(seed, idx, T, W) if randoms is None else randoms
        p = sample_parameters(U, self.system_of(idx), overrides)
        c0 = initial_concentrations(p)
        pr = self._protocol(p, c0)
        st = self._kinetics(p, c0, pr)

        # electrolyte stream: speciation at the local salt concentration
        free, bound = speciation(st["c"], st["pol"], p["solvation_number"][:, None])
        coef = np.zeros((S, T, B.electrolyte.shape[0]))
        for i, name in enumerate(chem.COMPONENT_NAMES):
            coef[..., B.free_row[name]] = free[..., i]
            coef[..., B.bound_row[name]] = bound[..., i]
        for q, name in enumerate(chem.SOLUBLE_SPECIES):
            coef[..., B.soluble_row[name]] = st["m_sol"][..., q]
        dp1000 = np.array([DP_1000_NM[CRYSTALS[k]] for k in p["crystal"]])
        atr_amp = p["contact"] * dp1000 / DP_1000_NM["diamond"]            # G_ATR prefactor
        tau = np.linspace(0.0, 1.0, T)
        gain = 1.0 + p["gain_drift"][:, None] * tau[None, :]                   # [S, T]
        coef *= (atr_amp[:, None] * gain)[..., None]
        # the heavy [S, T, W] work runs in torch (multi-threaded matmul and elementwise ops)
        solvent = (torch.from_numpy(_f32(coef).reshape(S * T, -1)) @ self._electrolyte_t).reshape(S, T, W)
        # displacement of electrolyte by the film: exp(-2 L / d_p(nu)), d_p = dp1000 * 1000/nu
        disp_rate = _f32(2.0 * st["L"] / dp1000[:, None])       # [S, T] per (1000/nu)
        solvent.mul_(torch.exp(torch.from_numpy(-disp_rate)[..., None] * self._wn_k))

        # SEI stream: product amounts on aging-state templates (drift + broadening)
        J = AGING_STATES
        n_film = st["n_film"]                                                  # [S, T, P]
        age = (1.0 - np.exp(-n_film / p["aging_molar"][:, None, None])) * (J - 1)
        j0 = np.minimum(np.floor(age).astype(np.int64), J - 2)
        w1 = age - j0
        P = n_film.shape[-1]
        sei_coef = np.zeros((S, T, P, J))
        np.put_along_axis(sei_coef, j0[..., None], (n_film * (1 - w1))[..., None], axis=-1)
        np.put_along_axis(sei_coef, (j0 + 1)[..., None], (n_film * w1)[..., None], axis=-1)
        sei = (torch.from_numpy(_f32(sei_coef).reshape(S * T, P * J)) @ self._sei_t).reshape(S, T, W)

        # baseline, electrode broadband, atmosphere
        base = self._baseline_coefs(p, Z, st, pr)                              # [S, T+1, 8]
        baseline = (torch.from_numpy(_f32(base).reshape(S * (T + 1), -1)) @ self._baseline_t).reshape(S, T + 1, W)

        clean = solvent + sei
        clean += baseline[:, :T]
        sigma = p["noise_sigma"].astype(np.float32)
        cutoff = 1.0 + 4.0 / (1.0 + np.exp(-(900.0 - self.wavenumber) / 15.0))
        fibre = (np.array(CRYSTALS)[p["crystal"]] == "fibre")[:, None]
        edge = _f32(np.where(fibre, cutoff[None, :], 1.0))                      # [S, W]
        # heteroscedastic noise sigma(nu) = sigma_0 10^A(nu), larger near fibre cut-offs
        frames = clean.clamp(-1.0, 2.0).mul_(math.log(10.0)).exp_()
        frames.mul_(torch.from_numpy(sigma[:, None] * edge)[:, None, :]).mul_(torch.from_numpy(noise[:, :T]))
        frames.add_(clean)
        baseline_static = baseline[:, T]
        solvent, sei, frames, baseline = solvent.numpy(), sei.numpy(), frames.numpy(), baseline.numpy()

        # static spectrum: pristine cell at rest, separate measurement (own baseline and noise)
        free0, bound0 = speciation(c0, np.zeros(S), p["solvation_number"])
        coef0 = np.zeros((S, B.electrolyte.shape[0]))
        for i, name in enumerate(chem.COMPONENT_NAMES):
            coef0[:, B.free_row[name]] = free0[:, i]
            coef0[:, B.bound_row[name]] = bound0[:, i]
        # a separate measurement: the cell re-seated on the crystal gives a slightly different contact
        static_gain = 1.0 + p["static_gain"]
        static_clean = _f32(coef0 * (atr_amp * static_gain)[:, None]) @ self._electrolyte32
        static_clean = static_clean + baseline_static.numpy()
        s_sigma = sigma * p["static_noise_factor"].astype(np.float32)
        static = static_clean + (s_sigma[:, None] * np.power(np.float32(10.0), np.clip(static_clean, -1, 2))
                                 * edge * noise[:, T])

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
                       noise_sigma=p["noise_sigma"], x=st["x"], n_film=n_film,
                       exfoliating=pr["exfoliating"])
        return out

    def conditional_mean(self, indices: Sequence[int], seed: int = 0, replicates: int = 16,
                         draw_seed: int = 0) -> dict:
        """Monte-Carlo mean of ``frames``, ``solvent`` and ``sei`` over the parameters no input reveals
        (HIDDEN_UNIFORMS, operando baseline/atmosphere normals, frame noise, the contact/static-gain
        split of the static spectrum's scale), the inputs of each sample
        held fixed: the best any predictor of these inputs can do in mean squared error, up to the
        Monte-Carlo error (the MSE of a mean of M draws exceeds the bound by the hidden variance / M).

        Returns float32 ``frames``, ``solvent``, ``sei`` [S, T, W] and ``static`` [S, W] (identical to
        the dataset's static spectra: the inputs are not redrawn)."""
        cfg = self.config
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        M = int(replicates)
        if M < 1:
            raise ValueError(f"replicates must be >= 1, got {replicates}")
        randoms = conditional_randoms(seed, idx, cfg.T, cfg.W, M, draw_seed)
        out = self.simulate(np.tile(idx, M), seed=seed, randoms=randoms)
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
            offset = 0.5 * Z[:, 0, q][:, None]
            drift = Z[:, 1, q][:, None] * tau                       # slow drift over the cycle
            walk = 0.15 * np.cumsum(Z[:, 2:T + 2, q], axis=1) / math.sqrt(T) if T > 1 else 0.0
            walk = np.concatenate([np.zeros((S, 1)), walk[:, :T - 1]], axis=1) if T > 1 else np.zeros((S, 1))
            coefs[:, :T, q] = scale * order[q] * (offset + drift + walk)
            coefs[:, T, q] = scale[:, 0] * order[q] * 0.5 * Z[:, T, q]   # static: own baseline
        # re-seating: an abrupt offset/slope change at a random frame
        k_star = np.floor(1 + p["reseat_pos"] * (T - 1)).astype(int)
        jump = (np.arange(T)[None, :] >= k_star[:, None]) & p["reseat"][:, None]
        coefs[:, :T, 0] += jump * scale * 1.5 * np.sign(Z[:, 0, 4])[:, None]
        coefs[:, :T, 1] += jump * scale * 0.7 * Z[:, 1, 4][:, None]
        # electrode broadband term E(nu) theta(t), theta = state of charge (Gervillie 2022)
        el = np.array(chem.ELECTRODES)[p["electrode"]]
        el_factor = np.select([el == "graphite", el == "Si", el == "LTO"], [1.0, 1.0, 0.5], 0.3)
        theta = np.clip(st["x"], 0.0, 1.0)
        amp = (p["electrode_term"] * el_factor)[:, None] * theta
        coefs[:, :T, 4] = amp
        coefs[:, :T, 5] = amp * p["electrode_slope"][:, None]
        # atmospheric residue: water vapour and CO2, random small amplitude per measurement
        atm = p["atmosphere"][:, None]
        coefs[:, :, 6] = atm * Z[:, :, 5]
        coefs[:, :, 7] = atm * Z[:, :, 6]
        return coefs


# ---------------------------------------------------------------------------------------------
# Pure-component rendering (for tests and figures)
# ---------------------------------------------------------------------------------------------
def render_species(name: str, wavenumber: np.ndarray, state: str = "free", atr: bool = False,
                   resolution: Optional[float] = None) -> np.ndarray:
    """Spectrum [W] of one component (state "free" or "bound") or SEI species at 1 mol/L.

    Without ``resolution`` the bare line shapes are returned (no instrument convolution)."""
    wn = np.asarray(wavenumber, dtype=np.float64)
    if name in chem.COMPONENTS:
        c = chem.COMPONENTS[name]
        peaks, scale = (Basis._free_peaks(c) if state == "free" else Basis._bound_peaks(c)), c.peak_per_molar
    elif name in chem.SEI_SPECIES:
        s = chem.SEI_SPECIES[name]
        peaks, scale = list(s.peaks), s.peak_per_molar
    else:
        raise ValueError(f"unknown species {name!r}; known: {chem.COMPONENT_NAMES + list(chem.SEI_SPECIES)}")
    y = np.zeros_like(wn)
    for pk in peaks:
        y += pk.height * pseudo_voigt(wn, pk.position, pk.fwhm, pk.eta)
    y *= scale
    if atr:
        y *= 1000.0 / wn
    if resolution:
        step = float(np.min(np.diff(wn)))
        y = np.convolve(y, happ_genzel_ils(resolution, step), mode="same")
    return y


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
    from .format import SHARD_SAMPLES, DatasetWriter

    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    cfg = SimConfig(T=int(T), W=int(W), wn_range=(float(wn_range[0]), float(wn_range[1])),
                    systems=list(systems) if systems else None)
    sim = OpIRSim(cfg)
    manifest = build_manifest(sim, seed, n_samples, name)
    chunk = int(shard_samples or SHARD_SAMPLES)
    bar = None
    if progress:
        from tqdm.auto import tqdm
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
    from .format import load

    import fcntl

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
                    import warnings
                    warnings.warn(f"cached default dataset is invalid ({err}); regenerating it")
            generate(path, n_samples=DEFAULT_N_SAMPLES, seed=seed, progress=progress)
            return load(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
