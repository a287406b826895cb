"""Benchmark figures: for a few test samples, true vs predicted operando dynamics.

One sample per held-out/test system (up to ``max_samples``), per model: operando heatmap of the
prediction and of the truth, waterfall, difference spectra (x_t - x_0, true vs predicted) and
band-centroid drift vs voltage in the marker windows. ``per_frame_figure``: the MSE of each scored
frame per model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..viz import centroid_drift, difference_spectra, operando_heatmap, save_figure, waterfall
from .metrics import band_centroids, window_slices
from .protocol import predictor_batch


def example_indices(sub, max_samples: int = 2) -> list[int]:
    """Rows of ``sub``: the first sample of each system, in system order, up to ``max_samples``."""
    seen, rows = set(), []
    for row, s in enumerate(sub.system.tolist()):
        if s not in seen:
            seen.add(s)
            rows.append(row)
        if len(rows) >= max_samples:
            break
    return rows


def slug(text: str) -> str:
    """``text`` as a file-name part: letters, digits, - _ . only (at most 60 characters)."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep.strip("_")[:60] or "model"


def write_figures(predictors: Sequence[tuple[str, Callable]], dataset, split: str, out_dir,
                  part: str = "test", max_samples: int = 2) -> list[Path]:
    """Write the benchmark figures into ``out_dir/figures``; returns the PNG paths.

    predictors: (name, predict_fn) pairs. For split "loso" the first fold is drawn.
    """
    split_name = "loso:0" if split == "loso" else split
    sub = dataset.split(split_name, part)
    fig_dir = Path(out_dir) / "figures"
    windows = {k: tuple(v) for k, v in (dataset.manifest.get("marker_windows") or {}).items()}
    names = [n for n, _, _ in window_slices(dataset.wavenumber, windows)]
    wn = sub.wavenumber
    paths: list[Path] = []

    def emit(fig, name):
        paths.append(fig_dir / name)
        save_figure(fig, fig_dir / name)
        plt.close(fig)

    sys_names = [s.get("name", str(i)) if isinstance(s, dict) else str(s)
                 for i, s in enumerate(dataset.manifest.get("systems") or [])]
    for row in example_indices(sub, max_samples):
        sl = slice(row, row + 1)
        true = sub.frames[row]                                # [T, W]
        sysi = int(sub.system[row])
        label = f"sample {int(sub.index[row])} ({sys_names[sysi] if sysi < len(sys_names) else sysi})"
        tag = f"s{int(sub.index[row])}"
        emit(operando_heatmap(wn, true, sub.time_s[row], voltage=sub.voltage[row], title=f"true: {label}"),
             f"{tag}_heatmap_true.png")
        emit(waterfall(wn, true, title=f"true frames: {label}"), f"{tag}_waterfall_true.png")
        c_true = band_centroids(true, wn, windows)              # [T, n_win]
        for model, fn in predictors:
            batch = predictor_batch(fn, sub, sl)
            with torch.no_grad():
                pred = fn(batch)["frames"][0].detach().cpu().float()
            m = slug(model)
            emit(operando_heatmap(wn, pred, sub.time_s[row], voltage=sub.voltage[row],
                                  title=f"{model}: {label}"), f"{tag}_heatmap_{m}.png")
            emit(waterfall(wn, pred, title=f"{model}: {label}"), f"{tag}_waterfall_{m}.png")
            emit(difference_spectra(wn, true, pred, title=f"difference spectra x_t - x_0, {model} vs true: {label}"),
                 f"{tag}_difference_{m}.png")
            if names:
                emit(centroid_drift(sub.voltage[row], c_true, band_centroids(pred, wn, windows), window_names=names,
                                    title=f"band-centroid drift, {model} vs true: {label}"),
                     f"{tag}_centroid_drift_{m}.png")
    return paths


def per_frame_figure(per_frame: Mapping[str, Sequence[float]], path, title: str = "MSE per frame") -> Path:
    """One line per model: the MSE (z-units) of each scored frame k = 1..T-1 (``per_frame[name][k - 1]``),
    log scale; writes ``path`` (PNG) and returns it."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, vals in per_frame.items():
        vals = np.asarray(vals, dtype=np.float64)
        ax.plot(np.arange(1, vals.size + 1), vals, "o-", ms=3, lw=1.2, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("frame k")
    ax.set_ylabel("MSE (z-units)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    save_figure(fig, Path(path))
    plt.close(fig)
    return Path(path)
