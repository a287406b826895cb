"""`abcc train`, `abcc predict`, `abcc calibrate`, `abcc demo`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .. import pretrained
from .. import uncertainty as unc
from .._cli_format import HelpFormatter
from .._errors import Interrupted
from .._paths import check_output_dir, check_replaceable_output
from ..data import default_dataset, load
from ..model import ABCC, ABCCConfig
from ..model.baselines import BASELINES, get
from ..presets import CLI_PRESETS
from ..train.checkpoint import latest_checkpoint
from ..train.distributed import barrier, cleanup, init_distributed
from ..train.predict import load_model, predict_to_dir
from ..train.trainer import TrainConfig, train
from .demo import run_demo as demo

MODEL_NAMES = ("abcc",) + tuple(BASELINES)   # --model choices
FMT = HelpFormatter


def register(subparsers) -> None:
    _add_train(subparsers)
    _add_predict(subparsers)
    _add_calibrate(subparsers)
    _add_demo(subparsers)


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train ABCC (or a baseline) on an OpIRBench split (checkpoints, resume, torchrun DDP)",
        description="Train ABCC (or, with --model, an OpIRBench baseline) on the training part of a split. "
                    "Writes DIR/model (final EMA weights), DIR/best (best validation loss), DIR/checkpoints "
                    "(atomic, resumable), DIR/log.csv. Multi-GPU: "
                    "torchrun --nproc_per_node N -m abcc_fast.cli train --preset gpu ...",
        formatter_class=FMT)
    p.add_argument("--data", default=None, metavar="PATH",
                   help="dataset directory (default: the embedded OpIRSim default dataset, generated on first use)")
    p.add_argument("--split", default="random", help="random, system, loso:<k> or inner:<k> (trains on its train part)")
    p.add_argument("--preset", default="cpu", choices=list(CLI_PRESETS), help="model + training preset")
    p.add_argument("--model", default="abcc", metavar="NAME", choices=MODEL_NAMES,
                   help="abcc, or an OpIRBench baseline: " + ", ".join(MODEL_NAMES[1:]) +
                        " (every model has the tiny, cpu and gpu presets)")
    p.add_argument("--steps", type=int, default=None,
                   help="the budget: training steps; the learning-rate schedule follows them, so the same seed "
                        "gives the same model on a busy or an idle machine (default: the preset's)")
    p.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                   help="optional wall-clock safety cap: ends the run early with a warning (marked capped; the "
                        "schedule still follows --steps, so the result does not compare with full runs)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="abcc_run", metavar="DIR", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints (exact resume)")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if DIR holds a checkpoint")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-sei-labels", action="store_true",
                   help="ABCC: train the SEI stream through the frames alone (w_sei_label=0), e.g. for a dataset "
                        "whose grid or components the template fit behind the labels does not cover")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)


def _add_predict(subparsers) -> None:
    q = subparsers.add_parser(
        "predict", help="predict operando frames from a static spectrum and a voltage table",
        description="Predict all operando frames from a static spectrum (CSV: wavenumber, absorbance; or JCAMP-DX; "
                    "resampled onto the model's grid) and a voltage table (CSV: time_s, voltage; one row per frame). Writes "
                    "frames.csv, frames.safetensors, prediction.json and figures/ into --out, atomically.",
        formatter_class=FMT)
    q.add_argument("--model", default=None, metavar="DIR",
                   help="model directory written by abcc train (DIR/model), or the name of a packaged pretrained "
                        "model (opirsim, opirsim-system; docs/pretrained.md); default: the packaged 'opirsim'")
    q.add_argument("--static", required=True, metavar="FILE",
                   help="static spectrum: CSV (wavenumber, absorbance) or JCAMP-DX (.jdx/.dx)")
    q.add_argument("--voltage", required=True, metavar="CSV", help="voltage table: time_s, voltage (V vs Li/Li+)")
    q.add_argument("--composition", required=True, help='mole fractions, e.g. "EC=0.5,DMC=0.5,LiPF6=0.1"')
    q.add_argument("--electrode", required=True, help="electrode name, e.g. graphite")
    q.add_argument("--component-file", action="append", default=[], metavar="FILE",
                   help="a new component for --composition (models trained with composition_encoding=templates): "
                        "a band JSON (abcc_fast.vocabulary) or NAME=spectrum.csv (wavenumber, absorbance); repeatable")
    q.add_argument("--streams", action="store_true", help="also write the solvent and SEI streams")
    q.add_argument("--samples", type=int, default=0, metavar="K",
                   help="stochastic samples for an uncertainty band; with a calibration.json in --model (abcc "
                        "calibrate) also calibrated 50/90%% bands (band_*_{lower,upper}.csv)")
    q.add_argument("--noise", type=float, default=None, metavar="AU",
                   help="source-state noise (AU) for --samples (default: the calibration's, else 0.002)")
    q.add_argument("--out", default="abcc_prediction", metavar="DIR")
    q.add_argument("--no-figures", action="store_true")
    q.set_defaults(func=run_predict)


def _add_calibrate(subparsers) -> None:
    c = subparsers.add_parser(
        "calibrate", help="calibrate ABCC's stochastic prediction bands on the validation part (conformal)",
        description="Fit split-conformal prediction bands (abcc_fast.uncertainty) on the validation part of a split: "
                    "writes calibration.json into --model (used by abcc predict --samples K) and a report "
                    "(coverage.md, coverage.json, reliability.png: coverage of the 50/90%% bands on the test part, "
                    "calibrated and raw) into --out.",
        formatter_class=FMT)
    c.add_argument("--model", required=True, metavar="DIR", help="ABCC model directory written by abcc train (DIR/model)")
    c.add_argument("--data", default=None, metavar="PATH", help="dataset directory (default: the embedded dataset)")
    c.add_argument("--split", default="random", help="the split the model was trained on (random, system, loso:<k>, inner:<k>)")
    c.add_argument("--samples", type=int, default=8, metavar="K", help="stochastic samples (>= 2)")
    c.add_argument("--noise", type=float, default=0.002, metavar="AU", help="source-state noise")
    c.add_argument("--max-samples", type=int, default=128, metavar="N",
                   help="validation (and test) samples used, a fixed random subset; 0: all")
    c.add_argument("--global", dest="per_frame", action="store_false",
                   help="one factor for all frames instead of one per frame index")
    c.add_argument("--out", default="abcc_calibration", metavar="DIR", help="report directory")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=run_calibrate)


def _add_demo(subparsers) -> None:
    d = subparsers.add_parser(
        "demo", help="generate data, train on random + system splits, benchmark, write report.md",
        description="The end-to-end demo: the default dataset, one model per split (random and system; the "
                    "system model never sees the held-out systems), OpIRBench against persistence and frame0, "
                    "and DIR/report.md with leaderboards and figures. About 9 minutes on 2 CPU cores.",
        formatter_class=FMT)
    d.add_argument("--out", default="abcc_demo", metavar="DIR")
    d.add_argument("--preset", default="cpu", choices=list(CLI_PRESETS))
    d.add_argument("--quick", action="store_true", help="a tiny end-to-end run (small dataset, tiny model)")
    d.add_argument("--pretrained", action="store_true",
                   help="no training: score the packaged pretrained models (opirsim, opirsim-system) on both splits "
                        "and write the same report (about a minute)")
    d.add_argument("--data", default=None, metavar="PATH", help="dataset directory instead of the default")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--jobs", default="auto",
                   help="training processes: auto (one per split on a CPU machine with 2+ cores, the cores shared "
                        "out evenly; one on a GPU) or a number (1: the splits in turn with every thread)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=run_demo)


def build_model(name: str, ds, split: str, preset: str, **abcc_overrides):
    """A freshly initialised model ``name`` ("abcc" or a key of BASELINES) sized by ``preset``
    (a config preset name: tiny, cpu_default, gpu_default) from the dataset ``ds``; ``abcc_overrides``:
    ABCCConfig fields (ABCC only)."""
    if name == "abcc":
        return ABCC(ABCCConfig.from_dataset(ds, split, preset=preset, **abcc_overrides))
    return get(name).from_dataset(ds, split, preset=preset)


def _dataset(path, progress: bool):
    if path is None:
        return default_dataset(progress=progress)
    if not Path(path).exists():
        raise FileNotFoundError(f"dataset directory not found: {path}")
    return load(path)


def run_train(args) -> int:
    check_device(args.device)
    out = check_output_dir(Path(args.out))
    ckpt = latest_checkpoint(out)
    if not args.resume and not args.overwrite and ckpt is not None:
        raise ValueError(f"{out} already holds a training run; pass --resume to continue it, --overwrite to start "
                         "afresh, or choose another --out")
    resumed = _resumed_settings(ckpt) if args.resume and ckpt is not None else {}
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr),
                                   ("max_time_s", args.max_time)) if v is not None}
    cfg = TrainConfig.preset_named(args.preset, seed=args.seed, device=args.device,
                                   **{**resumed, **overrides}).validate()
    info = init_distributed(cfg.device)
    try:
        progress = not args.no_progress and info.is_main
        # rank 0 first: the default dataset may have to be generated into the cache, once
        if not info.is_main:
            barrier(info)
        ds = _dataset(args.data, progress)
        if info.is_main:
            barrier(info)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        model = build_model(args.model, ds, args.split, CLI_PRESETS[args.preset],
                            **({"w_sei_label": 0.0} if args.no_sei_labels and args.model == "abcc" else {}))
        try:
            result = train(model, ds, split=args.split, config=cfg, out_dir=out, resume=args.resume,
                           progress=progress, dist_info=info)
        except KeyboardInterrupt:
            raise Interrupted(_saved_note(out)) from None
    finally:
        cleanup()
    if info.is_main:
        sps = result.s_per_step
        print(f"trained {result.steps_done} of {cfg.steps} steps in {result.total_time_s:.0f} s"
              + (f" ({sps:.3g} s/step)" if sps else "")
              + ("; CAPPED by --max-time before the step budget" if result.capped else "") + "; "
              f"train loss {result.train_loss:.4g}, best val loss "
              f"{'n/a' if result.best_val_loss is None else f'{result.best_val_loss:.4g}'}")
        print(f"model: {result.model_dir}   (abcc predict --model {result.model_dir} ...; "
              f"abcc bench --model {result.model_dir} --split {args.split})")
    return 0


def check_device(name) -> None:
    """--device must be cpu, cuda or cuda:N, and CUDA must be there for cuda."""
    if name is None:
        return
    kind, _, index = str(name).partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"--device {name!r} is not supported; use cpu, cuda or cuda:N (or leave it out: cuda when "
                         "available, else cpu)")
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA device is visible")
            raise ValueError(f"--device {name}: {why}; use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")


def _resumed_settings(ckpt) -> dict:
    """lr and batch size of the run a --resume continues (used where the command line does not give them)."""
    try:
        st = json.loads((Path(ckpt) / "state.json").read_text(encoding="utf-8"))
        cfg = st.get("train_config") or {}
    except (OSError, ValueError, AttributeError):
        return {}     # load_checkpoint reports the damage with the full message
    return {k: cfg[k] for k in ("lr", "batch_size") if isinstance(cfg, dict) and k in cfg}


def _saved_note(out: Path) -> str:
    try:
        ckpt = latest_checkpoint(out)
    except ValueError:
        ckpt = None
    if ckpt is None:
        return "no checkpoint was saved (interrupted before the first step); nothing to resume"
    return (f"checkpoint {ckpt} is saved; continue with the same command plus --resume (abcc train --resume "
            f"--out {out} ...)")


def run_predict(args) -> int:
    check_replaceable_output(args.out, "prediction.json", "abcc predict")   # before loading the model

    if args.model is None:
        name = pretrained.DEFAULT_NAME
        print(f"no --model given: using the packaged pretrained model '{name}' ({pretrained.path(name)}), "
              "trained on simulated OpIRSim data only (its card and limits: docs/pretrained.md)")
    written = predict_to_dir(args.model, args.static, args.voltage, args.composition, args.electrode, args.out,
                             streams=args.streams, samples=args.samples, noise=args.noise,
                             figures=not args.no_figures,
                             **({"component_files": args.component_file} if args.component_file else {}))
    for name, path in written.items():
        print(f"wrote {path}")
    return 0


def run_calibrate(args) -> int:
    unc._check_sampling(args.samples, args.noise)      # before loading or generating anything
    check_output_dir(args.out)
    if args.max_samples < 0 or args.max_samples == 1:
        raise ValueError(f"--max-samples must be 0 (all) or >= 2, got {args.max_samples}")
    model, _ = load_model(args.model)
    ds = _dataset(args.data, not args.no_progress)
    n = args.max_samples or None
    cal = unc.calibrate(model, ds, args.split, "val", samples=args.samples, noise=args.noise, max_samples=n,
                        per_frame=args.per_frame, model_dir=args.model)
    report = unc.coverage(model, ds, args.split, "test", calibration=cal, max_samples=n)
    path = cal.save(args.model)
    written = unc.write_report(report, args.out, calibration=cal)
    print(f"wrote {path}")
    for p in written.values():
        print(f"wrote {p}")
    print(unc.report_markdown(report))
    return 0


def run_demo(args) -> int:
    try:
        report = demo(out_dir=args.out, preset=args.preset, quick=args.quick, data=args.data, seed=args.seed,
                      progress=not args.no_progress, jobs=args.jobs,
                      **({"pretrained": True} if args.pretrained else {}))
    except KeyboardInterrupt:
        raise Interrupted(f"the demo is built beside {args.out} and moved into place when complete, so {args.out} "
                          "is as it was before; rerun to start again") from None
    print(f"report: {report}", file=sys.stdout)
    return 0
