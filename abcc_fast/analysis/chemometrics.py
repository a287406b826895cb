"""Classical chemometric decompositions of an operando series, as baselines.

Both factorise a non-negative matrix D into k non-negative concentration profiles and spectra,
D ~ C S^T, in one of two modes:

- ``"frames"``: D = the frames [T, W] (absorbance; NMF clips negative values to 0). Component j
  contributes C_j S_j to each frame.
- ``"difference"``: D = [max(dA, 0) | max(-dA, 0)] [T, 2W] with dA = x_t - x_0, the positive and
  negative parts of the difference spectra side by side. Component j's signed
  spectrum is S_j+ - S_j-; its SEI candidate contribution is C_j S_j+ (SEI bands only grow).

Factorisations:

- ``mcr_als``: MCR-ALS with pyMCR's ``McrAR`` (OLS regressors, non-negativity on C and S^T,
  up to ``max_iter`` alternations). Initial spectra, in this order: x_0 (the electrolyte at rest),
  max(x_{T-1} - x_0, 0) (what grew: SEI-like), max(x_0 - x_{T-1}, 0) (what was lost), then frames
  at evenly spaced times.
- ``nmf``: scikit-learn ``NMF`` (NNDSVDa initialisation, coordinate descent) of max(D, 0).

Neither knows which component is the SEI. ``split_sei`` assigns components by an *oracle*: among
all non-empty proper subsets of the k components it takes the one whose summed SEI candidate
contribution, referenced to frame 0 (SEI(0) = 0), has the smallest MAE to the true SEI
field over the scored frames 1..T-1; the solvent estimate is the rest of the reconstruction. This flatters the baselines (a user without the truth cannot do it), which
is the fair direction for a comparison against our template fit.
"""
from __future__ import annotations

import itertools
import logging
import warnings

import numpy as np


def _initial_spectra(D: np.ndarray, k: int) -> np.ndarray:
    x0, xl = D[0], D[-1]
    scale = float(np.abs(D).max()) or 1.0
    rows = [np.maximum(x0, 0), np.maximum(xl - x0, 0), np.maximum(x0 - xl, 0)]
    T = D.shape[0]
    rows += [np.maximum(D[i], 0) for i in np.linspace(0, T - 1, max(k - 3, 0) + 2)[1:-1].round().astype(int)]
    ST = np.stack(rows[:k]) + 1e-3 * scale
    return ST


def mcr_als(frames, n_components: int = 2, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """MCR-ALS of frames [T, W] -> (C [T, k], ST [k, W]), both non-negative (pyMCR McrAR)."""
    # pyMCR is optional (pip install abcc-fast[analysis]): imported only when MCR-ALS runs
    from pymcr.constraints import ConstraintNonneg
    from pymcr.mcr import McrAR
    from pymcr.regressors import OLS

    D = np.asarray(frames, dtype=np.float64)
    k = int(n_components)
    if k < 2:
        raise ValueError(f"MCR-ALS needs at least 2 components (solvent and SEI), got {k}")
    mcr = McrAR(c_regr=OLS(), st_regr=OLS(), c_constraints=[ConstraintNonneg()],
                st_constraints=[ConstraintNonneg()], max_iter=int(max_iter), tol_increase=1.0,
                tol_n_increase=20, tol_err_change=1e-14)
    log = logging.getLogger("pymcr.mcr")   # McrAR.fit resets its logger to INFO: silence it while fitting
    was_disabled, log.disabled = log.disabled, True
    try:
        mcr.fit(D, ST=_initial_spectra(D, k), verbose=False)
    finally:
        log.disabled = was_disabled
    C, ST = getattr(mcr, "C_opt_", None), getattr(mcr, "ST_opt_", None)
    if C is None or ST is None:  # pyMCR keeps the last iterate when no optimum was recorded
        C, ST = mcr.C_, mcr.ST_
    return np.asarray(C, dtype=np.float64), np.asarray(ST, dtype=np.float64)


def nmf(frames, n_components: int = 2, max_iter: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NMF of max(frames, 0) [T, W] -> (C [T, k], ST [k, W]) (scikit-learn NMF, NNDSVDa init)."""
    # scikit-learn is optional (pip install abcc-fast[analysis]): imported only when NMF runs
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    D = np.maximum(np.asarray(frames, dtype=np.float64), 0.0)
    k = int(n_components)
    if k < 2:
        raise ValueError(f"NMF needs at least 2 components (solvent and SEI), got {k}")
    model = NMF(n_components=k, init="nndsvda", max_iter=int(max_iter), tol=1e-6, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        C = model.fit_transform(D)
    return C, model.components_.astype(np.float64)


METHODS = {"mcr_als": mcr_als, "nmf": nmf}
MODES = ("frames", "difference")


def decompose(frames, method: str = "mcr_als", n_components: int = 2, mode: str = "frames") -> dict:
    """Factorise one series frames [T, W] -> {"parts" [T, k, W] SEI candidate contribution of each
    component, "total" [T, W] reconstruction of the frames, "C", "ST"} (module docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown decomposition {method!r}; choose from {list(METHODS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {list(MODES)}")
    x = np.asarray(frames, dtype=np.float64)
    W = x.shape[1]
    if mode == "frames":
        C, ST = METHODS[method](x, n_components)
        parts = C[:, :, None] * ST[None, :, :]
        total = parts.sum(1)
    else:
        dA = x - x[:1]
        C, ST = METHODS[method](np.concatenate([np.maximum(dA, 0), np.maximum(-dA, 0)], 1), n_components)
        parts = C[:, :, None] * ST[None, :, :W]
        total = x[:1] + C @ (ST[:, :W] - ST[:, W:])
    return {"parts": parts, "total": total, "C": C, "ST": ST}


def split_sei(parts: np.ndarray, total: np.ndarray, sei_true) -> dict:
    """Oracle assignment of components to the SEI (module docstring).

    parts [T, k, W], total [T, W] from ``decompose``. Returns {"sei" [T, W], "solvent" [T, W]
    (total - sei), "sei_components" (indices), "mae_sei" (AU, frames 1..T-1)}.
    """
    truth = np.asarray(sei_true, dtype=np.float64)
    k = parts.shape[1]
    best = None
    for r in range(1, k):
        for subset in itertools.combinations(range(k), r):
            s = parts[:, list(subset)].sum(1)
            s = s - s[:1]                                   # SEI(0) = 0
            err = float(np.abs(s[1:] - truth[1:]).mean())
            if best is None or err < best[0]:
                best = (err, subset, s)
    err, subset, s = best
    return {"sei": s, "solvent": total - s, "sei_components": list(subset), "mae_sei": err}
