"""Figures for `abcc data inspect`: operando heatmap, waterfall, solvent/SEI decomposition, voltage
profiles and band-centroid drift. Every function takes an OpIRDataset and returns a
matplotlib Figure; ``write_overview`` saves a set of PNGs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _plt():
    # matplotlib loads only when a figure is drawn (importing this module stays cheap)
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _title(ds, i: int) -> str:
    s = int(ds.system[i])
    name = ds.manifest["systems"][s]["name"] if s < len(ds.manifest["systems"]) else str(s)
    return f"sample {int(ds.index[i])} - {name}"


def operando_heatmap(ds, i: int = 0, difference: bool = True):
    """Frames minus the static spectrum (or raw frames) as wavenumber x time, with V(t) beside."""
    plt = _plt()
    wn = ds.wavenumber.numpy()
    f = ds.frames[i].numpy()
    img = f - ds.static[i].numpy()[None] if difference else f
    t_h = ds.time_s[i].numpy() / 3600.0
    fig, (ax, axv) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [4, 1]}, sharey=True)
    lim = float(np.percentile(np.abs(img), 99.5)) or 1e-3
    m = ax.pcolormesh(wn, t_h, img, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto")
    ax.invert_xaxis()
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("time (h)")
    ax.set_title(_title(ds, i) + (" - frames minus static" if difference else ""))
    fig.colorbar(m, ax=ax, label="$\\Delta$A (AU)" if difference else "A (AU)")
    axv.plot(ds.voltage[i].numpy(), t_h, "k.-")
    axv.set_xlabel("V vs Li/Li$^+$")
    fig.tight_layout()
    return fig


def waterfall(ds, i: int = 0, every: int = 4):
    """Static spectrum and every ``every``-th frame, offset vertically."""
    plt = _plt()
    wn = ds.wavenumber.numpy()
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(wn, ds.static[i].numpy(), "k", lw=1.2, label="static")
    frames = ds.frames[i].numpy()
    off = 0.05 * float(np.abs(frames).max() or 1)
    cmap = plt.get_cmap("viridis")
    for n, k in enumerate(range(0, frames.shape[0], every)):
        ax.plot(wn, frames[k] + (n + 1) * off, color=cmap(k / max(frames.shape[0] - 1, 1)), lw=0.8,
                label=f"frame {k} ({float(ds.voltage[i, k]):.2f} V)" if n % 2 == 0 else None)
    ax.invert_xaxis()
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("absorbance (AU, offset)")
    ax.set_title(_title(ds, i))
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def decomposition(ds, i: int = 0):
    """Synthetic data: last-frame solvent change and SEI contribution, and SEI growth over time."""
    plt = _plt()
    if ds.solvent is None:
        raise ValueError("this dataset has no solvent/sei fields (measured data); decomposition needs "
                         "synthetic data")
    wn = ds.wavenumber.numpy()
    sol, sei = ds.solvent[i].numpy(), ds.sei[i].numpy()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(wn, sol[-1] - sol[0], label="solvent(T-1) - solvent(0)")
    a1.plot(wn, sei[-1], label="SEI(T-1)")
    a1.axhline(0, color="k", lw=0.5)
    a1.invert_xaxis()
    a1.set_xlabel("wavenumber (cm$^{-1}$)")
    a1.set_ylabel("$\\Delta$A (AU)")
    a1.legend(fontsize=8)
    a1.set_title(_title(ds, i))
    area = np.trapezoid(sei, wn, axis=-1)
    a2.plot(ds.time_s[i].numpy() / 3600, area, "o-", ms=3)
    a2.set_xlabel("time (h)")
    a2.set_ylabel("SEI band area (AU cm$^{-1}$)")
    fig.tight_layout()
    return fig


def centroid_drift(ds, i: int = 0, windows: Optional[Sequence[str]] = None):
    """Band centroids in the manifest's marker windows vs voltage."""
    plt = _plt()
    wn = ds.wavenumber.numpy()
    mw = ds.manifest.get("marker_windows", {})
    names = list(windows or [k for k in mw if k.count("_") >= 2][:6])
    fig, ax = plt.subplots(figsize=(6, 4))
    f = ds.frames[i].numpy()
    for n in names:
        lo, hi = mw[n]
        m = (wn >= lo) & (wn <= hi)
        if m.sum() < 3:
            continue
        y = np.clip(f[:, m] - f[:, m].min(1, keepdims=True), 0, None)
        c = (y * wn[m]).sum(1) / np.maximum(y.sum(1), 1e-12)
        ax.plot(ds.voltage[i].numpy(), c - c[0], ".-", label=n)
    ax.set_xlabel("V vs Li/Li$^+$")
    ax.set_ylabel("centroid shift (cm$^{-1}$)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def voltage_profiles(ds, per_system: int = 3):
    """V(t) of a few samples per system."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    systems = sorted(set(ds.system.tolist()))
    cmap = plt.get_cmap("tab10")
    for s in systems:
        idx = np.nonzero(ds.system.numpy() == s)[0][:per_system]
        for n, i in enumerate(idx):
            ax.plot(ds.time_s[i].numpy() / ds.time_s[i, -1].clamp(min=1).item(), ds.voltage[i].numpy(),
                    color=cmap(s % 10), lw=0.8,
                    label=ds.manifest["systems"][s]["name"] if n == 0 else None)
    ax.set_xlabel("normalised time")
    ax.set_ylabel("V vs Li/Li$^+$")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def write_overview(ds, out_dir, samples: Sequence[int] = (0,)) -> list[Path]:
    """Save the figures above as PNGs in ``out_dir``; returns the paths."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(fig, name):
        p = out / name
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)

    save(voltage_profiles(ds), "voltage_profiles.png")
    for i in samples:
        save(operando_heatmap(ds, i), f"heatmap_{i}.png")
        save(waterfall(ds, i), f"waterfall_{i}.png")
        save(centroid_drift(ds, i), f"centroids_{i}.png")
        if ds.solvent is not None:
            save(decomposition(ds, i), f"decomposition_{i}.png")
    return paths
