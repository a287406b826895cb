"""OpIRBench metrics, all in one place, batched and vectorised.

Every metric scores frames 1..T-1 (frame 0 is the cell at rest) and returns one value *per sample*
([B] tensors), so that a split's score is the plain mean over its samples (every sample has the
same number of frames and wavenumbers, so this equals the mean over all scored elements) and
per-system breakdowns come for free.

Definitions (METRICS_VERSION below names this exact set; change the version when any changes):

    z = (x - mean) / std             mean, std: the *training* split's frame statistics (manifest)
    mae        = mean |z_pred - z_true|                over scored frames and wavenumbers
    mse        = mean (z_pred - z_true)^2
    mae_au     = mean |x_pred - x_true|                raw absorbance (AU)
    dilate     = DILATE(alpha=0.5, gamma=0.01) per wavenumber channel: the univariate series
                 z[1:T, w] (length T-1) of prediction vs truth, Omega(i,j) = (i-j)^2/n^2; mean over
                 channels (and samples). Parts: dilate_shape (soft-DTW), dilate_temporal (<E, Omega>).
    dilate_spec = the same DILATE along the wavenumber axis of each scored frame (series z[t, :] of
                 length W), mean over frames. Exact soft-DTW over 512 x 512 cells for ~22k series
                 does not fit the time budget on CPU, so the warping path is restricted to a
                 Sakoe-Chiba band of +-DILATE_SPEC_BAND_CM cm^-1 (|i - j| <= round(40 / grid step)
                 points); real band shifts are a few to ~40 cm^-1.
                 Note (both DILATE metrics): soft-DTW includes the softmin's entropy term (down to
                 -gamma log 3 per cell), so on near-flat stretches the shape part and the loss can be
                 negative and a perfect prediction does not score exactly 0. Lower is still better;
                 compare rows of one table, not against 0.
    peak_shift = |centroid_pred - centroid_true| in cm^-1, mean over scored frames, marker windows
                 (manifest["marker_windows"]) and samples. centroid of a window
                 [lo, hi]: a = clip(x - baseline, 0) with the baseline the straight line through the
                 means of the PEAK_EDGE_POINTS grid points at either edge of the window;
                 centroid = sum(nu a) / sum(a), or the window's middle when sum(a) == 0.
                 Computed on raw absorbance (z-scoring is affine and would not move it anyway).
    decomp     = (mean |solvent_pred - solvent_true| + mean |sei_pred - sei_true|) / 2 in AU, with
                 decomp_solvent and decomp_sei; only for models that return both streams and data
                 that has them (synthetic); otherwise not reported.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from einops import rearrange

from ..ops import backends as _backends
from ..ops.soft_dtw import dilate as _dilate_op

METRICS_VERSION = "opirbench-metrics-1.0 (dilate_spec band 40 cm^-1)"
DILATE_ALPHA = 0.5
DILATE_GAMMA = 0.01
DILATE_SPEC_BAND_CM = 40.0
PEAK_EDGE_POINTS = 3
DTW_CHUNK = 1 << 15  # series per DILATE call: bounds memory, keeps the OpenMP kernel busy
DTW_CELLS = 1 << 25  # and at most this many alignment-matrix cells (series x L x L) per call: the spectral
                     # DILATE's 512-point series on the pure-PyTorch path otherwise need > 20 GB per batch

# metric name -> the result keys it produces (the first is its headline number)
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "mae": ("mae",),
    "mse": ("mse",),
    "mae_au": ("mae_au",),
    "dilate": ("dilate", "dilate_shape", "dilate_temporal"),
    "dilate_spec": ("dilate_spec", "dilate_spec_shape", "dilate_spec_temporal"),
    "peak_shift": ("peak_shift",),
    "decomp": ("decomp", "decomp_solvent", "decomp_sei"),
}
ALL_METRICS: tuple[str, ...] = tuple(METRIC_KEYS)

METRIC_DEFINITIONS: dict[str, str] = {
    "mae": "mean |z_pred - z_true| over frames 1..T-1 and all wavenumbers (z: training-split mean/std)",
    "mse": "mean (z_pred - z_true)^2 over frames 1..T-1 and all wavenumbers",
    "mae_au": "mean |pred - true| in absorbance units over frames 1..T-1",
    "dilate": f"temporal DILATE per wavenumber channel (series of length T-1 on z), alpha={DILATE_ALPHA}, "
              f"gamma={DILATE_GAMMA}, Omega=(i-j)^2/n^2; with shape (soft-DTW) and temporal parts",
    "dilate_spec": f"spectral DILATE per frame along wavenumber (series of length W on z), same alpha/gamma, "
                   f"Sakoe-Chiba band +-{DILATE_SPEC_BAND_CM:g} cm^-1 (soft-DTW's entropy term can make it < 0)",
    "peak_shift": "MAE (cm^-1) of band centroids (baseline-corrected, clipped at 0) in the marker windows",
    "decomp": "mean of the MAEs (AU) of the predicted solvent and SEI contributions (synthetic data only)",
}


@dataclass(frozen=True)
class MetricContext:
    """What the metrics need besides predictions and truth.

    wavenumber [W] cm^-1 ascending; mean, std: the training split's frame statistics (floats);
    marker_windows: {name: (lo, hi)} cm^-1.
    """

    wavenumber: torch.Tensor
    mean: float
    std: float
    marker_windows: dict = field(default_factory=dict)
    spec_band_cm: Optional[float] = DILATE_SPEC_BAND_CM

    def spec_bandwidth(self) -> Optional[int]:
        """The dilate_spec band in grid points (None: no band)."""
        if self.spec_band_cm is None:
            return None
        wn = self.wavenumber.double()
        step = float((wn[-1] - wn[0]) / max(wn.numel() - 1, 1))
        return max(1, int(round(self.spec_band_cm / step)))


def unknown_metric_error(names: Sequence[str]) -> ValueError:
    return ValueError(f"unknown metric(s) {list(names)}; choose from {list(ALL_METRICS)}")


def check_metric_names(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    bad = [n for n in names if n not in METRIC_KEYS]
    if bad:
        raise unknown_metric_error(bad)
    return names


# --------------------------------------------------------------------------------------------
# the metrics: (pred frames [B, T, W], true frames [B, T, W], ctx) -> {key: [B]}
# --------------------------------------------------------------------------------------------
def _scored(frames: torch.Tensor) -> torch.Tensor:
    return frames[:, 1:].to(torch.float32)  # [B, T-1, W]


def _z(frames: torch.Tensor, ctx: MetricContext) -> torch.Tensor:
    return (_scored(frames) - ctx.mean) / ctx.std


def mae(pred, true, ctx):
    return {"mae": (_z(pred, ctx) - _z(true, ctx)).abs().mean((1, 2))}


def mse(pred, true, ctx):
    return {"mse": (_z(pred, ctx) - _z(true, ctx)).square().mean((1, 2))}


def mae_au(pred, true, ctx):
    return {"mae_au": (_scored(pred) - _scored(true)).abs().mean((1, 2))}


_REFERENCE_WARNED = []


def _warn_reference_dilate(device: torch.device) -> None:
    """Once per process: DILATE on CPU tensors without the native extension runs on the pure-PyTorch
    twin (minutes per batch of 64 samples for the spectral DILATE), unless ABCC_BACKEND chose it."""
    if _REFERENCE_WARNED or device.type != "cpu" or os.environ.get("ABCC_BACKEND", "auto") != "auto" or _backends()["cpu"].available:
        return
    _REFERENCE_WARNED.append(True)
    warnings.warn("OpIRBench DILATE runs on the pure-PyTorch reference because the native extension abcc_fast._C "
                  "is not built: scoring a test part takes hours instead of seconds. Build it with `make install` "
                  "(or `pip install --no-build-isolation -e .`), or score with metrics=['mse', 'mae'] only.",
                  RuntimeWarning, stacklevel=3)


def _dilate_series(pred_series: torch.Tensor, true_series: torch.Tensor, bandwidth=None):
    """DILATE of many univariate series [n, L] in chunks -> (loss, shape, temporal), each [n]."""
    _warn_reference_dilate(pred_series.device)
    outs = [[], [], []]
    L = pred_series.shape[-1]
    chunk = max(1, min(DTW_CHUNK, DTW_CELLS // (L * L)))
    for s in range(0, pred_series.shape[0], chunk):
        loss, shape, temporal = _dilate_op(pred_series[s:s + chunk].contiguous(),
                                           true_series[s:s + chunk].contiguous(),
                                           DILATE_ALPHA, DILATE_GAMMA, reduction="none", bandwidth=bandwidth)
        for o, v in zip(outs, (loss, shape, temporal)):
            o.append(v)
    return tuple(torch.cat(o) for o in outs)


def dilate(pred, true, ctx):
    zp, zt = _z(pred, ctx), _z(true, ctx)   # [B, T-1, W]
    B, W = zp.shape[0], zp.shape[2]
    loss, shape, temporal = _dilate_series(rearrange(zp, "b t w -> (b w) t"), rearrange(zt, "b t w -> (b w) t"))
    per = lambda v: v.view(B, W).mean(1)  # noqa: E731  mean over channels
    return {"dilate": per(loss), "dilate_shape": per(shape), "dilate_temporal": per(temporal)}


def dilate_spec(pred, true, ctx):
    zp, zt = _z(pred, ctx), _z(true, ctx)   # [B, T-1, W]
    B, T1 = zp.shape[0], zp.shape[1]
    loss, shape, temporal = _dilate_series(rearrange(zp, "b t w -> (b t) w"), rearrange(zt, "b t w -> (b t) w"),
                                           bandwidth=ctx.spec_bandwidth())
    per = lambda v: v.view(B, T1).mean(1)  # noqa: E731  mean over frames
    return {"dilate_spec": per(loss), "dilate_spec_shape": per(shape), "dilate_spec_temporal": per(temporal)}


def window_slices(wavenumber: torch.Tensor, marker_windows: dict) -> list[tuple[str, int, int]]:
    """(name, first, last) grid indices of each marker window that holds enough grid points.

    Windows with fewer than 2 * PEAK_EDGE_POINTS + 1 points on the grid (e.g. the C-H stretch
    region above a 1900 cm^-1 grid) are skipped.
    """
    out = []
    wn = wavenumber.double()
    for name, (lo, hi) in sorted(marker_windows.items()):
        inside = torch.nonzero((wn >= float(lo)) & (wn <= float(hi))).reshape(-1)
        if inside.numel() >= 2 * PEAK_EDGE_POINTS + 1:
            out.append((name, int(inside[0]), int(inside[-1])))
    return out


def _centroid_operators(wavenumber: torch.Tensor, marker_windows: dict, device) -> Optional[tuple]:
    """Constant operators of band_centroids for a grid and a set of windows (see there)."""
    slices = window_slices(wavenumber, marker_windows)
    if not slices:
        return None
    k = PEAK_EDGE_POINTS
    wn = wavenumber.to(torch.float64).cpu()
    n_win, W = len(slices), wn.numel()
    flat_idx, seg = [], []
    edges = torch.zeros(W, 2 * n_win, dtype=torch.float64)    # x @ edges = [left means | right means]
    mid = torch.empty(n_win, dtype=torch.float64)
    for w, (_, i0, i1) in enumerate(slices):
        flat_idx += range(i0, i1 + 1)
        seg += [w] * (i1 - i0 + 1)
        edges[i0:i0 + k, w] = 1.0 / k
        edges[i1 - k + 1:i1 + 1, n_win + w] = 1.0 / k
        mid[w] = 0.5 * (wn[i0] + wn[i1])
    flat_idx, seg = torch.tensor(flat_idx), torch.tensor(seg)
    nu = wn[flat_idx] - mid[seg]                               # [P] relative to the window's middle
    nu_lr = (wn - 0.0) @ edges                                 # [2 n_win] edge wavenumbers
    nu_l, nu_r = nu_lr[:n_win] - mid, nu_lr[n_win:] - mid
    P = flat_idx.numel()
    # baseline at point p of window w: a_l (1 - t_p) + a_r t_p, t_p = (nu_p - nu_l) / (nu_r - nu_l),
    # so baseline = [a_l | a_r] @ lines with lines [2 n_win, P]
    t = (nu - nu_l[seg]) / (nu_r - nu_l)[seg]
    lines = torch.zeros(2 * n_win, P, dtype=torch.float64)
    lines[seg, torch.arange(P)] = 1.0 - t
    lines[n_win + seg, torch.arange(P)] = t
    sums = torch.zeros(P, 2 * n_win, dtype=torch.float64)      # a @ sums = [sum a | sum nu a]
    sums[torch.arange(P), seg] = 1.0
    sums[torch.arange(P), n_win + seg] = nu
    f32 = dict(device=device, dtype=torch.float32)
    return n_win, flat_idx.to(device), edges.to(**f32), lines.to(**f32), sums.to(**f32), mid.to(device)


def band_centroids(frames: torch.Tensor, wavenumber: torch.Tensor, marker_windows: dict) -> torch.Tensor:
    """Band centroid (cm^-1) in each marker window: frames [..., W] -> float64 [..., n_windows].

    a = clip(x - baseline, 0), baseline = the line through the edge means (PEAK_EDGE_POINTS grid
    points at either end of the window); centroid = sum(nu a) / sum(a), or the window's middle
    when sum(a) == 0. Window order: sorted by name (see window_slices).

    Vectorised over all windows at once: the windows' points are gathered into one flat [P]
    axis, edge means and the per-window sums are matrix products with constant operators, and
    wavenumbers are taken relative to each window's middle (float32 keeps ~1e-4 cm^-1).
    """
    lead = frames.shape[:-1]
    ops = _centroid_operators(wavenumber, marker_windows, frames.device)
    if ops is None:
        return torch.zeros(lead + (0,), dtype=torch.float64, device=frames.device)
    n_win, flat_idx, edges, lines, sums, mid = ops
    x = frames.reshape(-1, frames.shape[-1]).float()           # [N, W]
    baseline = (x @ edges) @ lines                             # [N, P]
    a = (x.index_select(1, flat_idx) - baseline).clamp_min_(0.0)  # [N, P]
    s = a @ sums                                               # [N, 2 n_win]
    area, moment = s[:, :n_win], s[:, n_win:]
    cent = torch.where(area > 0, moment / torch.where(area > 0, area, 1.0), 0.0)
    return (cent.double() + mid).reshape(lead + (n_win,))


def peak_shift(pred, true, ctx):
    cp = band_centroids(_scored(pred), ctx.wavenumber, ctx.marker_windows)   # [B, T-1, n_win]
    ct = band_centroids(_scored(true), ctx.wavenumber, ctx.marker_windows)
    if cp.shape[-1] == 0:
        return {"peak_shift": torch.full((pred.shape[0],), math.nan)}
    return {"peak_shift": (cp - ct).abs().mean((1, 2)).float()}


def decomp(pred_streams: dict, true_streams: dict) -> dict:
    """pred_streams / true_streams: {"solvent": [B, T, W], "sei": [B, T, W]} (AU)."""
    sol = (_scored(pred_streams["solvent"]) - _scored(true_streams["solvent"])).abs().mean((1, 2))
    sei = (_scored(pred_streams["sei"]) - _scored(true_streams["sei"])).abs().mean((1, 2))
    return {"decomp": 0.5 * (sol + sei), "decomp_solvent": sol, "decomp_sei": sei}


_FRAME_METRICS: dict[str, Callable] = {
    "mae": mae, "mse": mse, "mae_au": mae_au, "dilate": dilate, "dilate_spec": dilate_spec,
    "peak_shift": peak_shift,
}


def score_batch(pred: dict, truth: dict, ctx: MetricContext, metrics: Sequence[str] = ALL_METRICS,
                timings: Optional[dict] = None) -> dict[str, torch.Tensor]:
    """Score one batch: {result key: per-sample values [B]}.

    pred: {"frames": [B, T, W]} (+ "solvent", "sei"); truth: {"frames": [B, T, W]} (+ "solvent",
    "sei" on synthetic data). `decomp` is skipped (no keys) unless both sides have both streams.
    `timings`, when given, accumulates seconds per metric.
    """
    out: dict[str, torch.Tensor] = {}
    sync = pred["frames"].is_cuda and timings is not None
    for name in check_metric_names(metrics):
        t0 = time.perf_counter()
        if name == "decomp":
            streams = ("solvent", "sei")
            if all(pred.get(s) is not None for s in streams) and all(truth.get(s) is not None for s in streams):
                out.update(decomp(pred, truth))
        else:
            out.update(_FRAME_METRICS[name](pred["frames"], truth["frames"], ctx))
        if sync:
            torch.cuda.synchronize()
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
    return out
