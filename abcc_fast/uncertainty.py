"""Calibrated prediction bands for ABCC's stochastic mode.

``ABCC.predict(..., samples=K, noise=sigma)`` predicts every frame from K source states
``static + sigma * N(0, 1)`` in one batched call and returns their spread ``std`` [B, T, W]. ABCC
is trained with a squared-error objective, so that spread measures how sensitive the prediction is
to its input, not the variability the static spectrum does not reveal (film kinetics, noise of the
measurement): read as a band, it is far too narrow. This module turns it into calibrated bands.

Method: split-conformal prediction with a scaled absolute residual (Lei et al. 2018, "Distribution-free
predictive inference for regression", §5.2; Angelopoulos & Bates 2021, §2.3). On the *validation*
part of a split, for every sample i, frame t and wavenumber w::

    score[i, t, w] = |y[i, t, w] - m[i, t, w]| / (s[i, t, w] + floor)

with m the point prediction (``frames``, the prediction from the static spectrum itself), s the
sample spread ``std`` of K samples and ``floor = floor_frac * median(s)`` (so a cell with an
accidentally tiny spread does not get a zero-width band). For each nominal level alpha and each
frame index t (``per_frame=True``; ``False`` pools the scored frames 1..T-1) the factor
``q[alpha, t]`` is the ``ceil(alpha' n)``-th smallest of the n pooled scores of frame t, with the
conformal finite-sample correction ``alpha' = min(1, alpha (N + 1) / N)`` over the N calibration
*samples*. The band of a new prediction is ``m +- q[alpha, t] * (s + floor)``.

Validity: spectra of different samples are exchangeable (the random split draws them alike), the
cells of one sample are not independent; the pooled quantile therefore gives *marginal* coverage
of a random cell of a new sample from the same distribution, exact up to O(1/N) (it would be exact
for independent cells). It says nothing per cell, and nothing under a shift (the ``system`` split's
held-out systems): calibrate on the split you will use. The band is tied to the model (the sha256 of
its weights is recorded and checked), to the noise sigma and to K (another K gives a differently
distributed spread: ``predict`` warns).

``calibrate`` fits, ``coverage`` scores on the test part (calibrated and, for contrast, the raw
bands: sample quantiles and ``m +- z_alpha s``), ``Calibration.save/load`` keep it as
``calibration.json`` in the model directory (note that ``save_pretrained`` replaces the whole
directory: calibrate again after saving new weights), ``reliability_figure`` and
``write_report`` draw and write the report. Example::

    cal = calibrate(model, ds, "random", samples=8, noise=0.002, max_samples=128)
    cal.save("run/model")
    report = coverage(model, ds, "random", calibration=cal, max_samples=128)
    write_report(report, "unc_report/")
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import math
import statistics
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from ._atomic import write_text

CALIBRATION_FILE = "calibration.json"
CALIBRATION_VERSION = 1
METHOD = "split-conformal, scaled absolute residual |y - m| / (std + floor)"
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)   # nominal central-interval levels fitted
BAND_LEVELS = (0.5, 0.9)                                 # the bands abcc predict writes
DEFAULT_NOISE = 0.002                                    # AU, as abcc predict --noise

__all__ = ["Calibration", "fit_calibration", "calibrate", "coverage", "interval_coverage", "load_calibration",
           "calibrated_bands", "reliability_figure", "report_markdown", "write_report", "weights_sha256",
           "CALIBRATION_FILE", "LEVELS", "BAND_LEVELS"]


def _check_finite(name: str, x: torch.Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        n = int((~torch.isfinite(x)).sum())
        raise ValueError(f"uncertainty: {name} holds {n} NaN/Inf values; the model or the data is damaged "
                         "(check the inputs with `abcc data inspect`, or retrain)")


def _check_levels(levels: Sequence[float]) -> list[float]:
    out = [float(a) for a in levels]
    if not out or any(not (0.0 < a < 1.0) for a in out) or sorted(set(out)) != out:
        raise ValueError(f"uncertainty: levels must be distinct, increasing and in (0, 1), got {list(levels)}")
    return out


def _check_sampling(samples, noise) -> tuple[int, float]:
    try:
        samples, noise = int(samples), float(noise)
    except (TypeError, ValueError):
        raise ValueError(f"uncertainty: samples must be an integer and noise a number, got {samples!r}, {noise!r}") from None
    if samples < 2:
        raise ValueError(f"uncertainty: calibrated bands need samples >= 2 (a spread needs two samples), got "
                         f"{samples}; pass e.g. --samples 8")
    if not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"uncertainty: noise must be a positive number of AU, got {noise}; e.g. --noise 0.002")
    return samples, noise


# --------------------------------------------------------------------------------------------
# the calibration
# --------------------------------------------------------------------------------------------
@dataclass
class Calibration:
    """Interval factors ``factors[l][t]`` for nominal levels ``levels[l]`` and frame index t (see the
    module docstring): band = m +- factors[l][t] * (std + floor_au)."""

    levels: list
    factors: list                      # [L][T]
    floor_au: float
    samples: int
    noise: float
    T: int
    per_frame: bool = True
    n_samples: int = 0                 # calibration samples (N)
    n_cells: int = 0                   # scores pooled per factor
    split: str = ""
    part: str = "val"
    model_sha256: Optional[str] = None
    method: str = METHOD
    version: int = CALIBRATION_VERSION
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        self.levels = _check_levels(self.levels)
        self.T = int(self.T)
        self.factors = [[float(v) for v in row] for row in self.factors]
        if len(self.factors) != len(self.levels) or any(len(row) != self.T for row in self.factors):
            raise ValueError(f"Calibration: factors must be [{len(self.levels)} levels][T={self.T}], got "
                             f"{len(self.factors)} rows of lengths {sorted({len(r) for r in self.factors})}")
        flat = [v for row in self.factors for v in row] + [float(self.floor_au)]
        if any(not (math.isfinite(v) and v >= 0) for v in flat):
            raise ValueError("Calibration: factors and floor_au must be finite and >= 0 (NaN/Inf or a negative "
                             "value found); fit the calibration again with `abcc calibrate`")
        if not float(self.floor_au) > 0:
            raise ValueError(f"Calibration: floor_au must be > 0, got {self.floor_au}")
        self.samples, self.noise = _check_sampling(self.samples, self.noise)

    def level_index(self, level: float) -> int:
        for i, a in enumerate(self.levels):
            if abs(a - float(level)) < 1e-9:
                return i
        raise ValueError(f"Calibration: level {level} was not fitted; fitted levels: {self.levels}")

    def half_width(self, std: torch.Tensor, level: float) -> torch.Tensor:
        """Half-width [..., T, W] AU of the ``level`` band for spreads ``std`` [..., T, W]."""
        if std.dim() < 2 or std.shape[-2] != self.T:
            raise ValueError(f"Calibration: std must be [..., T, W] with T={self.T} (the calibrated frames), "
                             f"got shape {tuple(std.shape)}")
        q = torch.tensor(self.factors[self.level_index(level)], dtype=std.dtype, device=std.device)
        return q[:, None] * (std + self.floor_au)

    def interval(self, center: torch.Tensor, std: torch.Tensor, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(lower, upper) [..., T, W] AU of the ``level`` band around the point prediction ``center``."""
        h = self.half_width(std, level)
        return center - h, center + h

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        if not isinstance(d, dict) or d.get("version") != CALIBRATION_VERSION:
            raise ValueError(f"Calibration: not a calibration of version {CALIBRATION_VERSION} "
                             f"(version {d.get('version') if isinstance(d, dict) else None!r}); run `abcc calibrate` again")
        known = set(cls.__dataclass_fields__)
        missing = {"levels", "factors", "floor_au", "samples", "noise", "T"} - set(d)
        if missing:
            raise ValueError(f"Calibration: fields {sorted(missing)} are missing; run `abcc calibrate` again")
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, model_dir) -> Path:
        """Write ``model_dir/calibration.json`` atomically; returns the path."""
        path = Path(model_dir) / CALIBRATION_FILE
        return write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, model_dir) -> "Calibration":
        """Read ``model_dir/calibration.json`` (FileNotFoundError when there is none)."""
        path = Path(model_dir) / CALIBRATION_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {CALIBRATION_FILE} in {model_dir}; fit one with `abcc calibrate --model "
                                    f"{model_dir} --samples 8 --out REPORT_DIR`")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); run `abcc calibrate` again") from None
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None


def load_calibration(model_dir, required: bool = False) -> Optional[Calibration]:
    """The calibration beside a saved model, or None when there is none (``required``: raise instead)."""
    if not (Path(model_dir) / CALIBRATION_FILE).exists() and not required:
        return None
    return Calibration.load(model_dir)


def weights_sha256(model_dir) -> Optional[str]:
    """sha256 of ``model_dir/model.safetensors`` (None when absent): ties a calibration to its weights."""
    f = Path(model_dir) / "model.safetensors"
    if not f.is_file():
        return None
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# fitting and scoring on tensors (model-free: the synthetic tests use these directly)
# --------------------------------------------------------------------------------------------
def _conformal_quantile(scores: torch.Tensor, level: float, n_units: int) -> float:
    """The ceil(alpha' n)-th smallest of ``scores`` (flattened), alpha' = min(1, level (N+1)/N)."""
    flat = scores.reshape(-1)
    n = flat.numel()
    adj = min(1.0, level * (n_units + 1) / n_units)
    k = min(n, max(1, math.ceil(adj * n - 1e-9)))
    return float(torch.kthvalue(flat.double(), k).values)


def fit_calibration(target: torch.Tensor, center: torch.Tensor, std: torch.Tensor, *, samples: int, noise: float,
                    levels: Sequence[float] = LEVELS, per_frame: bool = True, floor_frac: float = 0.1,
                    **meta) -> Calibration:
    """Split-conformal factors from calibration data (module docstring).

    target, center, std: [N, T, W] true frames, point prediction and sample spread (AU) of N
    calibration samples. Frame 0 gets its own factor with ``per_frame`` (the cell at rest; not
    scored by OpIRBench); without ``per_frame`` one factor from frames 1..T-1 serves every frame.
    ``meta``: split, part, model_sha256 (recorded). Returns a :class:`Calibration`.
    """
    samples, noise = _check_sampling(samples, noise)
    levels = _check_levels(levels)
    if target.dim() != 3 or target.shape != center.shape or target.shape != std.shape:
        raise ValueError(f"fit_calibration: target, center, std must all be [N, T, W], got "
                         f"{tuple(target.shape)}, {tuple(center.shape)}, {tuple(std.shape)}")
    N, T, _ = target.shape
    if N < 2 or T < 2:
        raise ValueError(f"fit_calibration: needs at least 2 calibration samples and 2 frames, got N={N}, T={T}")
    for name, x in (("target", target), ("center", center), ("std", std)):
        _check_finite(name, x)
    if bool((std < 0).any()):
        raise ValueError("fit_calibration: std must be >= 0")
    if not (math.isfinite(floor_frac) and floor_frac > 0):
        raise ValueError(f"fit_calibration: floor_frac must be > 0, got {floor_frac}")
    std, resid = std.double(), (target.double() - center.double()).abs()
    floor = max(float(floor_frac) * float(std[:, 1:].median()), 1e-9)
    score = resid / (std + floor)                                           # [N, T, W]
    if per_frame:
        factors = [[_conformal_quantile(score[:, t], a, N) for t in range(T)] for a in levels]
        n_cells = N * score.shape[2]
    else:
        factors = [[_conformal_quantile(score[:, 1:], a, N)] * T for a in levels]
        n_cells = N * (T - 1) * score.shape[2]
    return Calibration(levels=levels, factors=factors, floor_au=floor, samples=samples, noise=noise, T=T,
                       per_frame=bool(per_frame), n_samples=N, n_cells=n_cells, **meta)


def _mean_ci(per_sample: torch.Tensor) -> dict:
    """Mean over samples with a normal-approximation 95 % interval (samples are the independent units)."""
    x = per_sample.double()
    n = x.numel()
    m = float(x.mean())
    se = float(x.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": m, "ci95": [m - 1.96 * se, m + 1.96 * se], "q10": float(x.quantile(0.1)),
            "q90": float(x.quantile(0.9))}


def interval_coverage(target: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                      frames: slice = slice(1, None)) -> torch.Tensor:
    """Per-sample fraction of cells (scored ``frames``, all wavenumbers) with lower <= y <= upper.

    target, lower, upper [N, T, W] -> [N]."""
    y, lo, hi = target[:, frames], lower[:, frames], upper[:, frames]
    return ((y >= lo) & (y <= hi)).double().mean(dim=(1, 2))


class _Tally:
    """Running per-sample coverage and width for each level (and per frame), over batches."""

    def __init__(self, levels, T):
        self.levels, self.T = levels, T
        self.cov = {a: [] for a in levels}          # per-sample coverage tensors
        self.width = {a: [] for a in levels}
        self.frame_hits = {a: torch.zeros(T, dtype=torch.float64) for a in levels}
        self.frame_n = torch.zeros(T, dtype=torch.float64)

    def add(self, level, target, lower, upper):
        inside = ((target >= lower) & (target <= upper)).double()         # [B, T, W]
        self.cov[level].append(inside[:, 1:].mean(dim=(1, 2)))
        self.width[level].append((upper - lower)[:, 1:].double().mean(dim=(1, 2)))
        self.frame_hits[level] += inside.sum(dim=(0, 2))
        if level == self.levels[0]:
            self.frame_n += inside.shape[0] * inside.shape[2]

    def summary(self) -> dict:
        cov = {a: torch.cat(self.cov[a]) for a in self.levels}
        return {"coverage": [float(cov[a].mean()) for a in self.levels],
                "mean_width_au": [float(torch.cat(self.width[a]).mean()) for a in self.levels],
                "per_sample": {f"{a:g}": _mean_ci(cov[a]) for a in self.levels if a in BAND_LEVELS},
                "per_frame": {f"{a:g}": (self.frame_hits[a] / self.frame_n).tolist() for a in self.levels
                              if a in BAND_LEVELS}}


# --------------------------------------------------------------------------------------------
# with a model
# --------------------------------------------------------------------------------------------
def _part(dataset, split: str, part: str, max_samples: Optional[int], seed: int):
    subset = dataset.split(split, part)
    if len(subset) < 2:
        raise ValueError(f"uncertainty: the {part!r} part of split {split!r} has {len(subset)} samples; "
                         "calibration and coverage need at least 2")
    if max_samples is not None:
        if int(max_samples) < 2:
            raise ValueError(f"uncertainty: max_samples must be >= 2, got {max_samples}")
        if len(subset) > int(max_samples):
            g = torch.Generator().manual_seed(int(seed))
            idx = torch.randperm(len(subset), generator=g)[: int(max_samples)].sort().values
            subset = subset.subset(idx)
    return subset


def _predictions(model, subset, samples: int, noise: float, batch_size: int, seed: int) -> Iterator[dict]:
    """Batches of {"target", "center", "std", "samples"} (CPU float32) for ``subset``."""
    if int(batch_size) < 1:
        raise ValueError(f"uncertainty: batch_size must be >= 1, got {batch_size}")
    if "samples" not in inspect.signature(model.predict).parameters:
        raise ValueError(f"uncertainty: {type(model).__name__}.predict has no stochastic mode (samples=K, noise=sigma); "
                         "calibrated bands need an ABCC model")
    gen = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(subset), int(batch_size)):
            sl = slice(s, min(s + int(batch_size), len(subset)))
            with torch.no_grad():
                out = model.predict(subset.static[sl], subset.voltage[sl], subset.composition[sl],
                                    subset.electrode[sl], time_s=subset.time_s[sl], wavenumber=subset.wavenumber,
                                    samples=samples, noise=noise, generator=gen)
            if out.get("samples") is None or out.get("std") is None:
                raise ValueError(f"uncertainty: {type(model).__name__}.predict returned no samples/std; calibrated "
                                 "bands need ABCC's stochastic mode (predict(..., samples=K, noise=sigma))")
            b = {"target": subset.frames[sl].float(), "center": out["frames"].detach().float().cpu(),
                 "std": out["std"].detach().float().cpu(), "samples": out["samples"].detach().float().cpu()}
            for k in ("center", "std", "samples"):
                _check_finite(f"the model's {k!r}", b[k])
            yield b
    finally:
        model.train(was_training)


def calibrate(model, dataset, split: str = "random", part: str = "val", *, samples: int = 8,
              noise: float = DEFAULT_NOISE, max_samples: Optional[int] = 128, per_frame: bool = True,
              floor_frac: float = 0.1, levels: Sequence[float] = LEVELS, batch_size: int = 16, seed: int = 0,
              model_dir=None) -> Calibration:
    """Fit the split-conformal calibration on ``part`` (the validation part) of ``split``.

    samples, noise: ABCC's stochastic mode (K >= 2 source-state samples, sigma AU); max_samples:
    a fixed random subset of the part (None: all of it); model_dir: a saved model whose weights'
    sha256 is recorded (``save`` it there yourself). Example::

        cal = calibrate(model, ds, "random", samples=8, noise=0.002, max_samples=128)
    """
    samples, noise = _check_sampling(samples, noise)
    if part == "test":
        warnings.warn("uncertainty.calibrate: fitting on the test part; its coverage is then not an honest "
                      "estimate (calibrate on 'val')", stacklevel=2)
    subset = _part(dataset, split, part, max_samples, seed)
    got = {"target": [], "center": [], "std": []}
    for b in _predictions(model, subset, samples, noise, batch_size, seed):
        for k in got:
            got[k].append(b[k])
    return fit_calibration(*(torch.cat(got[k]) for k in ("target", "center", "std")), samples=samples, noise=noise,
                           levels=levels, per_frame=per_frame, floor_frac=floor_frac, split=split, part=part,
                           model_sha256=weights_sha256(model_dir) if model_dir is not None else None)


def coverage(model, dataset, split: str = "random", part: str = "test", *, calibration: Calibration,
             max_samples: Optional[int] = 128, batch_size: int = 16, seed: int = 1) -> dict:
    """Empirical coverage on ``part`` (the test part): calibrated bands and, for contrast, the raw ones.

    Over scored frames 1..T-1 and all wavenumbers of ``max_samples`` samples (a fixed random subset),
    with the calibration's K and noise. For each nominal level: ``calibrated`` (m +- q s), ``raw_quantile``
    (the central quantile band of the K samples, what the sample spread alone gives) and
    ``raw_gaussian`` (m +- z_alpha s); ``coverage`` (fraction of cells inside), ``mean_width_au``,
    and for 0.5/0.9 the per-sample mean with a 95 % interval (samples are the independent units)
    and the coverage of every frame. Returns a JSON-ready dict (see ``write_report``).
    """
    if not isinstance(calibration, Calibration):
        raise ValueError(f"uncertainty.coverage: calibration must be a Calibration (from calibrate() or "
                         f"Calibration.load(model_dir)), got {type(calibration).__name__}")
    cal = calibration
    subset = _part(dataset, split, part, max_samples, seed)
    if subset.T != cal.T:
        raise ValueError(f"uncertainty.coverage: the data has T={subset.T} frames, the calibration T={cal.T}")
    levels = cal.levels
    z = {a: statistics.NormalDist().inv_cdf(0.5 + a / 2) for a in levels}
    qs = torch.tensor([0.5 - a / 2 for a in levels] + [0.5 + a / 2 for a in levels])
    tallies = {k: _Tally(levels, cal.T) for k in ("calibrated", "raw_quantile", "raw_gaussian")}
    abs_err, n_samples = [], 0
    for b in _predictions(model, subset, cal.samples, cal.noise, batch_size, seed):
        y, m, s = b["target"], b["center"], b["std"]
        quant = torch.quantile(b["samples"], qs, dim=0)                       # [2L, B, T, W]
        L = len(levels)
        for i, a in enumerate(levels):
            tallies["calibrated"].add(a, y, *cal.interval(m, s, a))
            tallies["raw_quantile"].add(a, y, quant[i], quant[L + i])
            tallies["raw_gaussian"].add(a, y, m - z[a] * s, m + z[a] * s)
        abs_err.append((y - m)[:, 1:].abs().double().mean(dim=(1, 2)))
        n_samples += y.shape[0]
    return {"method": cal.method, "levels": levels, "split": split, "part": part, "n_samples": n_samples,
            "n_cells": n_samples * (cal.T - 1) * subset.W, "T": cal.T, "W": subset.W,
            "samples": cal.samples, "noise_au": cal.noise, "per_frame": cal.per_frame,
            "calibration": {"part": cal.part, "n_samples": cal.n_samples, "floor_au": cal.floor_au,
                            "factors_band_levels": {f"{a:g}": cal.factors[cal.level_index(a)] for a in BAND_LEVELS
                                                    if a in levels}},
            "point_mae_au": float(torch.cat(abs_err).mean()),
            **{k: t.summary() for k, t in tallies.items()}}


def calibrated_bands(calibration: Calibration, center: torch.Tensor, std: torch.Tensor, samples: int,
                     noise: float, levels: Sequence[float] = BAND_LEVELS) -> dict:
    """{"lower_50", "upper_50", "lower_90", "upper_90"} [T, W] for one prediction (``abcc predict``).

    Raises when samples < 2 or the noise differs from the calibration's; warns when K differs."""
    samples, noise = _check_sampling(samples, noise)
    if not math.isclose(noise, calibration.noise, rel_tol=1e-6):
        raise ValueError(f"the calibration was fitted with --noise {calibration.noise:g} AU, this prediction uses "
                         f"{noise:g}; pass --noise {calibration.noise:g} (or calibrate again with this noise)")
    if samples != calibration.samples:
        warnings.warn(f"the calibration was fitted with K={calibration.samples} samples, this prediction uses "
                      f"K={samples}: the spread of another K is distributed differently, so the bands are only "
                      f"approximately calibrated (pass --samples {calibration.samples})", stacklevel=2)
    _check_finite("std", std)
    out = {}
    for a in levels:
        lo, hi = calibration.interval(center, std, a)
        out[f"lower_{round(100 * a)}"], out[f"upper_{round(100 * a)}"] = lo, hi
    return out


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
_KINDS = (("calibrated", "calibrated (conformal)"), ("raw_quantile", "raw: sample quantiles"),
          ("raw_gaussian", "raw: m ± z·std"))


def reliability_figure(report: dict, path=None):
    """Reliability diagram (nominal vs empirical coverage, calibrated and raw) and calibrated
    coverage per frame; saved as PNG when ``path`` is given. Returns the Figure."""
    # matplotlib (and viz, which loads it) only when the figure is drawn: a heavy import
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .viz import save_figure

    levels = report["levels"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="ideal")
    for key, label, style in zip([k for k, _ in _KINDS], [lab for _, lab in _KINDS], ("o-", "s-", "^-")):
        ax.plot(levels, report[key]["coverage"], style, ms=4, label=label)
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage (test)")
    ax.set_title(f"reliability, {report['n_samples']} {report['part']} samples, K={report['samples']}")
    ax.legend(fontsize=8, loc="upper left")
    frames = list(range(1, report["T"]))
    for a, color in (("0.5", "tab:blue"), ("0.9", "tab:red")):
        if a in report["calibrated"]["per_frame"]:
            bx.plot(frames, report["calibrated"]["per_frame"][a][1:], "o-", ms=3, color=color, label=f"calibrated {a}")
            bx.plot(frames, report["raw_quantile"]["per_frame"][a][1:], ":", color=color, label=f"raw quantile {a}")
            bx.axhline(float(a), color=color, lw=0.8, ls="--")
    bx.set_ylim(0, 1)
    bx.set_xlabel("frame index")
    bx.set_ylabel("empirical coverage")
    bx.set_title("coverage per frame")
    bx.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def report_markdown(report: dict) -> str:
    """The coverage table (Markdown)."""
    lines = [f"Coverage on {report['n_samples']} {report['part']} samples of split `{report['split']}` "
             f"({report['n_cells']:,} cells: frames 1..{report['T'] - 1} x {report['W']} wavenumbers); "
             f"K = {report['samples']} samples, noise {report['noise_au']:g} AU; calibrated on "
             f"{report['calibration']['n_samples']} `{report['calibration']['part']}` samples "
             f"({'per frame' if report['per_frame'] else 'pooled frames'}). Point-prediction MAE "
             f"{report['point_mae_au']:.4g} AU.", "",
             "| nominal | calibrated coverage | calibrated width (AU) | raw quantile coverage | raw quantile width (AU) "
             "| raw m±z·std coverage | raw m±z·std width (AU) |",
             "|---|---|---|---|---|---|---|"]
    for i, a in enumerate(report["levels"]):
        cells = [f"{a:.1f}"]
        for k, _ in _KINDS:
            cells += [f"{report[k]['coverage'][i]:.3f}", f"{report[k]['mean_width_au'][i]:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per test sample (the independent units), calibrated: mean coverage, 95 % interval of the mean, "
                  "10th-90th percentile over samples:", ""]
    for a, s in report["calibrated"]["per_sample"].items():
        lines.append(f"- {float(a):.0%} band: {s['mean']:.3f} (95 % CI {s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}); "
                     f"per-sample spread {s['q10']:.3f}-{s['q90']:.3f}")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir, calibration: Optional[Calibration] = None) -> dict:
    """Write ``coverage.md``, ``coverage.json`` (+ the calibration) and ``reliability.png`` into
    ``out_dir`` (each atomically); returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(report)
    if calibration is not None:
        payload["calibration_full"] = calibration.to_dict()
    paths = {"coverage.md": write_text(out / "coverage.md", "# Calibrated uncertainty\n\n" + report_markdown(report)),
             "coverage.json": write_text(out / "coverage.json", json.dumps(payload, indent=1) + "\n")}
    import matplotlib.pyplot as plt  # loaded by reliability_figure below: a heavy import kept out of module load

    fig = reliability_figure(report, out / "reliability.png")
    plt.close(fig)
    paths["reliability.png"] = out / "reliability.png"
    return paths
