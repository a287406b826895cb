"""Figures for operando IR, on the non-interactive Agg backend.

Every function takes plain tensors/arrays, returns the matplotlib Figure and, given ``path``,
saves it as PNG atomically (temporary file in the same directory, then rename). Shapes::

    wavenumber [W] cm^-1, frames [T, W] absorbance (AU), voltage [T] V, time_s [T] s

IR convention: wavenumber axes run high -> low (left to right).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from .._atomic import atomic_path

__all__ = ["save_figure", "operando_heatmap", "waterfall", "difference_spectra", "decomposition",
           "centroid_drift", "uncertainty_band", "to_numpy"]


def to_numpy(x) -> np.ndarray:
    """Tensor / array / list -> float64 numpy array (detached, on CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def save_figure(fig: Figure, path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically; returns the path."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    return Path(path)


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _check_frames(wavenumber, frames, name="frames"):
    wn, fr = to_numpy(wavenumber), to_numpy(frames)
    if wn.ndim != 1:
        raise ValueError(f"wavenumber must be 1-D [W], got shape {wn.shape}")
    if fr.ndim != 2 or fr.shape[1] != wn.shape[0]:
        raise ValueError(f"{name} must be [T, W] with W={wn.shape[0]} (the grid), got shape {fr.shape}")
    return wn, fr


def operando_heatmap(wavenumber, frames, time_s=None, *, voltage=None, subtract_first: bool = True,
                     title: str = "operando IR", path=None, cmap: str = "RdBu_r") -> Figure:
    """Heatmap of frames over wavenumber (x, high -> low) and time (y); optional voltage panel.

    ``subtract_first``: show x_t - x_0 (the dynamics), centred colour scale.
    """
    wn, fr = _check_frames(wavenumber, frames)
    T = fr.shape[0]
    t = to_numpy(time_s) / 60.0 if time_s is not None else np.arange(T, dtype=float)
    data = fr - fr[:1] if subtract_first else fr
    if voltage is not None:
        fig, (ax, axv) = plt.subplots(1, 2, figsize=(8.5, 4.5), sharey=True,
                                      gridspec_kw={"width_ratios": [5, 1], "wspace": 0.05})
    else:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        axv = None
    lim = float(np.abs(data).max()) or 1.0
    kw = {"vmin": -lim, "vmax": lim} if subtract_first else {}
    mesh = ax.pcolormesh(wn, t, data, shading="nearest", cmap=cmap if subtract_first else "viridis", **kw)
    ax.set_xlim(wn.max(), wn.min())
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("time (min)" if time_s is not None else "frame")
    ax.set_title(title)
    fig.colorbar(mesh, ax=[ax] if axv is None else [ax, axv], label="ΔA (AU)" if subtract_first else "A (AU)",
                 pad=0.02)
    if axv is not None:
        axv.plot(to_numpy(voltage), t, color="k")
        axv.set_xlabel("V vs Li/Li$^+$")
    return _finish(fig, path)


def waterfall(wavenumber, frames, *, offset: Optional[float] = None, every: int = 1, labels=None,
              title: str = "operando frames", path=None, cmap: str = "viridis") -> Figure:
    """Frames stacked with a vertical offset (default: 0.5 x the largest absorbance range)."""
    wn, fr = _check_frames(wavenumber, frames)
    idx = np.arange(0, fr.shape[0], max(1, int(every)))
    if offset is None:
        offset = 0.5 * float(np.ptp(fr)) or 1.0
    colors = plt.get_cmap(cmap)(np.linspace(0, 1, len(idx)))
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for n, (k, c) in enumerate(zip(idx, colors)):
        ax.plot(wn, fr[k] + n * offset, color=c, lw=0.9, label=None if labels is None else str(labels[k]))
    ax.set_xlim(wn.max(), wn.min())
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("absorbance + offset (AU)")
    ax.set_title(title)
    return _finish(fig, path)


def difference_spectra(wavenumber, true_frames, pred_frames=None, *, frames_to_show: Optional[Sequence[int]] = None,
                       reference: str = "first", static=None, title: str = "difference spectra",
                       path=None) -> Figure:
    """True (solid) vs predicted (dashed) difference spectra x_t - x_ref for a few frames.

    reference: "first" (frame 0 of each) or "static" (the given static spectrum [W]).
    """
    wn, tr = _check_frames(wavenumber, true_frames, "true_frames")
    pr = _check_frames(wavenumber, pred_frames, "pred_frames")[1] if pred_frames is not None else None
    T = tr.shape[0]
    if frames_to_show is None:
        frames_to_show = sorted({max(1, T // 4), max(1, T // 2), max(1, 3 * T // 4), T - 1})
    if reference == "static":
        if static is None:
            raise ValueError("difference_spectra: reference='static' needs the static spectrum [W]")
        ref_t = ref_p = to_numpy(static)
    elif reference == "first":
        ref_t = tr[0]
        ref_p = pr[0] if pr is not None else None
    else:
        raise ValueError(f"difference_spectra: reference must be 'first' or 'static', got {reference!r}")
    colors = plt.get_cmap("plasma")(np.linspace(0, 0.85, len(frames_to_show)))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for k, c in zip(frames_to_show, colors):
        ax.plot(wn, tr[k] - ref_t, color=c, lw=1.0, label=f"true t={k}")
        if pr is not None:
            ax.plot(wn, pr[k] - ref_p, color=c, lw=1.0, ls="--", label=f"pred t={k}")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlim(wn.max(), wn.min())
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("ΔA (AU)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _finish(fig, path)


def decomposition(wavenumber, solvent, sei, *, pred_solvent=None, pred_sei=None, frame: int = -1,
                  title: str = "solvent / SEI decomposition", path=None) -> Figure:
    """Solvent and SEI contributions [T, W] at one frame, true (solid) and predicted (dashed)."""
    wn, so = _check_frames(wavenumber, solvent, "solvent")
    se = _check_frames(wavenumber, sei, "sei")[1]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7.5, 5.5), sharex=True)
    a1.plot(wn, so[frame], color="tab:blue", label="solvent (true)")
    a2.plot(wn, se[frame], color="tab:red", label="SEI (true)")
    if pred_solvent is not None:
        a1.plot(wn, to_numpy(pred_solvent)[frame], color="tab:blue", ls="--", label="solvent (pred)")
    if pred_sei is not None:
        a2.plot(wn, to_numpy(pred_sei)[frame], color="tab:red", ls="--", label="SEI (pred)")
    for a in (a1, a2):
        a.set_ylabel("A (AU)")
        a.legend(fontsize=8)
    a2.set_xlim(wn.max(), wn.min())
    a2.set_xlabel("wavenumber (cm$^{-1}$)")
    a1.set_title(title)
    return _finish(fig, path)


def centroid_drift(voltage, centroids_true, centroids_pred=None, *, window_names: Optional[Sequence[str]] = None,
                   relative: bool = True, title: str = "band-centroid drift", path=None) -> Figure:
    """Band-centroid drift vs voltage: centroids [T, n_windows] cm^-1 (true solid, predicted dashed).

    ``relative``: plot c_t - c_0 (drift) rather than absolute centroids. The voltage axis is
    inverted (lithiation runs high -> low voltage); true points are coloured by frame index
    (dark = early), since protocols hold and reverse the voltage.
    """
    v = to_numpy(voltage)
    ct = to_numpy(centroids_true)
    if ct.ndim == 1:
        ct = ct[:, None]
    if ct.shape[0] != v.shape[0]:
        raise ValueError(f"centroid_drift: centroids_true has {ct.shape[0]} frames, voltage has {v.shape[0]}")
    cp = None
    if centroids_pred is not None:
        cp = to_numpy(centroids_pred).reshape(ct.shape[0], -1)
    names = list(window_names) if window_names is not None else [f"window {i}" for i in range(ct.shape[1])]
    ncol = min(3, max(1, ct.shape[1]))
    nrow = int(np.ceil(max(1, ct.shape[1]) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    for i in range(nrow * ncol):
        ax = axes.flat[i]
        if i >= ct.shape[1]:
            ax.axis("off")
            continue
        yt = ct[:, i] - ct[0, i] if relative else ct[:, i]
        ax.plot(v, yt, "-", lw=0.8, color="0.35", label="true")
        # protocols hold and reverse the voltage: colour by frame so the path can be followed
        ax.scatter(v, yt, c=np.arange(len(v)), cmap="viridis", s=9, zorder=3)
        if cp is not None:
            yp = cp[:, i] - cp[0, i] if relative else cp[:, i]
            ax.plot(v, yp, "s--", ms=2.5, color="tab:orange", label="pred")
        ax.set_title(names[i], fontsize=9)
        ax.set_xlim(v.max(), v.min())
        ax.set_xlabel("V vs Li/Li$^+$")
        ax.set_ylabel("Δ centroid (cm$^{-1}$)" if relative else "centroid (cm$^{-1}$)")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def uncertainty_band(wavenumber, mean, lower, upper, *, truth=None, title: str = "prediction band",
                     path=None) -> Figure:
    """One spectrum [W] with a shaded [lower, upper] band and, optionally, the truth."""
    wn = to_numpy(wavenumber)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.fill_between(wn, to_numpy(lower), to_numpy(upper), color="tab:blue", alpha=0.25, label="band")
    ax.plot(wn, to_numpy(mean), color="tab:blue", label="mean")
    if truth is not None:
        ax.plot(wn, to_numpy(truth), color="k", lw=0.8, label="true")
    ax.set_xlim(wn.max(), wn.min())
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("A (AU)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _finish(fig, path)
