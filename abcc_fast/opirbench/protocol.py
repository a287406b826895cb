"""The OpIRBench protocol: predictors, `evaluate`, model loading.

A *predictor* is any callable ``predict_fn(batch) -> dict``. ``batch`` holds, for B samples::

    static       float32 [B, W]      static spectrum (AU)
    voltage      float32 [B, T]      V vs Li/Li+
    time_s       float32 [B, T]
    composition  float32 [B, C]
    electrode    int64   [B]
    system       int64   [B]
    wavenumber   float32 [W]
    frame0       float32 [B, W]      ONLY for predictors with ``needs_frame0 = True`` (the `frame0`
                                     reference): the true rest-state frame, an oracle input
    index        int64   [B]         ONLY for predictors with ``needs_index = True`` (the simulator
                                     oracle, which re-simulates the sample): global sample indices

and it returns ``{"frames": [B, T, W]}`` (all T frames; frame 0 is not scored) and optionally
``{"solvent": [B, T, W], "sei": [B, T, W]}`` for the `decomp` metric. The operando frames
themselves never reach a predictor.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import load
from ..data.splits import inner_folds
from .metrics import ALL_METRICS, METRICS_VERSION, MetricContext, check_metric_names, score_batch

INPUT_FIELDS = ("static", "voltage", "time_s", "composition", "electrode", "system")
SPLITS = ("random", "system", "loso")


# --------------------------------------------------------------------------------------------
# reference predictors
# --------------------------------------------------------------------------------------------
def _constant_prediction(spectrum: torch.Tensor, T: int) -> dict:
    """Every frame = `spectrum` [B, W]; decomposition solvent = spectrum, SEI = 0 (the references)."""
    frames = spectrum.unsqueeze(1).expand(-1, T, -1)
    return {"frames": frames, "solvent": frames, "sei": torch.zeros_like(frames)}


class Persistence:
    """Reference: every frame is the static spectrum (no dynamics at all).

    Its trivial decomposition (solvent = static, SEI = 0) is the `decomp` reference.
    """

    name = "persistence"
    needs_frame0 = False
    config: dict = {"reference": "persistence"}

    def __call__(self, batch: dict) -> dict:
        return _constant_prediction(batch["static"], batch["voltage"].shape[1])


class Frame0:
    """Reference: every frame is the *true* frame 0 (an oracle for the rest state, no dynamics).

    It reads ``batch["frame0"]``, which `evaluate` supplies only to predictors that declare
    ``needs_frame0 = True``. Decomposition: solvent = frame 0, SEI = 0.
    """

    name = "frame0"
    needs_frame0 = True
    config: dict = {"reference": "frame0"}

    def __call__(self, batch: dict) -> dict:
        return _constant_prediction(batch["frame0"], batch["voltage"].shape[1])


REFERENCES: dict[str, Callable[[], Callable]] = {"persistence": Persistence, "frame0": Frame0}

# --------------------------------------------------------------------------------------------
# model loading: OpIRBench scores any predictor; loading a saved model is its owner's job
# --------------------------------------------------------------------------------------------
_MODEL_LOADERS: list[Callable] = []


class NoModelLoader(ValueError):
    """A model path that no registered loader takes."""


def register_model_loader(fn: Callable) -> Callable:
    """Register ``fn(path) -> predictor or None``; loaders are tried newest first. Usable as a decorator."""
    _MODEL_LOADERS.insert(0, fn)
    return fn


def load_predictor(spec: str) -> Callable:
    """A predictor from a reference name (`persistence`, `frame0`) or a model path.

    OpIRBench loads no model itself: paths go to the registered loaders. Saved ABCC and baseline
    directories load with ``abcc_fast.train.load_predictor`` (what ``abcc bench --model PATH`` uses):
    pass its predictor to ``evaluate``, or register it here with ``register_model_loader``.
    """
    if spec in REFERENCES:
        return REFERENCES[spec]()
    if not os.path.exists(spec):
        raise ValueError(f"unknown model {spec!r}: give a reference name ({', '.join(REFERENCES)}) "
                         "or the path of a saved model (file or directory that exists)")
    for loader in _MODEL_LOADERS:
        predictor = loader(spec)
        if predictor is not None:
            return predictor
    raise NoModelLoader(f"no registered model loader takes {spec!r}: load a saved ABCC or baseline with "
                        "abcc_fast.train.load_predictor(path) and score the predictor it returns, or register a "
                        "loader with abcc_fast.opirbench.register_model_loader(fn)")


def predictor_name(predict_fn: Callable, default: str = "model") -> str:
    return str(getattr(predict_fn, "name", None) or getattr(predict_fn, "__name__", None) or default)


def config_hash(predict_fn: Callable) -> str:
    """sha256 (first 16 hex) of the predictor's JSON config (``.config``), or of its name."""
    cfg = getattr(predict_fn, "config", None)
    if cfg is None:
        cfg = {"name": predictor_name(predict_fn)}
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def per_frame_mse(pred: torch.Tensor, true: torch.Tensor, ctx: MetricContext) -> torch.Tensor:
    """MSE of each scored frame k = 1..T-1: [B, T-1], in the z-units of the ``mse`` metric (the
    training split's mean/std), so that its mean over frames is that sample's ``mse``."""
    z_pred = (pred[:, 1:].to(torch.float32) - ctx.mean) / ctx.std
    z_true = (true[:, 1:].to(torch.float32) - ctx.mean) / ctx.std
    return (z_pred - z_true).square().mean(2)


def frame_groups(n_frames: int) -> list[tuple[int, int]]:
    """Frame ranges (first, last), 1-based and inclusive, that summarise ``n_frames`` scored frames:
    frames 1-4 one by one, then doubling groups 5-8, 9-16, 17-32, ... cut at the last frame
    (T = 32: 1, 2, 3, 4, 5-8, 9-16, 17-31)."""
    groups = [(k, k) for k in range(1, min(4, n_frames) + 1)]
    lo = 5
    while lo <= n_frames:
        hi = min(2 * lo - 2, n_frames)
        groups.append((lo, hi))
        lo = hi + 1
    return groups


def group_label(group: tuple[int, int]) -> str:
    return str(group[0]) if group[0] == group[1] else f"{group[0]}-{group[1]}"


def group_means(per_frame: Sequence[float]) -> dict[str, float]:
    """{label: mean of the per-frame values in that group} for :func:`frame_groups` (frame k at [k - 1])."""
    vals = np.asarray(per_frame, dtype=np.float64)
    return {group_label(g): float(vals[g[0] - 1:g[1]].mean()) for g in frame_groups(vals.size)}


@dataclass
class EvalResult:
    """Scores of one predictor on one split part.

    metrics: {key: mean over samples} (NaN-free keys only); per_sample: {key: float64 [S]};
    per_frame: {"mse": float64 [T-1]}, the mean over samples of each scored frame's MSE (frame k at
    [k - 1]; present when ``mse`` was scored); system: int64 [S]; index: global sample indices [S];
    timings: seconds per metric.
    """

    model: str
    split: str
    part: str
    n_samples: int
    metrics: dict
    per_sample: dict
    system: np.ndarray
    index: np.ndarray
    wall_time_s: float
    timings: dict
    config_hash: str = ""
    oracle_frame0: bool = False
    metrics_version: str = METRICS_VERSION
    folds: list = field(default_factory=list)  # loso: one EvalResult per fold
    per_frame: dict = field(default_factory=dict)

    def per_system(self) -> dict:
        """{system index: {key: mean over that system's samples}}."""
        out = {}
        for s in np.unique(self.system):
            m = self.system == s
            out[int(s)] = {k: float(np.mean(v[m])) for k, v in self.per_sample.items()}
        return out

    def summary(self) -> str:
        body = ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items())
        return f"{self.model} on {self.split}/{self.part} ({self.n_samples} samples): {body}"


def _split_names(dataset, split: str) -> list[str]:
    if split in ("random", "system") or split.startswith(("loso:", "inner:")):
        return [split]
    splits = dataset.manifest.get("splits") or {}
    if split == "loso":
        folds = splits.get("loso") or []
        if not folds:
            raise ValueError("split 'loso': this dataset has no leave-one-system-out folds in its manifest")
        return [f"loso:{k}" for k in range(len(folds))]
    if split == "inner":
        folds = inner_folds(splits)
        if not folds:
            raise ValueError("split 'inner': this dataset has no system split with leave-one-system-out "
                             "folds to derive the inner folds from")
        return [f"inner:{k}" for k in range(len(folds))]
    raise ValueError(f"unknown split {split!r}; choose 'random', 'system', 'loso', 'loso:<k>', 'inner' "
                     "or 'inner:<k>'")


def _check_prediction(out, B: int, T: int, W: int, key: str, model: str, first: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"{model}: prediction {key!r} must be a torch.Tensor [B, T, W] = [{B}, {T}, {W}], "
                         f"got {type(out).__name__}")
    if tuple(out.shape) != (B, T, W):
        raise ValueError(f"{model}: prediction {key!r} has shape {tuple(out.shape)}, expected [B, T, W] = "
                         f"[{B}, {T}, {W}] (all T frames, frame 0 included; it is not scored)")
    if not out.is_floating_point():
        raise ValueError(f"{model}: prediction {key!r} must be floating point, got {out.dtype}")
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise ValueError(f"{model}: prediction {key!r} contains {int(bad.sum())} NaN/Inf values "
                         f"(first in batch row {b}, i.e. test sample {first + b}); fix the model output")
    return out.detach().to(torch.float32)  # metrics run where the predictions are (GPU kernels on CUDA)


def _context(dataset, split_name: str) -> MetricContext:
    mean, std = dataset.norm_stats(split_name)
    windows = {k: tuple(v) for k, v in (dataset.manifest.get("marker_windows") or {}).items()}
    return MetricContext(wavenumber=dataset.wavenumber, mean=float(mean), std=float(std), marker_windows=windows)


def predictor_batch(predict_fn: Callable, sub, sl: slice) -> dict:
    """The inputs ``predict_fn`` gets for rows ``sl`` of dataset part ``sub`` (module docstring):
    the INPUT_FIELDS and the grid, plus frame 0 / the global indices for the predictors that
    declare ``needs_frame0`` / ``needs_index``."""
    batch = {k: getattr(sub, k)[sl] for k in INPUT_FIELDS}
    batch["wavenumber"] = sub.wavenumber
    if getattr(predict_fn, "needs_frame0", False):
        batch["frame0"] = sub.frames[sl, 0]
    if getattr(predict_fn, "needs_index", False):
        batch["index"] = sub.index[sl]
    return batch


def _evaluate_one(predict_fn, dataset, split_name, part, metrics, batch_size, progress, model) -> EvalResult:
    sub = dataset.split(split_name, part)
    S = len(sub)
    if S == 0:
        raise ValueError(f"split {split_name!r} part {part!r} has no samples in this dataset")
    ctx = _context(dataset, split_name)
    needs_frame0 = bool(getattr(predict_fn, "needs_frame0", False))
    T, W = sub.frames.shape[1], sub.frames.shape[2]
    per: dict[str, list] = {}
    frame_sum = None                     # per-frame MSE summed over samples [T-1]
    timings: dict[str, float] = {"predict": 0.0}
    bar = None
    if progress:
        bar = tqdm(total=S, desc=f"{model} {split_name}/{part}", unit="sample", leave=False)
    t_start = time.perf_counter()
    for s in range(0, S, batch_size):
        sl = slice(s, min(s + batch_size, S))
        batch = predictor_batch(predict_fn, sub, sl)
        B = batch["static"].shape[0]
        t0 = time.perf_counter()
        with torch.no_grad():
            out = predict_fn(batch)
        timings["predict"] += time.perf_counter() - t0
        if not isinstance(out, dict) or "frames" not in out:
            raise ValueError(f"{model}: predict_fn must return a dict with 'frames' [B, T, W], got "
                             f"{type(out).__name__}{' with keys ' + str(list(out)) if isinstance(out, dict) else ''}")
        pred = {"frames": _check_prediction(out["frames"], B, T, W, "frames", model, s)}
        for k in ("solvent", "sei"):
            if out.get(k) is not None:
                pred[k] = _check_prediction(out[k], B, T, W, k, model, s)
        device = pred["frames"].device
        truth = {"frames": sub.frames[sl].to(device)}
        for k in ("solvent", "sei"):
            if getattr(sub, k, None) is not None and k in pred:
                truth[k] = getattr(sub, k)[sl].to(device)
        if ctx.wavenumber.device != device:
            ctx = dataclasses.replace(ctx, wavenumber=ctx.wavenumber.to(device))
        for k, v in score_batch(pred, truth, ctx, metrics, timings).items():
            per.setdefault(k, []).append(v.double().cpu())
        if "mse" in metrics:
            frame_sums = per_frame_mse(pred["frames"], truth["frames"], ctx).double().sum(0).cpu()
            frame_sum = frame_sums if frame_sum is None else frame_sum + frame_sums
        if bar is not None:
            bar.update(B)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t_start
    per_sample = {k: torch.cat(v).numpy() for k, v in per.items()}
    partial = [k for k, v in per_sample.items() if len(v) != S]
    if partial:
        raise ValueError(f"{model}: scores {partial} exist for only some batches (the predictor returned "
                         "'solvent'/'sei' for some batches only); return them always or never")
    means = {k: float(np.mean(v)) for k, v in per_sample.items() if not np.isnan(v).any()}
    return EvalResult(model=model, split=split_name, part=part, n_samples=S, metrics=means,
                      per_sample=per_sample, system=sub.system.numpy().copy(), index=sub.index.numpy().copy(),
                      wall_time_s=wall, timings=timings, config_hash=config_hash(predict_fn),
                      oracle_frame0=needs_frame0,
                      per_frame={} if frame_sum is None else {"mse": (frame_sum / S).numpy()})


def evaluate(predict_fn: Callable, dataset, split: str = "random", part: str = "test", *,
             metrics: Sequence[str] = ALL_METRICS, batch_size: int = 64, progress: bool = True,
             name: Optional[str] = None, num_threads: Optional[int] = None) -> EvalResult:
    """Score ``predict_fn`` on ``part`` of ``split`` of ``dataset`` with the OpIRBench metrics.

    split: "random", "system", "loso:<k>" (one fold) or "loso" (all folds; ``metrics`` then holds
    the mean over folds, ``metrics[key + "_std"]`` the std, and ``folds`` each fold's result);
    "inner:<k>" / "inner" likewise for the system split's own training systems held out one at a
    time (model selection for unseen systems; ``abcc_fast.data.splits.inner_folds``).
    ``predict_fn`` may be a reference name or model path, ``dataset`` a dataset directory.
    ``num_threads``: CPU threads (torch and the OpenMP kernels) while scoring, restored after;
    None leaves the setting alone. On an oversubscribed machine 1 thread can be several times
    faster than 2 (spinning OpenMP barriers); see :func:`auto_threads`.
    Normalisation uses the *training* part's statistics of the same split (manifest).

    >>> from abcc_fast.opirbench import evaluate, Persistence
    >>> result = evaluate(Persistence(), dataset, "random")          # doctest: +SKIP
    >>> result.metrics["mae"], result.metrics["dilate"]               # doctest: +SKIP
    """
    if isinstance(predict_fn, str):
        predict_fn = load_predictor(predict_fn)
    if isinstance(dataset, (str, os.PathLike)):
        dataset = load(dataset)
    metrics = check_metric_names(metrics)
    if part not in ("train", "val", "test"):
        raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = name or predictor_name(predict_fn)
    names = _split_names(dataset, split)
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        previous = torch.get_num_threads()
        torch.set_num_threads(int(num_threads))
        try:
            return evaluate(predict_fn, dataset, split, part, metrics=metrics, batch_size=batch_size,
                            progress=progress, name=model)
        finally:
            torch.set_num_threads(previous)
    if len(names) == 1:
        return _evaluate_one(predict_fn, dataset, names[0], part, metrics, int(batch_size), progress, model)
    folds = [_evaluate_one(predict_fn, dataset, n, part, metrics, int(batch_size), progress, model) for n in names]
    keys = [k for k in folds[0].metrics if all(k in f.metrics for f in folds)]
    agg = {}
    for k in keys:
        vals = np.array([f.metrics[k] for f in folds])
        agg[k] = float(vals.mean())
        agg[k + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    timings: dict = {}
    for f in folds:
        for k, v in f.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    return EvalResult(model=model, split=split, part=part, n_samples=sum(f.n_samples for f in folds), metrics=agg,
                      per_sample={k: np.concatenate([f.per_sample[k] for f in folds]) for k in keys},
                      system=np.concatenate([f.system for f in folds]),
                      index=np.concatenate([f.index for f in folds]),
                      wall_time_s=sum(f.wall_time_s for f in folds), timings=timings,
                      config_hash=folds[0].config_hash, oracle_frame0=folds[0].oracle_frame0, folds=folds,
                      per_frame={k: np.mean([f.per_frame[k] for f in folds], 0) for k in folds[0].per_frame
                                 if all(k in f.per_frame for f in folds)})


def auto_threads() -> int:
    """Threads for scoring: torch's default, or 1 when the machine is oversubscribed.

    Oversubscribed: the 1-minute load average exceeds the number of cores. Measured on the 2-core
    CI machine at load ~9: all metrics on the default test split take ~40 s with 2 threads and
    ~13-16 s with 1 (bench/results/opirbench_cpu.json).
    """
    default = torch.get_num_threads()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return default
    return 1 if load > (os.cpu_count() or 1) else default
