"""``abcc predict``: a static spectrum + a voltage table -> predicted operando frames, on disk.

Inputs are checked completely *before* anything is written (missing file, NaN/Inf, a grid that
does not cover the model's, a voltage table with the wrong number of rows, an unknown component
or electrode): each raises ``ValueError``/``FileNotFoundError`` with what was wrong and how to fix
it. Outputs are built in a temporary directory and moved into ``out_dir`` at the end, so a
failure leaves nothing half-written::

    frames.csv            wavenumber column + one absorbance column per frame (frame_0 .. frame_{T-1})
    frames.safetensors    frames [T, W], wavenumber [W], voltage [T], time_s [T]
                          (+ solvent, sei [T, W] with streams; samples [K, T, W] with samples)
    prediction.json       inputs, model, vocabularies, output shapes
    figures/              operando heatmap; stream heatmaps; uncertainty band (with samples)

With ``samples`` and a ``calibration.json`` in the model directory (``abcc calibrate``), also the
calibrated bands (``abcc_fast.uncertainty``): ``band_50_lower.csv``, ``band_50_upper.csv``,
``band_90_lower.csv``, ``band_90_upper.csv`` (same layout as frames.csv), ``lower_50``, ``upper_50``,
``lower_90``, ``upper_90``, ``std`` [T, W] in frames.safetensors and ``figures/calibrated_bands.png``.

CSV parsing and resampling reuse ``abcc_fast.data.importer`` (one parser for measured data).
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from safetensors.torch import save_file

from .. import pretrained
from .._atomic import atomic_directory
from .._paths import check_replaceable_output
from ..data import chemistry as chem
from ..data.importer import parse_fractions, read_static_spectrum, read_time_voltage
from ..model import ABCC
from ..model import load_predictor as abcc_predictor
from ..model.baselines import BASELINES, BaselineModel, saved_model_type
from ..model.baselines import load_predictor as baseline_predictor
from ..uncertainty import calibrated_bands, load_calibration, weights_sha256
from ..vocabulary import load_template
from .trainer import TRAINING_DATA_FILE

DEFAULT_NOISE = 0.002   # AU: abcc predict --noise without a calibration

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------------------------
# model loading
# --------------------------------------------------------------------------------------------
def load_model(path: PathLike):
    """(model in eval mode, training_data dict) from a directory written by ``abcc train``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model directory not found: {path}; pass the model/ (or best/) directory "
                                "that `abcc train --out DIR` wrote")
    if not path.is_dir():
        raise ValueError(f"{path} is a file; --model takes the model directory that `abcc train` wrote (DIR/model)")
    # config.json records the model type: a baseline's goes to its class, everything else to ABCC
    model_class = BaselineModel if saved_model_type(path) in BASELINES else ABCC
    try:
        model = model_class.from_pretrained(path)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # safetensors / JSON errors of a damaged directory
        raise ValueError(f"cannot load the model in {path}: {type(err).__name__}: {err}; the directory is damaged "
                         "or not a saved ABCC model (retrain, or copy it again)") from None
    model.eval()
    info = model_info(model, path)
    return model, info


def model_directory(spec: Optional[PathLike]) -> tuple[Path, Optional[str]]:
    """(model directory, packaged name or None) for ``--model``: a path, a packaged pretrained model's
    name when no such path exists (abcc_fast/pretrained), or None for the default packaged model."""
    if spec is None:
        return pretrained.path(pretrained.DEFAULT_NAME), pretrained.DEFAULT_NAME
    if pretrained.is_packaged_name(str(spec)) and str(spec) in pretrained.names():
        return pretrained.path(str(spec)), str(spec)
    return Path(spec), None


def model_info(model, path: Path) -> dict:
    """Grid, T and vocabularies: ``training_data.json`` when present, else the model config / chemistry."""
    f = Path(path) / TRAINING_DATA_FILE
    if f.is_file():
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{f} is corrupt ({err}); copy the model directory again or retrain") from None
    cfg = getattr(model, "config", None)
    wn = getattr(cfg, "wavenumber", None)
    if wn is None:
        raise ValueError(f"{path}: no {TRAINING_DATA_FILE} and the model config has no wavenumber grid; "
                         "cannot place the static spectrum on the model's grid")
    return {"wavenumber": [float(x) for x in wn], "T": int(getattr(cfg, "T")),
            "components": list(getattr(cfg, "components", None) or chem.COMPONENT_NAMES),
            "electrodes": list(getattr(cfg, "electrodes", None) or chem.ELECTRODES)}


def load_predictor(path: PathLike) -> Callable[[dict], dict]:
    """A saved model directory -> OpIRBench predictor (on the GPU when there is one): a baseline's when
    its config.json names a baseline type, else ABCC's. What ``abcc bench --model PATH`` and ``abcc bench
    --all`` score (register it with ``opirbench.register_model_loader`` to score paths in Python)."""
    if saved_model_type(path) in BASELINES:
        return baseline_predictor(path)
    return abcc_predictor(path)


class StreamsPredictor:
    """The solvent and SEI streams a saved model predicts from the inputs alone:
    ``predictor(batch) -> {"frames", "solvent", "sei"}`` on batches of ``static``, ``voltage``,
    ``composition``, ``electrode``, ``time_s``, ``wavenumber`` (what ``analysis.evaluate(model=...)``
    takes). A batch on another grid or with another number of frames than the model's is refused."""

    def __init__(self, model_dir: PathLike):
        self.model, self.info = load_model(model_dir)
        self.name = str(Path(model_dir))
        self.grid = np.asarray(self.info["wavenumber"], dtype=np.float64)
        self.T = int(self.info["T"])

    def __call__(self, batch: dict) -> dict:
        wn = torch.as_tensor(batch["wavenumber"])
        grid = self.grid
        if grid.shape[0] != wn.numel() or not np.allclose(grid, wn.double().numpy(), atol=1e-3):
            raise ValueError(f"the model at {self.name} was trained on a {grid.shape[0]}-point grid "
                             f"({grid[0]:.0f}-{grid[-1]:.0f} cm^-1), the dataset has {wn.numel()} points "
                             f"({float(wn[0]):.0f}-{float(wn[-1]):.0f}); evaluate it on its own dataset")
        T = int(batch["voltage"].shape[-1])
        if T != self.T:
            raise ValueError(f"the model predicts T={self.T} frames, the dataset has T={T}")
        extra = supported_kwargs(self.model.predict, time_s=batch["time_s"], wavenumber=batch["wavenumber"])
        return self.model.predict(batch["static"], batch["voltage"], batch["composition"], batch["electrode"],
                                  return_streams=True, **extra)


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _require_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    return path


def read_static(path: PathLike, grid: np.ndarray) -> np.ndarray:
    """A static spectrum, CSV (wavenumber, absorbance) or JCAMP-DX, resampled onto ``grid`` [W] -> float64 [W]."""
    path = _require_file(path, "static spectrum")
    return read_static_spectrum(path, grid, what="the model's grid",
                                hint="the model predicts on that fixed grid, so give a static spectrum that covers it")


def read_voltage(path: PathLike, T: int) -> tuple[np.ndarray, np.ndarray]:
    """A (time_s, voltage) CSV with one row per predicted frame -> (time_s [T], voltage [T])."""
    path = _require_file(path, "voltage table")
    return read_time_voltage(path, T, f"the model predicts T={T} frames")


def composition_vector(spec: Optional[str], components: list) -> np.ndarray:
    """"EC=0.5,DMC=0.5,LiPF6=0.1" -> mole fractions [C] over the model's ``components`` (names outside
    chemistry's vocabulary are new components given by --component-file); the rules of
    :func:`abcc_fast.data.importer.parse_fractions` (each name once, renormalised with a warning)."""
    if not spec or not str(spec).strip():
        raise ValueError(f"--composition is required, e.g. EC=0.5,DMC=0.5,LiPF6=0.1; known components: "
                         f"{', '.join(components)}")
    twice = sorted({n for n in components if list(components).count(n) > 1})
    if twice:
        raise ValueError(f"--component-file: {', '.join(twice)} is already a component of this model (or given "
                         "twice); give each new component once, under a new name")
    return parse_fractions(str(spec), list(components))


def load_component_files(files, grid: np.ndarray) -> list:
    """--component-file values (band JSON, or [NAME=]spectrum.csv) -> ComponentTemplates on ``grid``."""
    return [load_template(f, grid) for f in files]


def electrode_index(name: Optional[str], electrodes: list) -> int:
    if not name or name not in electrodes:
        raise ValueError(f"unknown electrode {name!r}; this model knows: {', '.join(electrodes)}")
    return electrodes.index(name)


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------
def frames_csv(wavenumber: np.ndarray, frames: np.ndarray) -> str:
    """wavenumber + one column per frame; frames [T, W]."""
    header = ["wavenumber"] + [f"frame_{t}" for t in range(frames.shape[0])]
    lines = [",".join(header)]
    for w in range(wavenumber.shape[0]):
        lines.append(",".join([f"{wavenumber[w]:.4f}"] + [f"{frames[t, w]:.7g}" for t in range(frames.shape[0])]))
    return "\n".join(lines) + "\n"


def supported_kwargs(fn, **kwargs) -> dict:
    """The optional inputs ``fn`` accepts (``time_s``, ``wavenumber``: newer models condition on them)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _finite(name: str, t: Optional[torch.Tensor]) -> None:
    if t is not None and not bool(torch.isfinite(t).all()):
        raise ValueError(f"the model produced NaN/Inf in {name!r}; the inputs are far outside the training data "
                         "or the model is damaged")


def predict_to_dir(model_dir: Optional[PathLike], static_csv: PathLike, voltage_csv: PathLike, composition: str,
                   electrode: str, out_dir: PathLike, *, streams: bool = False, samples: int = 0,
                   noise: Optional[float] = None, figures: bool = True,
                   component_files=()) -> dict:
    """Run one prediction and write it to ``out_dir``; returns ``{name: path}`` of what was written.

    model_dir: a directory written by ``abcc train``, or a packaged pretrained model's name
    (``"opirsim"``), or None for the default packaged model (docs/pretrained.md).
    noise (AU): None takes the calibration's noise when the model directory has a calibration.json,
    else 0.002. With samples and a calibration, calibrated 50/90 % bands are written too (samples >= 2).
    Example::

        predict_to_dir("run/model", "static.csv", "voltage.csv", "EC=0.5,DMC=0.5,LiPF6=0.1", "graphite",
                       "pred/", streams=True, samples=8)
    """
    if int(samples) < 0:
        raise ValueError(f"--samples must be >= 0, got {samples}")
    # ---- everything is read and checked before anything is written ------------------------
    out_dir = check_replaceable_output(out_dir, "prediction.json", "abcc predict")
    model_dir, packaged = model_directory(model_dir)
    model, info = load_model(model_dir)
    calibration = _calibration_for(model_dir, int(samples))
    if noise is None:
        noise = calibration.noise if calibration is not None else DEFAULT_NOISE
    x = _read_inputs(info, static_csv, voltage_csv, composition, electrode, component_files)
    tensors = _predict(model, x, bool(streams), int(samples), float(noise), calibration)
    meta = {"model": str(Path(model_dir).resolve()), "static": str(static_csv), "voltage": str(voltage_csv),
            "composition": {n: float(c) for n, c in zip(x["comp_names"], x["comp"]) if c > 0},
            "component_files": [str(f) for f in component_files],
            "electrode": electrode, "streams": bool(streams), "samples": int(samples), "noise": float(noise),
            "calibrated": calibration is not None,
            "shapes": {k: list(v.shape) for k, v in tensors.items()}}
    if calibration is not None:
        meta["calibration"] = {"file": str(Path(model_dir).resolve() / "calibration.json"),
                               "method": calibration.method, "fitted_samples": calibration.samples,
                               "fitted_on": f"{calibration.split}/{calibration.part}",
                               "n_samples": calibration.n_samples}
    if packaged is not None:
        meta["pretrained"] = packaged
    return _write_prediction(out_dir, x["grid"], tensors, meta, info, figures)


def _read_inputs(info: dict, static_csv, voltage_csv, composition: str, electrode: str, component_files) -> dict:
    """The prediction's inputs, read and checked against the model's grid, frames and vocabularies."""
    grid = np.asarray(info["wavenumber"], dtype=np.float64)
    T = int(info["T"])
    static = read_static(static_csv, grid)                                     # [W]
    time_s, voltage = read_voltage(voltage_csv, T)                             # [T], [T]
    new_components = load_component_files(component_files, grid)              # open vocabulary
    comp_names = list(info["components"]) + [t.name for t in new_components]
    comp = composition_vector(composition, comp_names)                         # [C (+ new)]
    elec = electrode_index(electrode, list(info["electrodes"]))
    return {"grid": grid, "T": T, "static": static, "time_s": time_s, "voltage": voltage,
            "new_components": new_components, "comp_names": comp_names, "comp": comp, "elec": elec}


def _predict(model, x: dict, streams: bool, samples: int, noise: float, calibration) -> dict:
    """The model's prediction for the inputs ``x`` as float32 CPU tensors (frames, grid, voltage, time;
    streams, samples and calibrated bands when asked for), each checked finite."""
    grid, T, time_s, voltage = x["grid"], x["T"], x["time_s"], x["voltage"]
    f32 = dict(dtype=torch.float32)
    extra = supported_kwargs(model.predict, time_s=torch.tensor(time_s[None], **f32),
                             wavenumber=torch.tensor(grid, **f32))
    if x["new_components"]:
        if not supported_kwargs(model.predict, extra_components=None):
            raise ValueError(f"--component-file: this model ({type(model).__name__}) has a fixed component vocabulary "
                             "and cannot take new components; use an ABCC trained with composition_encoding=templates")
        extra["extra_components"] = x["new_components"]
    with torch.no_grad():
        out = model.predict(torch.tensor(x["static"][None], **f32), torch.tensor(voltage[None], **f32),
                            torch.tensor(x["comp"][None], **f32), torch.tensor([x["elec"]], dtype=torch.int64),
                            return_streams=streams, samples=samples, noise=noise, **extra)
    frames = out["frames"][0].detach().float().cpu()                           # [T, W]
    if tuple(frames.shape) != (T, grid.shape[0]):
        raise ValueError(f"model returned frames of shape {tuple(frames.shape)}, expected [T, W] = [{T}, {grid.shape[0]}]")
    tensors = {"frames": frames, "wavenumber": torch.tensor(grid, **f32), "voltage": torch.tensor(voltage, **f32),
               "time_s": torch.tensor(time_s, **f32)}
    if streams:
        for k in ("solvent", "sei"):
            if out.get(k) is None:
                raise ValueError(f"the model did not return the {k!r} stream although --streams was given")
            tensors[k] = out[k][0].detach().float().cpu()
    if samples:
        s = out.get("samples")
        if s is None:
            raise ValueError("the model did not return samples although --samples was given")
        s = s.detach().float().cpu()
        tensors["samples"] = s[:, 0]                                            # [K, B, T, W] -> [K, T, W]
    if calibration is not None:
        if out.get("std") is None:
            raise ValueError("the model did not return a sample spread ('std'); calibrated bands need ABCC")
        tensors["std"] = out["std"][0].detach().float().cpu()
        _finite("std", tensors["std"])
        tensors.update(calibrated_bands(calibration, frames, tensors["std"], samples, noise))
    for k, v in tensors.items():
        _finite(k, v)
    return tensors


def _write_prediction(out_dir: Path, grid: np.ndarray, tensors: dict, meta: dict, info: dict, figures: bool) -> dict:
    """Write the prediction into a temporary directory, then move it into place as a whole (nothing
    of an earlier prediction -- figures, bands -- survives)."""
    frames = tensors["frames"]
    with atomic_directory(out_dir) as tmp:
        (tmp / "frames.csv").write_text(frames_csv(grid, frames.numpy()), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "frames.safetensors"))
        written = ["frames.csv", "frames.safetensors"]
        for k in [k for k in tensors if k.startswith("lower_")]:
            level = k.split("_", 1)[1]
            for side in ("lower", "upper"):
                name = f"band_{level}_{side}.csv"
                (tmp / name).write_text(frames_csv(grid, tensors[f"{side}_{level}"].numpy()), encoding="utf-8")
                written.append(name)
        if figures:
            written += _figures(tmp / "figures", grid, tensors, info)
        (tmp / "prediction.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        written.append("prediction.json")
    return {name: out_dir / name for name in written}


def _figures(fig_dir: Path, grid: np.ndarray, t: dict, info: dict) -> list:
    # matplotlib (and viz, which loads it) only when figures are asked for: a heavy import
    import matplotlib.pyplot as plt

    from ..viz import operando_heatmap, uncertainty_band

    fig_dir.mkdir(parents=True, exist_ok=True)
    names = []

    def emit(fig, name):
        fig.savefig(fig_dir / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        names.append(f"figures/{name}")

    emit(operando_heatmap(grid, t["frames"], t["time_s"], voltage=t["voltage"], title="predicted operando IR (x_t - x_0)"),
         "operando_heatmap.png")
    if "solvent" in t:
        emit(operando_heatmap(grid, t["solvent"], t["time_s"], voltage=t["voltage"],
                              title="predicted solvent stream (y_t - y_0)"), "solvent_stream.png")
        emit(operando_heatmap(grid, t["sei"], t["time_s"], voltage=t["voltage"], subtract_first=False,
                              title="predicted SEI stream z_t"), "sei_stream.png")
    if "samples" in t:
        last = t["samples"][:, -1]                                            # [K, W]
        lo, hi = torch.quantile(last, 0.05, dim=0), torch.quantile(last, 0.95, dim=0)
        emit(uncertainty_band(grid, t["frames"][-1], lo, hi,
                              title=f"last frame: prediction and 5-95% band over {last.shape[0]} samples"),
             "uncertainty_last_frame.png")
    if "lower_90" in t:
        fig = uncertainty_band(grid, t["frames"][-1], t["lower_90"][-1], t["upper_90"][-1],
                               title=f"last frame: calibrated 50% / 90% bands (K={t['samples'].shape[0]})")
        fig.axes[0].fill_between(grid, t["lower_50"][-1].numpy(), t["upper_50"][-1].numpy(), color="tab:blue",
                                 alpha=0.35, label="50% band")
        fig.axes[0].collections[0].set_label("90% band")
        fig.axes[0].legend(fontsize=8)
        emit(fig, "calibrated_bands.png")
    return names


def _calibration_for(model_dir: PathLike, samples: int):
    """The model directory's calibration.json when there is one and samples are asked for (else None).

    A calibration fitted for other weights, or samples < 2 with a calibration, is an error."""
    calibration = load_calibration(model_dir)
    if calibration is None or samples == 0:
        return None
    if samples < 2:
        raise ValueError(f"--samples {samples}: {model_dir} has a calibration.json, and calibrated bands need a "
                         f"spread of at least 2 samples; pass --samples {calibration.samples} (what it was fitted "
                         "with), or --samples 0 for no bands")
    sha = weights_sha256(model_dir)
    if calibration.model_sha256 and sha and calibration.model_sha256 != sha:
        raise ValueError(f"{model_dir}/calibration.json was fitted for other weights (sha256 "
                         f"{calibration.model_sha256[:12]}.., these are {sha[:12]}..); run `abcc calibrate --model "
                         f"{model_dir} ...` again")
    return calibration
