"""OpIRSim's physics: line shapes and spectral templates, the reaction network, the electrolyte's
speciation, the cycling protocol and the film-growth kinetics (docs/opirsim.md).

``Basis`` renders every template on an output grid once (ATR weighting and the instrument line shape
included); ``Network`` holds the stoichiometry of chemistry.REACTIONS as matrices;
``cycling_protocol`` and ``integrate_kinetics`` turn a batch of sample parameters (``draws``) into
the time course of voltage, lithiation, concentrations, extents and film. ``simulator.OpIRSim``
assembles the spectra from them.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from . import chemistry as chem
from . import protocols as proto

AGING_STATES = 5        # SEI templates along the aging coordinate (drift + broadening)
INVISIBLE_FILM_NM = 150.0  # nm per mol/L of invisible solids (LiF, Li2S, ...) in the film (assumption)

CRYSTALS = ["diamond", "Ge", "Si", "fibre"]
# d_p at 1000 cm^-1 (nm), 45 deg, electrolyte n ~1.42: diamond/ZnSe 1.7 um, Ge 0.65, Si 0.81;
# chalcogenide fibre (assumption: similar to diamond, but noisy below ~900 cm^-1)
DP_1000_NM = {"diamond": 1700.0, "Ge": 650.0, "Si": 810.0, "fibre": 1500.0}
CRYSTAL_PROB = [0.45, 0.2, 0.15, 0.2]


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
# Protocol and kinetics
# ---------------------------------------------------------------------------------------------
def cycling_protocol(p: dict, c0: np.ndarray, N: int) -> dict:
    """Voltage, lithiation, current and time [S, N + 1] of each sample's protocol on the fine time grid of
    N kinetics steps, and which samples exfoliate (PC on graphite)."""
    S = p["salt"].shape[0]
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



def _reaction_constants(net: Network, p: dict, pr: dict, el: np.ndarray, modifiers: Optional[dict] = None):
    """Per-sample, per-reaction onset, rate and passivation [S, K] (electrode modifiers applied:
    ``modifiers``, by default ``chemistry.ELECTRODE_MODIFIERS``)."""
    S, K = p["onset_jitter"].shape[0], len(net.names)
    onset = net.onset[None, :] + p["onset_jitter"]
    rate = net.rate[None, :] * p["rate_jitter"] * p["rate_scale"][:, None]
    passiv = np.broadcast_to(net.passivating, (S, K)).copy()
    for (rname, ename), (dv, fr, pv) in (chem.ELECTRODE_MODIFIERS if modifiers is None else modifiers).items():
        k = net.names.index(rname)
        m = el == ename
        onset[m, k] += dv
        rate[m, k] *= fr
        passiv[m, k] = pv
    passiv[pr["exfoliating"], net.k_pc] = False   # PC on graphite does not passivate
    return onset, rate, passiv


def integrate_kinetics(net: Network, p: dict, c0: np.ndarray, pr: dict, T: int, substeps: int,
                       modifiers: Optional[dict] = None) -> dict:
    """Integrate concentrations, extents, film and polarisation over the fine time grid of ``pr``
    ((T - 1) * substeps steps); return the state at the T frame times. ``modifiers``: the
    electrode modifiers of the reactions (default ``chemistry.ELECTRODE_MODIFIERS``)."""
    S, C = c0.shape
    K = len(net.names)
    N = (T - 1) * substeps
    el = np.array(chem.ELECTRODES)[p["electrode"]]
    onset, rate, passiv = _reaction_constants(net, p, pr, el, modifiers)
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
        if (j + 1) % substeps == 0:
            record((j + 1) // substeps)
    frame_idx = np.arange(T) * substeps
    rec.update(t_h=t_h[:, frame_idx], E=E[:, frame_idx], x=x[:, frame_idx])
    return rec



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

