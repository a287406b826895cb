"""SEI formation-pathway analysis of one operando series (predicted or measured).

Inputs (numpy or torch): ``frames`` [T, W] absorbance, ``voltage`` [T] V vs Li/Li+, ``wavenumber``
[W] cm^-1 ascending; optional ``time_s`` [T] and the two streams ``solvent``, ``sei`` [T, W]
(a prediction with ``--streams``, or the truth of a synthetic sample).

Steps, each a function of its own:

1. **Streams** (``estimate_streams``). With streams given, they are used as they are. Without them
   (a measured series), the SEI stream is estimated by a template fit of the difference spectra
   D_t = x_t - x_0 (frame 0: the cell at rest, no SEI yet, z(0) = 0)::

       D_t ~ sum_m a_tm S_m                  SEI product templates, a >= 0        -> SEI estimate
           + sum_e b_te E_e                  soluble products (DMDOHC/DEDOHC), b >= 0
           + sum_e c_te E_e                  free and bound spectra of the electrolyte's
                                             components (speciation / consumption: either sign)
           + d_t x_0 (nu / 1000) + g_t x_0   film displacement exp(-2L/d_p) ~ 1 - 2L nu/(1000 d_p1000)
                                             and gain drift: either sign
           + sum_q e_tq B_q                  baseline basis (Legendre P0-P3, electrode
                                             broadband, water vapour, CO2): either sign

   solved per frame as one non-negative least-squares problem (signed columns enter twice, +/-).
   SEI estimate = sum_m a_tm S_m (frame 0: 0). Solvent estimate = x_0 - B_0 + the electrolyte
   part of the fit, with B_0 the baseline part of a fit of x_0 itself (non-negative electrolyte
   spectra + signed baseline basis). The templates are OpIRSim's (``templates.simulator_basis``),
   so on measured data the estimate is only as good as OpIRSim's band tables.
2. **Product amounts** (``fit_amounts``): each frame's SEI stream as a non-negative combination of
   the product templates (``templates.product_templates``, several aging states per product,
   summed per product): scipy.optimize.nnls on column-normalised templates.
3. **Onsets and order** (``onsets``, ``formation_order``): product p is *detected* when its largest
   amount gives a strongest band (amount x strongest template value) of at least
   max(``detect_au``, ``noise_factor`` x noise), noise = the median per-frame rms residual of the
   fit that produced the amounts (the frames fit of step 1, or the template fit of the given SEI
   stream; ~0 on noise-free synthetic streams);
   its *onset* is the first frame from which its amount stays at or above ``fraction`` x its
   largest amount up to the frame of that largest amount, refined by linear interpolation between that frame and the one before; the
   onset voltage and time are interpolated the same way. The formation order sorts detected
   products by onset (in time, since protocols hold and reverse the voltage); products whose onsets
   lie within ``tie_frames`` frames of each other are reported as forming together.
4. **Band-centroid drift** (``centroid_drift``): ``opirbench.metrics.band_centroids`` of the
   frames (and of the solvent stream) in the manifest's marker windows, relative to frame 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.optimize import nnls

from ..data import chemistry as chem
from ..data.manifest import validate_grid
from ..opirbench.metrics import band_centroids, window_slices
from ..data.templates import (ProductTemplates, check_products, product_templates, reachable, simulator_basis,
                        visible_products)

DEFAULT_FRACTION = 0.1      # onset: amount stays >= 10 % of its largest value
DEFAULT_DETECT_AU = 5e-4    # detection: strongest band of the product >= 0.5 mAU
DEFAULT_TIE_FRAMES = 0.5    # onsets closer than half a frame: formed together
DEFAULT_NOISE_FACTOR = 2.0  # detection also needs a strongest band >= 2 x the rms residual of the fit
NNLS_MAXITER_FACTOR = 20    # scipy nnls maxiter = factor x columns


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _array(x, name: str, ndim: Optional[tuple] = None) -> np.ndarray:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: not a numeric array ({err})") from None
    if ndim is not None and a.ndim not in ndim:
        raise ValueError(f"{name}: expected {' or '.join(f'{d}-D' for d in ndim)}, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise ValueError(f"{name} contains {int(bad.sum())} NaN/Inf values (first at index {where}); "
                         "clean the data (drop or interpolate those points) before the analysis")
    return a


def check_series(frames, voltage, wavenumber, time_s=None, solvent=None, sei=None) -> dict:
    """Validate one series (frames [T, W]) or a batch ([B, T, W]) and return float64 numpy arrays.

    Raises ValueError saying what is wrong (NaN/Inf, shapes that disagree, a grid that is not
    strictly ascending) and how to fix it.
    """
    fr = _array(frames, "frames", (2, 3))
    wn = _array(wavenumber, "wavenumber", (1,))
    validate_grid(torch.from_numpy(wn), "wavenumber grid")
    if fr.shape[-1] != wn.shape[0]:
        raise ValueError(f"frames have {fr.shape[-1]} wavenumber points but the grid has {wn.shape[0]}; "
                         "frames must be [T, W] (or [B, T, W]) on the given wavenumber grid")
    T = fr.shape[-2]
    if T < 2:
        raise ValueError(f"an operando series needs at least 2 frames, got {T}")
    lead = fr.shape[:-1]
    v = _array(voltage, "voltage", (1, 2))
    if v.shape != lead:
        raise ValueError(f"voltage has shape {v.shape}, expected {lead} (one value per frame)")
    t = _array(time_s, "time_s", (1, 2))
    if t is None:
        t = np.broadcast_to(np.arange(T, dtype=np.float64), lead).copy()
    elif t.shape != lead:
        raise ValueError(f"time_s has shape {t.shape}, expected {lead} (one value per frame)")
    out = {"frames": fr, "voltage": v, "wavenumber": wn, "time_s": t}
    for name, s in (("solvent", solvent), ("sei", sei)):
        a = _array(s, name, (2, 3))
        if a is not None and a.shape != fr.shape:
            raise ValueError(f"{name} stream has shape {a.shape}, frames have {fr.shape}; the streams must be on "
                             "the frames' grid and frame count")
        out[name] = a
    if (out["solvent"] is None) != (out["sei"] is None):
        raise ValueError("give both streams (solvent and sei) or neither")
    return out


def components_of(composition, names: Sequence[str] = None) -> list[str]:
    """Component names with a positive mole fraction: ``composition`` is [C] over ``names``
    (default ``chem.COMPONENT_NAMES``) or a {name: fraction} mapping."""
    if isinstance(composition, dict):
        comps = [str(k) for k, v in composition.items() if float(v) > 0]
    else:
        c = _array(composition, "composition", (1,))
        names = list(names or chem.COMPONENT_NAMES)
        if c.shape[0] != len(names):
            raise ValueError(f"composition has {c.shape[0]} entries, the component vocabulary {len(names)}")
        comps = [n for n, x in zip(names, c) if x > 0]
    unknown = [n for n in comps if n not in chem.COMPONENT_NAMES]
    if unknown:
        raise ValueError(f"unknown component(s) {unknown} in the composition; known: {', '.join(chem.COMPONENT_NAMES)}")
    return comps


def default_products(wavenumber, components: Optional[Sequence[str]] = None, resolution: float = 4.0) -> list[str]:
    """Products to fit: those the components can form (all film products without components),
    keeping only those with bands on the grid."""
    if components:
        cand = [p for p in reachable(components)[1] if p in chem.FILM_SPECIES]
    else:
        cand = list(chem.FILM_SPECIES)
    vis = visible_products(wavenumber, cand, resolution)
    if not vis:
        raise ValueError(f"none of the candidate SEI products {cand} has a band on this grid "
                         f"({float(np.min(wavenumber)):.0f}-{float(np.max(wavenumber)):.0f} cm^-1); the grid must "
                         "cover part of 700-1900 cm^-1")
    return vis


# --------------------------------------------------------------------------------------------
# non-negative least squares
# --------------------------------------------------------------------------------------------
def nnls_columns(A: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min ||A x - y||, x >= 0, for every row y of Y: A [W, M], Y [N, W] -> (X [N, M], residual norms [N]).

    Columns are scaled to unit norm for the solver (the solution is rescaled back); all-zero
    columns get coefficient 0.
    """
    norm = np.linalg.norm(A, axis=0)
    ok = norm > 0
    An = A[:, ok] / norm[ok]
    X = np.zeros((Y.shape[0], A.shape[1]))
    res = np.zeros(Y.shape[0])
    maxiter = NNLS_MAXITER_FACTOR * max(An.shape[1], 1)
    for i, y in enumerate(Y):
        x, r = nnls(An, y, maxiter=maxiter)
        X[i, ok] = x / norm[ok]
        res[i] = r
    return X, res


def fit_amounts(sei, templates: ProductTemplates) -> dict:
    """Per-frame NNLS of the SEI stream on the product templates.

    sei [..., W] (AU) -> {"amounts" [..., P] (mol/L, summed over aging states), "coefficients"
    [..., M], "fit" [..., W] the reconstruction, "residual_rms" [...] (AU)}.

    Example::

        tpl = product_templates(wn, ["LEDC", "Li2CO3"])
        out = fit_amounts(sei, tpl)          # sei [T, W]
        out["amounts"][:, 0]                 # LEDC amount per frame
    """
    s = _array(sei, "sei")
    if s.shape[-1] != templates.matrix.shape[1]:
        raise ValueError(f"SEI spectra have {s.shape[-1]} points, the templates {templates.matrix.shape[1]}; "
                         "build the templates on the data's grid")
    lead = s.shape[:-1]
    Y = s.reshape(-1, s.shape[-1])
    X, res = nnls_columns(templates.matrix.T, Y)
    fit = X @ templates.matrix
    return {"amounts": templates.per_product(X).reshape(lead + (len(templates.products),)),
            "coefficients": X.reshape(lead + (-1,)), "fit": fit.reshape(s.shape),
            "residual_rms": (res / np.sqrt(s.shape[-1])).reshape(lead)}


def estimate_streams(frames, wavenumber, templates: ProductTemplates, components: Optional[Sequence[str]] = None,
                     resolution: float = 4.0) -> dict:
    """Solvent and SEI streams of a measured series without streams (the template fit of the
    module docstring, step 1). frames [T, W] -> {"sei", "solvent", "baseline" [T, W],
    "coefficients" [T, M] (SEI template coefficients), "residual_rms" [T]}.

    ``components``: the electrolyte's components (their free/bound spectra enter the fit; default
    all components of the chemistry tables).
    """
    fr = _array(frames, "frames", (2,))
    wn = _array(wavenumber, "wavenumber", (1,))
    basis = simulator_basis(wn, resolution)
    comps, soluble = reachable(components) if components else (list(chem.COMPONENT_NAMES), list(chem.SOLUBLE_SPECIES))
    rows = [r for c in comps for r in (basis.free_row[c], basis.bound_row[c])]
    sol_rows = [basis.soluble_row[s] for s in chem.SOLUBLE_SPECIES if s in soluble]
    x0 = fr[0]
    electrolyte = basis.electrolyte[rows].T                               # [W, E]
    signed = np.concatenate([electrolyte, (x0 * wn / 1000.0)[:, None], x0[:, None], basis.baseline.T], 1)
    nonneg = np.concatenate([templates.matrix.T, basis.electrolyte[sol_rows].T], 1)
    A = np.concatenate([nonneg, signed, -signed], 1)
    M, Ns, Ks = templates.matrix.shape[0], nonneg.shape[1], signed.shape[1]
    D = fr[1:] - x0[None]
    X, res = nnls_columns(A, D)
    a = X[:, :M]
    c = X[:, Ns:Ns + Ks] - X[:, Ns + Ks:]
    nb = basis.baseline.shape[0]
    sei = np.zeros_like(fr)
    sei[1:] = a @ templates.matrix
    solvent_change = X[:, M:Ns] @ nonneg[:, M:].T + c[:, :-nb] @ signed[:, :-nb].T
    baseline_change = c[:, -nb:] @ basis.baseline
    # baseline of the rest frame: fit x_0 with non-negative electrolyte spectra + signed baseline basis
    A0 = np.concatenate([electrolyte, basis.baseline.T, -basis.baseline.T], 1)
    X0, _ = nnls_columns(A0, x0[None])
    E = electrolyte.shape[1]
    b0 = (X0[0, E:E + nb] - X0[0, E + nb:]) @ basis.baseline
    baseline = np.broadcast_to(b0, fr.shape).copy()
    baseline[1:] += baseline_change
    solvent = np.broadcast_to(x0 - b0, fr.shape).copy()
    solvent[1:] += solvent_change
    coef = np.zeros((fr.shape[0], M))
    coef[1:] = a
    rms = np.zeros(fr.shape[0])
    rms[1:] = res / np.sqrt(fr.shape[1])
    return {"sei": sei, "solvent": solvent, "baseline": baseline, "coefficients": coef, "residual_rms": rms}


# --------------------------------------------------------------------------------------------
# onsets and order
# --------------------------------------------------------------------------------------------
def onsets(amounts, voltage, time_s=None, products: Sequence[str] = None, peak=None, *,
           fraction: float = DEFAULT_FRACTION, detect_au: float = DEFAULT_DETECT_AU, noise_au: float = 0.0,
           noise_factor: float = DEFAULT_NOISE_FACTOR) -> list[dict]:
    """Onset of every product from its amount curve (definition: module docstring, step 3).

    amounts [T, P] (mol/L), voltage [T], time_s [T] (default frame index), peak [P] strongest
    template absorbance per mol/L (default 1: ``detect_au`` then applies to the amount itself);
    detection threshold max(detect_au, noise_factor x noise_au) AU.
    Returns one dict per product: name, detected, max_amount, final_amount, onset_frame
    (fractional), onset_voltage, onset_time_s (None when not detected).

    Example: a sigmoid growth n(V) = 1 / (1 + exp((V - 0.8) / 0.02)) on a linear sweep gives
    onset_voltage = 0.8 + 0.02 ln 9 ~ 0.844 V for fraction 0.1 (up to the linear interpolation).
    """
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"onset fraction must be in (0, 1), got {fraction}")
    if not float(detect_au) >= 0.0:
        raise ValueError(f"detect_au must be >= 0, got {detect_au}")
    n = _array(amounts, "amounts", (2,))
    T, P = n.shape
    v = _array(voltage, "voltage", (1,))
    t = np.arange(T, dtype=np.float64) if time_s is None else _array(time_s, "time_s", (1,))
    if v.shape[0] != T or t.shape[0] != T:
        raise ValueError(f"amounts have {T} frames, voltage {v.shape[0]}, time_s {t.shape[0]}")
    names = list(products) if products is not None else [f"product_{p}" for p in range(P)]
    pk = np.ones(P) if peak is None else _array(peak, "peak", (1,))
    threshold_au = max(float(detect_au), float(noise_factor) * float(noise_au))
    out = []
    for p in range(P):
        a = n[:, p]
        top = float(a.max())
        rec = {"product": names[p], "max_amount": top, "final_amount": float(a[-1]),
               "max_peak_au": top * float(pk[p]), "threshold_au": threshold_au,
               "detected": bool(top > 0 and top * float(pk[p]) >= threshold_au),
               "onset_frame": None, "onset_voltage": None, "onset_time_s": None}
        if rec["detected"]:
            thr = fraction * top
            kmax = int(np.argmax(a))
            below = np.nonzero(a[:kmax + 1] < thr)[0]
            k = 0 if below.size == 0 else int(below[-1]) + 1     # a stays >= thr from frame k to kmax
            if k == 0:
                f = 0.0
            else:
                lo, hi = a[k - 1], a[k]
                f = (k - 1) + float(np.clip((thr - lo) / (hi - lo), 0.0, 1.0)) if hi > lo else float(k)
            rec["onset_frame"] = f
            rec["onset_voltage"] = float(np.interp(f, np.arange(T), v))
            rec["onset_time_s"] = float(np.interp(f, np.arange(T), t))
        out.append(rec)
    return out


def formation_order(onset_list: Sequence[dict], tie_frames: float = DEFAULT_TIE_FRAMES) -> list[list[str]]:
    """Detected products grouped by onset, earliest first: [[first], [second, formed together], ...].

    A product joins the current group when its onset is within ``tie_frames`` frames of the
    group's first member."""
    det = sorted((o for o in onset_list if o["detected"]), key=lambda o: (o["onset_frame"], o["product"]))
    groups: list[list[str]] = []
    start = None
    for o in det:
        if groups and o["onset_frame"] - start <= tie_frames:
            groups[-1].append(o["product"])
        else:
            groups.append([o["product"]])
            start = o["onset_frame"]
    return groups


# --------------------------------------------------------------------------------------------
# band centroids
# --------------------------------------------------------------------------------------------
def centroid_drift(frames, wavenumber, marker_windows: Optional[dict] = None) -> dict:
    """Band centroids (cm^-1) of frames [T, W] in the marker windows, and their drift from frame 0.

    Uses ``opirbench.metrics.band_centroids`` (baseline-corrected, clipped, centroid = sum(nu a) /
    sum(a)); windows without enough grid points are skipped. Returns {"windows": [n] names,
    "centroid": [T, n], "drift": [T, n]} (numpy)."""
    windows = dict(marker_windows if marker_windows is not None else chem.MARKER_WINDOWS)
    wn = torch.as_tensor(_array(wavenumber, "wavenumber", (1,)), dtype=torch.float64)
    fr = torch.as_tensor(_array(frames, "frames", (2,)))
    names = [name for name, _, _ in window_slices(wn, windows)]
    c = band_centroids(fr, wn, windows).numpy()
    return {"windows": names, "centroid": c, "drift": c - c[:1]}


# --------------------------------------------------------------------------------------------
# one call
# --------------------------------------------------------------------------------------------
@dataclass
class PathwayAnalysis:
    """The result of ``analyze`` for one series. Arrays are numpy float64."""

    source: str                     # "streams" or "frames (template fit)"
    products: list
    wavenumber: np.ndarray          # [W]
    voltage: np.ndarray             # [T]
    time_s: np.ndarray              # [T]
    frames: np.ndarray              # [T, W]
    sei: np.ndarray                 # [T, W] the SEI stream analysed (given or estimated)
    solvent: Optional[np.ndarray]   # [T, W]
    sei_fit: np.ndarray             # [T, W] template reconstruction of the SEI stream
    amounts: np.ndarray             # [T, P] mol/L
    onsets: list                    # per-product dicts (see ``onsets``)
    order: list                     # groups of product names, earliest first
    centroids: dict                 # {"windows", "centroid" [T, n], "drift" [T, n]} of the frames
    solvent_centroids: Optional[dict] = None
    residual_rms: Optional[np.ndarray] = None   # [T] AU, rms residual of the fit behind the amounts
    settings: dict = field(default_factory=dict)

    def onset(self, product: str) -> dict:
        for o in self.onsets:
            if o["product"] == product:
                return o
        raise ValueError(f"product {product!r} was not analysed; analysed: {', '.join(self.products)}")

    def to_json(self) -> dict:
        """JSON-ready summary: settings, onsets, order, amounts per frame, centroid drift."""
        def drift_summary(c):
            if c is None:
                return None
            return {w: {"total_drift_cm": float(c["drift"][-1, i]), "max_abs_drift_cm": float(np.abs(c["drift"][:, i]).max()),
                        "centroid_cm": [round(float(x), 3) for x in c["centroid"][:, i]]}
                    for i, w in enumerate(c["windows"])}
        return {
            "source": self.source, "settings": self.settings, "products": list(self.products),
            "onsets": self.onsets, "order": self.order,
            "voltage": [float(x) for x in self.voltage], "time_s": [float(x) for x in self.time_s],
            "amounts_mol_per_L": {p: [float(x) for x in self.amounts[:, i]] for i, p in enumerate(self.products)},
            "fit_residual_rms_au": None if self.residual_rms is None else [float(x) for x in self.residual_rms],
            "centroid_drift": drift_summary(self.centroids),
            "solvent_centroid_drift": drift_summary(self.solvent_centroids),
        }


def analyze(frames, voltage, wavenumber, *, time_s=None, solvent=None, sei=None, products: Optional[Sequence[str]] = None,
            components: Optional[Sequence[str]] = None, marker_windows: Optional[dict] = None,
            fraction: float = DEFAULT_FRACTION, detect_au: float = DEFAULT_DETECT_AU,
            noise_factor: float = DEFAULT_NOISE_FACTOR, tie_frames: float = DEFAULT_TIE_FRAMES,
            resolution: float = 4.0, use_streams: bool = True):
    """Pathway analysis of one series (frames [T, W]) -> PathwayAnalysis, or of a batch
    ([B, T, W], streams [B, T, W], voltage/time_s [B, T]) -> list of PathwayAnalysis.

    ``products``: product names to fit (default: those ``components`` can form, or every film
    product when no components are given). ``use_streams=False`` ignores given streams and runs
    the frames-only estimate.

    Example::

        res = analyze(sample["frames"], sample["voltage"], ds.wavenumber, time_s=sample["time_s"],
                      solvent=sample["solvent"], sei=sample["sei"], components=["EC", "DMC", "LiPF6"])
        res.order        # e.g. [["LEDC"], ["LMC", "ROLi"], ["Li2CO3"]]
    """
    x = check_series(frames, voltage, wavenumber, time_s, solvent, sei)
    comps = list(components) if components else None
    names = check_products(products) if products else default_products(x["wavenumber"], comps, resolution)
    tpl = product_templates(x["wavenumber"], names, resolution)
    kw = dict(components=comps, marker_windows=marker_windows, fraction=fraction, detect_au=detect_au,
              noise_factor=noise_factor, tie_frames=tie_frames, resolution=resolution, use_streams=use_streams)
    if x["frames"].ndim == 3:
        return [_analyze_one(x["frames"][b], x["voltage"][b], x["wavenumber"], x["time_s"][b],
                             None if x["solvent"] is None else x["solvent"][b],
                             None if x["sei"] is None else x["sei"][b], tpl, **kw)
                for b in range(x["frames"].shape[0])]
    return _analyze_one(x["frames"], x["voltage"], x["wavenumber"], x["time_s"], x["solvent"], x["sei"], tpl, **kw)


def _analyze_one(frames, voltage, wavenumber, time_s, solvent, sei, tpl, *, components, marker_windows, fraction,
                 detect_au, noise_factor, tie_frames, resolution, use_streams) -> PathwayAnalysis:
    fit_rms = None
    if sei is not None and use_streams:
        source, sei_stream, solvent_stream = "streams", sei, solvent
    else:
        est = estimate_streams(frames, wavenumber, tpl, components, resolution)
        source, sei_stream, solvent_stream = "frames (template fit)", est["sei"], est["solvent"]
        fit_rms = est["residual_rms"]
    fit = fit_amounts(sei_stream, tpl)
    if fit_rms is None:
        fit_rms = fit["residual_rms"]
    noise = float(np.median(fit_rms[1:]))
    ons = onsets(fit["amounts"], voltage, time_s, tpl.products, tpl.peak, fraction=fraction, detect_au=detect_au,
                 noise_au=noise, noise_factor=noise_factor)
    windows = dict(marker_windows if marker_windows is not None else chem.MARKER_WINDOWS)
    return PathwayAnalysis(
        source=source, products=list(tpl.products), wavenumber=wavenumber, voltage=voltage, time_s=time_s,
        frames=frames, sei=sei_stream, solvent=solvent_stream, sei_fit=fit["fit"], amounts=fit["amounts"],
        onsets=ons, order=formation_order(ons, tie_frames), centroids=centroid_drift(frames, wavenumber, windows),
        solvent_centroids=None if solvent_stream is None else centroid_drift(solvent_stream, wavenumber, windows),
        residual_rms=fit_rms,
        settings={"onset_fraction": fraction, "detect_au": detect_au, "noise_factor": noise_factor,
                  "noise_au": noise, "tie_frames": tie_frames,
                  "aging_states_per_product": tpl.n_states, "resolution_cm": resolution,
                  "components": components,
                  "onset_definition": ONSET_DEFINITION.format(f=fraction, d=detect_au, k=noise_factor)})


ONSET_DEFINITION = ("onset = first frame from which the fitted amount stays >= {f:g} x its largest amount up to "
                    "the frame of that largest amount "
                    "(linear interpolation with the frame before; voltage and time interpolated alike); "
                    "a product counts as formed when its largest amount x its strongest template band >= "
                    "max({d:g} AU, {k:g} x the median rms residual of the fit)")
