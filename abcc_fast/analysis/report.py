"""Inputs and outputs of ``abcc analyze``: read a prediction directory or a dataset sample, write
``analysis.md``, ``analysis.json`` and figures into an output directory, atomically.

Output directory::

    analysis.md          onsets, formation order, centroid drift, settings (and the truth on synthetic data)
    analysis.json        the same, machine-readable (PathwayAnalysis.to_json + input description)
    figures/growth_curves.png      per-product amounts vs voltage and vs time, onsets marked
    figures/centroid_drift.png     band-centroid drift vs voltage (frames)
    figures/decomposition.png      frames, solvent and SEI streams, SEI template fit per product
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from .. import data
from .._atomic import atomic_directory
from ..data import chemistry as chem
from ..data.templates import product_templates
from ..viz import centroid_drift as centroid_drift_fig
from ..viz import save_figure
from .evaluation import true_amounts
from .pathway import PathwayAnalysis, components_of, fit_amounts, formation_order, onsets


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def read_prediction_dir(path) -> dict:
    """A directory written by ``abcc predict``: frames.safetensors (frames, wavenumber, voltage,
    time_s, optional solvent/sei) and prediction.json (composition). Returns the series as numpy
    arrays plus ``components`` and a description."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"prediction directory not found: {root}; pass the --out directory of `abcc predict`, "
                                "or --data DIR --sample i for a dataset sample")
    if not root.is_dir():
        raise ValueError(f"{root} is a file; give the directory that `abcc predict --out DIR` wrote")
    f = root / "frames.safetensors"
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing; {root} is not a prediction directory written by `abcc predict` "
                                "(it writes frames.safetensors, frames.csv and prediction.json)")
    try:
        t = load_file(str(f))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{f}: cannot read as safetensors ({err}); run `abcc predict` again") from None
    missing = [k for k in ("frames", "wavenumber", "voltage") if k not in t]
    if missing:
        raise ValueError(f"{f} has no {missing} tensor(s); run `abcc predict` again (it writes frames, wavenumber, "
                         "voltage and time_s)")
    meta = {}
    mf = root / "prediction.json"
    if mf.is_file():
        try:
            meta = json.loads(mf.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{mf} is corrupt ({err}); run `abcc predict` again") from None
    comp = meta.get("composition") or None
    return {"frames": t["frames"], "wavenumber": t["wavenumber"], "voltage": t["voltage"],
            "time_s": t.get("time_s"), "solvent": t.get("solvent"), "sei": t.get("sei"),
            "components": components_of(comp) if comp else None, "truth": None,
            "description": {"input": "prediction", "path": str(root.resolve()), "model": meta.get("model"),
                            "composition": comp, "electrode": meta.get("electrode")}}


def read_dataset_sample(path: Optional[str], sample: int) -> dict:
    """Sample ``sample`` (row) of a dataset directory (default: the embedded default dataset)."""
    ds = data.default_dataset() if path is None else data.load(path)
    n = len(ds)
    if not -n <= int(sample) < n:
        raise ValueError(f"--sample {sample} is out of range: the dataset has {n} samples (0..{n - 1})")
    x = ds[int(sample)]
    names = list(ds.manifest.get("components") or chem.COMPONENT_NAMES)
    sys_table = ds.manifest.get("systems") or []
    sys_i = int(x["system"])
    truth = None
    if ds.synthetic and ds.extent is not None and "stoichiometry" in ds.manifest:
        truth = true_amounts(x["extent"], ds.manifest)                    # [T, P_all]
    np_ = lambda v: None if v is None else v.double().numpy()  # noqa: E731
    electrodes = ds.manifest.get("electrodes") or chem.ELECTRODES
    return {"frames": np_(x["frames"]), "wavenumber": np_(x["wavenumber"]), "voltage": np_(x["voltage"]),
            "time_s": np_(x["time_s"]), "solvent": np_(x.get("solvent")), "sei": np_(x.get("sei")),
            "components": components_of(x["composition"].double().numpy(), names), "truth": truth,
            "marker_windows": ds.manifest.get("marker_windows"),
            "resolution": float(ds.manifest.get("generator", {}).get("config", {}).get("resolution", 4.0)),
            "description": {"input": "dataset sample", "path": str(ds.root) if ds.root else None,
                            "dataset": ds.manifest.get("name"), "sample": int(sample), "global_index": int(x["index"]),
                            "system": sys_table[sys_i].get("name") if sys_i < len(sys_table) else sys_i,
                            "electrode": electrodes[int(x["electrode"])]}}


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def growth_curves_figure(res: PathwayAnalysis, truth_amounts: Optional[np.ndarray] = None):
    """Per-product amounts vs voltage and vs time; onsets marked; dashed: the truth when given."""
    fig, (av, at) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.get_cmap("tab10")(np.linspace(0, 1, 10))
    t_min = res.time_s / 60.0
    for i, p in enumerate(res.products):
        c = colors[i % 10]
        o = res.onsets[i]
        lw = 1.6 if o["detected"] else 0.7
        av.plot(res.voltage, res.amounts[:, i], "-o", ms=2.5, lw=lw, color=c, label=p)
        at.plot(t_min, res.amounts[:, i], "-", lw=lw, color=c, label=p)
        if truth_amounts is not None:
            av.plot(res.voltage, truth_amounts[:, i], "--", lw=0.9, color=c)
            at.plot(t_min, truth_amounts[:, i], "--", lw=0.9, color=c)
        if o["detected"]:
            av.axvline(o["onset_voltage"], color=c, lw=0.6, ls=":")
            at.axvline(o["onset_time_s"] / 60.0, color=c, lw=0.6, ls=":")
    av.set_xlim(float(res.voltage.max()), float(res.voltage.min()))
    av.set_xlabel("V vs Li/Li$^+$")
    at.set_xlabel("time (min)")
    for a in (av, at):
        a.set_ylabel("fitted amount (mol/L)")
    title = "SEI product growth (dotted: onsets" + ("; dashed: truth)" if truth_amounts is not None else ")")
    av.set_title(title, fontsize=9)
    at.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def decomposition_figure(res: PathwayAnalysis, frame: int = -1):
    """Frame difference, solvent-stream difference, SEI stream with its template fit and the
    per-product contributions, at one frame."""
    wn = res.wavenumber
    rows = 3 if res.solvent is not None else 2
    fig, axes = plt.subplots(rows, 1, figsize=(8, 2.4 * rows + 0.6), sharex=True)
    axes[0].plot(wn, res.frames[frame] - res.frames[0], color="k", lw=0.9, label="frames: x_t - x_0")
    if res.solvent is not None:
        axes[1].plot(wn, res.solvent[frame] - res.solvent[0], color="tab:blue", lw=0.9, label="solvent stream: y_t - y_0")
    ax = axes[-1]
    ax.plot(wn, res.sei[frame], color="tab:red", lw=1.2, label=f"SEI stream ({res.source})")
    ax.plot(wn, res.sei_fit[frame], color="k", lw=0.8, ls="--", label="template fit")
    tpl = product_templates(wn, res.products, res.settings.get("resolution_cm", 4.0))
    contrib = tpl.contributions(fit_amounts(res.sei[frame], tpl)["coefficients"])   # [P, W]
    colors = plt.get_cmap("tab10")(np.linspace(0, 1, 10))
    for i, p in enumerate(res.products):
        if np.abs(contrib[i]).max() > 0:
            ax.fill_between(wn, 0, contrib[i], color=colors[i % 10], alpha=0.35, lw=0, label=p)
    for a in axes:
        a.axhline(0, color="0.6", lw=0.5)
        a.set_ylabel("A (AU)")
        a.legend(fontsize=7, ncol=2)
    ax.set_xlim(wn.max(), wn.min())
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    T = res.frames.shape[0]
    axes[0].set_title(f"stream decomposition at frame {frame % T} (V = {res.voltage[frame]:.3f})", fontsize=9)
    fig.tight_layout()
    return fig


def _figures(res: PathwayAnalysis, fig_dir: Path, truth_amounts) -> list[str]:
    names = []

    def emit(fig, name):
        save_figure(fig, fig_dir / name)
        plt.close(fig)
        names.append(f"figures/{name}")

    emit(growth_curves_figure(res, truth_amounts), "growth_curves.png")
    c = res.centroids
    if c["windows"]:
        emit(centroid_drift_fig(res.voltage, c["centroid"], window_names=c["windows"],
                                title="band-centroid drift of the frames (marker windows)"),
             "centroid_drift.png")
    emit(decomposition_figure(res), "decomposition.png")
    return names


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _fmt(x, f="{:.3f}"):
    return "n/a" if x is None else f.format(x)


def report_markdown(res: PathwayAnalysis, description: dict, truth: Optional[list] = None,
                    figures: Optional[list] = None) -> str:
    d = description
    head = ", ".join(f"{k} {v}" for k, v in d.items() if v is not None and k != "input")
    lines = [f"# SEI formation pathway analysis ({d.get('input')})", "", f"- input: {head}",
             f"- SEI stream: {res.source}; products fitted: {', '.join(res.products)} "
             f"({res.settings.get('aging_states_per_product')} aging-state templates each, OpIRSim band tables)",
             f"- onset definition: {res.settings.get('onset_definition')}",
             f"- fit noise (median rms residual): {res.settings.get('noise_au', 0.0):.2e} AU", "",
             "## Formation order", ""]
    if res.order:
        lines.append(" -> ".join(" + ".join(g) for g in res.order))
    else:
        lines.append("no product above the detection threshold")
    if truth is not None:
        tord = formation_order(truth, res.settings.get("tie_frames", 0.5))
        lines += ["", "True order (synthetic sample, same definition on the true amounts): "
                  + (" -> ".join(" + ".join(g) for g in tord) if tord else "none")]
    lines += ["", "## Onsets", "", "| product | formed | onset V | onset time (min) | onset frame | largest amount (mol/L) "
              "| strongest band (AU) |" + (" true formed | true onset V |" if truth else ""),
              "|---|---|---|---|---|---|---|" + ("---|---|" if truth else "")]
    tmap = {o["product"]: o for o in truth} if truth else {}
    for o in res.onsets:
        row = (f"| {o['product']} | {'yes' if o['detected'] else 'no'} | {_fmt(o['onset_voltage'])} | "
               f"{_fmt(None if o['onset_time_s'] is None else o['onset_time_s'] / 60, '{:.1f}')} | "
               f"{_fmt(o['onset_frame'], '{:.2f}')} | {o['max_amount']:.3g} | {o['max_peak_au']:.2e} |")
        if truth:
            t = tmap[o["product"]]
            row += f" {'yes' if t['detected'] else 'no'} | {_fmt(t['onset_voltage'])} |"
        lines.append(row)
    lines += ["", "## Band-centroid drift (frames, relative to frame 0)", "",
              "| window | drift at last frame (cm^-1) | largest abs drift (cm^-1) |", "|---|---|---|"]
    c = res.centroids
    for i, w in enumerate(c["windows"]):
        lines.append(f"| {w} | {c['drift'][-1, i]:+.2f} | {np.abs(c['drift'][:, i]).max():.2f} |")
    if figures:
        lines += ["", "## Figures", ""] + [f"- [{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def write_report(res: PathwayAnalysis, out_dir, description: dict, truth_amounts: Optional[np.ndarray] = None,
                 figures: bool = True) -> dict:
    """Write analysis.md, analysis.json and figures/ into ``out_dir`` (built in a temporary sibling
    directory and swapped into place). ``truth_amounts`` [T, P] in ``res.products`` order."""
    truth = None
    if truth_amounts is not None:
        tpl = product_templates(res.wavenumber, res.products, res.settings.get("resolution_cm", 4.0))
        truth = onsets(truth_amounts, res.voltage, res.time_s, res.products, tpl.peak,
                       fraction=res.settings["onset_fraction"], detect_au=res.settings["detect_au"])
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is a file; give a directory")
    with atomic_directory(out) as tmp:
        fig_names = _figures(res, tmp / "figures", truth_amounts) if figures else []
        payload = {"input": description, **res.to_json(), "figures": fig_names}
        if truth is not None:
            payload["truth"] = {"onsets": truth, "order": formation_order(truth, res.settings.get("tie_frames", 0.5))}
        (tmp / "analysis.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        (tmp / "analysis.md").write_text(report_markdown(res, description, truth, fig_names), encoding="utf-8")
    return {"md": out / "analysis.md", "json": out / "analysis.json", "figures": [out / f for f in fig_names]}
