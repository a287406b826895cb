"""OpIRSim's random draws: each sample's uniforms and normals, by name, and the parameters they give.

Every sample draws ``N_UNIFORM`` uniforms U [S, N_UNIFORM] and per-frame normals Z [S, T+1,
N_FRAME_NORMALS] from its own generator (``draw_randoms``). ``UNIFORMS`` names each column of U; the
code reads them by name (``Draws``), never by position. The columns *are* the dataset's bytes: moving
one changes every generated sample (tests/test_oracle.py pins the table).

``HIDDEN_DRAWS`` names the uniforms that no input of a sample reveals (nothing in the static
spectrum, the voltage/time protocol, the composition or the electrode depends on them): film
kinetics, salt polarisation and operando-only nuisance. With the operando normals Z[:, :T], the frame
noise and the split of the static spectrum's scale into contact and static gain
(``_redraw_static_gain``) they are what even a perfect model must average over:
``OpIRSim.conditional_mean`` and the simulator oracle marginalise exactly these
(``conditional_randoms``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from . import chemistry as chem
from . import protocols as proto
from .physics import CRYSTAL_PROB

N_UNIFORM = 96          # uniforms per sample (parameter draws)
N_FRAME_NORMALS = 8     # per-frame normals (baseline random walk, atmosphere, ...)


@dataclass(frozen=True)
class Draw:
    """One named draw: ``width`` columns of U from ``column`` on (``width=None``: one per reaction of
    chemistry.REACTIONS, counted when it is read)."""
    column: int
    width: Optional[int] = 1
    meaning: str = ""


UNIFORMS: dict[str, Draw] = {
    # composition (revealed by the composition input and the static spectrum)
    "electrode": Draw(0, meaning="electrode of the system"),
    "salt": Draw(1, meaning="conducting salt of the system"),
    "salt_molar": Draw(2, meaning="salt concentration"),
    "solvent_jitter": Draw(3, 2, "solvent ratio factor in [0.7, 1.4]; solvent j reads column 3 + j % 2"),
    "vc_present": Draw(5, meaning="random VC additive present (p = 0.3)"),
    "vc_amount": Draw(6, meaning="random VC wt%"),
    "fec_present": Draw(7, meaning="random FEC additive present (p = 0.3)"),
    "fec_amount": Draw(8, meaning="random FEC wt%"),
    "additive_amount": Draw(9, meaning="wt% of the system's fixed additives"),
    "extra_salt_amount": Draw(10, meaning="amount of the system's extra salts"),
    "solvation_number": Draw(11, meaning="Li+ solvation number"),
    # protocol (revealed by the voltage and time inputs)
    "protocol": Draw(12, meaning="galvanostatic / CV / GITT"),
    "c_rate": Draw(13),
    "gitt_duty": Draw(14),
    "gitt_period": Draw(15),
    "scan_rate": Draw(16),
    "x_end": Draw(17, meaning="irreversible lithiation remainder"),
    "v_up": Draw(18, meaning="upper cut-off voltage"),
    "eta": Draw(19, meaning="overpotential"),
    "tau_eta": Draw(20, meaning="overpotential relaxation time"),
    "tau_x": Draw(21, meaning="CV lithiation lag"),
    # salt polarisation and film kinetics (hidden)
    "polarisation": Draw(22, meaning="salt polarisation gain"),
    "tau_pol": Draw(23, meaning="salt polarisation time constant"),
    "rate_scale": Draw(24, meaning="common factor of every reaction rate"),
    "L_max": Draw(29, meaning="passivation thickness scale"),
    "aging": Draw(30, meaning="film aging scale"),
    # measurement
    "crystal": Draw(31, meaning="ATR crystal"),
    "contact": Draw(32, meaning="optical contact (static spectrum and frames)"),
    "noise_sigma": Draw(33),
    "static_noise_factor": Draw(34),
    "baseline_scale": Draw(35),
    "electrode_term": Draw(37, meaning="electrode broadband amplitude (operando only)"),
    "atmosphere": Draw(38, meaning="water vapour / CO2 residue amplitude"),
    "reseat": Draw(39, meaning="re-seating jump happens (p = 0.1)"),
    "rate_jitter": Draw(40, None, "per-reaction rate factor"),
    "onset_jitter": Draw(60, None, "per-reaction onset shift"),
    "gain_drift": Draw(78, meaning="operando gain drift"),
    "reseat_pos": Draw(79, meaning="frame of the re-seating jump"),
    "tau_leave": Draw(80, meaning="lifetime of soluble products in the probed volume"),
    "transest_scale": Draw(81, meaning="EMC transesterification rate factor"),
    "crack": Draw(82, meaning="Si: passivation lost per unit |dx|"),
    "fresh": Draw(83, meaning="Cu/Li: passivation lost per unit plated"),
    "electrode_slope": Draw(84, meaning="slope of the electrode broadband term"),
    "static_gain": Draw(85, meaning="static spectrum's own contact factor"),
    "extra_components": Draw(86, 10, "presence and amount of abcc_fast.vocabulary's extra components"),
}
# columns 25-28 and 36 are drawn but unused

# The draws no input of a sample reveals (module docstring)
HIDDEN_DRAWS = ("polarisation", "tau_pol", "rate_scale", "L_max", "aging", "electrode_term", "reseat",
                "rate_jitter", "onset_jitter", "gain_drift", "reseat_pos", "tau_leave", "transest_scale", "crack",
                "fresh", "electrode_slope")

# columns of the per-frame normals Z [S, T+1, N_FRAME_NORMALS]; rows: 0 baseline offset, 1 baseline
# drift, 2.. baseline random walk, T the static spectrum's own baseline
Z_LEGENDRE = 0          # columns 0..3: Legendre P0..P3 baseline coefficients
Z_RESEAT = 4            # the re-seating jump's offset sign and slope
Z_WATER = 5             # water-vapour residue
Z_CO2 = 6               # CO2 residue


def columns(*names: str) -> tuple[int, ...]:
    """The U columns of the named draws, sorted (per-reaction draws: one per reaction of chemistry)."""
    out = set()
    for name in names:
        if name not in UNIFORMS:
            raise ValueError(f"unknown draw {name!r}; known: {', '.join(UNIFORMS)}")
        d = UNIFORMS[name]
        out.update(range(d.column, d.column + (len(chem.REACTIONS) if d.width is None else d.width)))
    return tuple(sorted(out))


HIDDEN_UNIFORMS = columns(*HIDDEN_DRAWS)
CONTACT_UNIFORM = UNIFORMS["contact"].column
STATIC_GAIN_UNIFORM = UNIFORMS["static_gain"].column
# contact = CONTACT_LO + CONTACT_SPAN * u scales the static spectrum and the operando frames;
# static_gain = STATIC_GAIN_MAX * (2 u - 1) only the static spectrum (a separate measurement, the
# cell re-seated on the crystal). See ``_redraw_static_gain`` for what the inputs reveal of them.
CONTACT_LO, CONTACT_SPAN = 0.85, 0.3
STATIC_GAIN_MAX = 0.015


class Draws:
    """The uniforms U [S, N_UNIFORM] of a batch of samples, read by name."""

    def __init__(self, U: np.ndarray):
        self.U = U

    def __call__(self, name: str) -> np.ndarray:
        """[S] the single-column draw ``name``."""
        d = UNIFORMS[name]
        if d.width != 1:
            raise ValueError(f"draw {name!r} has several columns; read it with block()")
        return self.U[:, d.column]

    def block(self, name: str, width: int) -> np.ndarray:
        """[S, width] the first ``width`` columns of the multi-column draw ``name``."""
        d = UNIFORMS[name]
        return self.U[:, d.column:d.column + width]


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


# ---------------------------------------------------------------------------------------------
# uniforms -> physical parameters
# ---------------------------------------------------------------------------------------------
def sample_parameters(U: np.ndarray, system_pos: np.ndarray, overrides: Optional[dict] = None) -> dict:
    """Map uniforms U [S, N_UNIFORM] to physical parameters (arrays [S] unless noted).

    ``system_pos``: 0-based positions in chemistry.SYSTEMS. ``overrides``: {name: value} replacing
    any drawn parameter (tests and what-if runs), e.g. {"salt_molar": 1.5, "vc_wt": 0, "fec_wt": 0,
    "protocol": "galvanostatic", "noise_sigma": 5e-4, "atmosphere": 0.0}.
    """
    u = Draws(U)
    p: dict = {"system": system_pos.astype(np.int64)}
    p.update(_composition(u, system_pos))
    p.update(_protocol(u, p["electrode"]))
    p.update(_kinetics(u))
    p.update(_measurement(u))
    if overrides:
        _override(p, overrides)
    return p


def _composition(u: Draws, system_pos: np.ndarray) -> dict:
    """Electrode, salt and electrolyte composition of each sample's system."""
    S = u.U.shape[0]
    comps = chem.COMPONENT_NAMES
    ci = {n: i for i, n in enumerate(comps)}
    electrode = np.zeros(S, dtype=np.int64)
    salt = np.zeros(S, dtype=np.int64)
    salt_molar = np.zeros(S)
    weights = np.zeros((S, len(comps)))   # solvent mass fractions (before additives)
    fixed_add = np.zeros((S, len(comps)))  # wt% of fixed additives
    extra_salt = np.zeros((S, len(comps)))
    n_s = np.zeros(S)
    rand_add = np.zeros(S, dtype=bool)
    jitter_u = u.block("solvent_jitter", 2)
    for k, sysd in enumerate(chem.SYSTEMS):
        m = system_pos == k
        if not m.any():
            continue
        el_names = [e for e, _ in sysd.electrodes]
        electrode[m] = [chem.ELECTRODES.index(el_names[j]) for j in
                        _choice(u("electrode")[m], [pr for _, pr in sysd.electrodes])]
        salt[m] = [ci[sysd.salts[j][0]] for j in _choice(u("salt")[m], [pr for _, pr in sysd.salts])]
        lo, hi = sysd.salt_molar
        salt_molar[m] = lo + u("salt_molar")[m] * (hi - lo)
        names = list(sysd.solvents)
        for j, n in enumerate(names):
            base = sysd.solvents[n]
            if sysd.by_volume:  # v/v -> w/w with the neat densities
                base = base * chem.COMPONENTS[n].density
            # composition ratios randomised by a factor in [0.7, 1.4]
            jitter = np.exp(0.35 * (2 * jitter_u[m, j % 2] - 1)) if len(names) > 1 else 1.0
            weights[m, ci[n]] = base * jitter
        for n, (lo, hi) in sysd.additives.items():
            fixed_add[m, ci[n]] = lo + u("additive_amount")[m] * (hi - lo)
        for n, (lo, hi) in sysd.extra_salts.items():
            extra_salt[m, ci[n]] = lo + u("extra_salt_amount")[m] * (hi - lo)
        a, b = sysd.solvation_number
        n_s[m] = a + u("solvation_number")[m] * (b - a)
        rand_add[m] = sysd.random_additives
    weights /= weights.sum(1, keepdims=True)
    # random VC / FEC at small fractions across the carbonate systems, each with p = 0.3
    vc_wt = np.where(rand_add & (u("vc_present") < 0.3), 0.5 + 2.5 * u("vc_amount"), 0.0) + fixed_add[:, ci["VC"]]
    fec_wt = np.where(rand_add & (u("fec_present") < 0.3), 1.0 + 5.0 * u("fec_amount"), 0.0) + fixed_add[:, ci["FEC"]]
    return dict(electrode=electrode, salt=salt, salt_molar=salt_molar, solvent_weights=weights, vc_wt=vc_wt,
                fec_wt=fec_wt, extra_salt=extra_salt, solvation_number=n_s)


def _protocol(u: Draws, electrode: np.ndarray) -> dict:
    """The cycling protocol: galvanostatic 0.5, CV 0.25, GITT 0.25; Li metal is never swept."""
    prot = _choice(u("protocol"), [0.5, 0.25, 0.25])
    prot = np.where((electrode == chem.ELECTRODES.index("Li")) & (prot == 1), 0, prot)
    return {"protocol": prot,
            "c_rate": _loguniform(u("c_rate"), 0.05, 0.5),          # 1/h, C/20 .. C/2
            "gitt_duty": 0.2 + 0.3 * u("gitt_duty"),
            "gitt_period_h": 0.5 + 1.5 * u("gitt_period"),
            "scan_mV_s": _loguniform(u("scan_rate"), 0.05, 0.5),     # 0.05-1 mV/s
            "x_end_u": u("x_end"),
            "v_up_u": u("v_up"),
            "eta_V": 0.02 + 0.06 * u("eta"),
            "tau_eta_h": 0.05 + 0.25 * u("tau_eta"),
            "tau_x_h": 0.05 + 0.25 * u("tau_x")}


def _kinetics(u: Draws) -> dict:
    """Salt polarisation and film-growth kinetics (all hidden)."""
    K = len(chem.REACTIONS)
    return {"polarisation": 0.04 + 0.11 * u("polarisation"),        # |pi| at C/10 (5-30 % of c0 at C/10-1C)
            "tau_pol_s": _loguniform(u("tau_pol"), 60.0, 1800.0),     # minutes
            "rate_scale": _loguniform(u("rate_scale"), 0.4, 2.5),
            "rate_jitter": _loguniform(u.block("rate_jitter", K), 0.6, 1.6),    # [S, K]
            "onset_jitter": 0.06 * (2 * u.block("onset_jitter", K) - 1),        # [S, K] V
            "L_max_nm": 10.0 + 30.0 * u("L_max"),       # passivation scale; films end at ~10-60 nm
            "aging_molar": _loguniform(u("aging"), 0.02, 0.2),
            "tau_leave_h": 1.0 + 4.0 * u("tau_leave"),
            "transest_scale": _loguniform(u("transest_scale"), 0.5, 2.0),
            "crack": 0.5 + 1.5 * u("crack"),                          # Si: passivation lost per unit |dx|
            "fresh": 0.5 + 1.5 * u("fresh")}                          # Cu/Li: passivation lost per unit plated


def _measurement(u: Draws) -> dict:
    """Crystal, contact, noise, baseline, electrode broadband term, atmosphere, re-seating, gains."""
    return {"crystal": _choice(u("crystal"), CRYSTAL_PROB),
            "contact": CONTACT_LO + CONTACT_SPAN * u("contact"),
            "noise_sigma": _loguniform(u("noise_sigma"), 1e-4, 1e-3),
            "static_noise_factor": 0.4 + 0.6 * u("static_noise_factor"),
            "baseline_scale": _loguniform(u("baseline_scale"), 1e-3, 1e-2),
            "electrode_term": _loguniform(u("electrode_term"), 1e-3, 1e-2),
            "atmosphere": _loguniform(u("atmosphere"), 1e-4, 1e-3),
            "reseat": u("reseat") < 0.1,
            "reseat_pos": u("reseat_pos"),
            "gain_drift": 0.01 * (2 * u("gain_drift") - 1),               # +-1 %
            "static_gain": STATIC_GAIN_MAX * (2 * u("static_gain") - 1),  # static vs operando contact
            "electrode_slope": 2 * u("electrode_slope") - 1}


def _override(p: dict, overrides: dict) -> None:
    for k, v in overrides.items():
        if k == "protocol" and isinstance(v, str):
            v = proto.PROTOCOLS.index(v)
        if k == "electrode" and isinstance(v, str):
            v = chem.ELECTRODES.index(v)
        if k not in p:
            raise ValueError(f"unknown simulator override {k!r}; known: {sorted(p)}")
        p[k] = np.broadcast_to(np.asarray(v, dtype=np.asarray(p[k]).dtype), np.shape(p[k])).copy()


# ---------------------------------------------------------------------------------------------
# draws that keep the inputs: the conditional mean's replicates
# ---------------------------------------------------------------------------------------------
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


def _hidden_columns(hidden) -> np.ndarray:
    """``hidden`` (None: all of HIDDEN_UNIFORMS; else draw names or U columns, a subset) -> columns."""
    if hidden is None:
        return np.array(HIDDEN_UNIFORMS, dtype=np.int64)
    cols = set()
    for h in hidden:
        cols.update(columns(h) if isinstance(h, str) else (int(h),))
    if not cols <= set(HIDDEN_UNIFORMS):
        raise ValueError(f"hidden must be a subset of HIDDEN_UNIFORMS; {sorted(cols - set(HIDDEN_UNIFORMS))} "
                         "shape the inputs")
    return np.array(sorted(cols), dtype=np.int64)


def conditional_randoms(seed: int, indices: np.ndarray, T: int, W: int, replicates: int, draw_seed: int = 0,
                        hidden: Optional[Sequence] = None, frame_normals: bool = True,
                        frame_noise: bool = False, static_gain: Optional[bool] = None):
    """Random numbers for ``replicates`` copies of each sample that keep everything the inputs reveal
    (U outside HIDDEN_UNIFORMS, the static spectrum's normals and noise) and redraw the rest: hidden
    uniforms, the operando frames' normals, the split of the static spectrum's scale into contact
    and static gain (``_redraw_static_gain``: the inputs reveal only their product); the frame noise
    is set to 0 (it has zero mean).

    ``hidden`` (a subset of the hidden draws: names of HIDDEN_DRAWS or their U columns),
    ``frame_normals=False``, ``frame_noise=True`` (redrawn instead of 0) and ``static_gain`` split the
    unpredictable part into its sources (bench/bench_oracle.py); ``static_gain`` defaults to True
    when ``hidden`` is None (everything redrawn) and to False when a subset is named. Returns (U, Z,
    noise) for S * replicates samples, replicate-major ([m * S + s] is copy m of sample s).
    Deterministic per (seed, sample index, draw_seed, replicate), whatever the batching."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    S, M = idx.size, int(replicates)
    U, Z, noise = draw_randoms(seed, idx, T, W)
    if static_gain is None:
        static_gain = hidden is None
    hidden = _hidden_columns(hidden)
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
