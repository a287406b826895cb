"""``abcc demo``: the README's main job, end to end, with progress throughout.

1. data: the embedded OpIRSim default dataset (generated once into the cache), or with ``quick``
   a small dataset generated into ``DIR/data``;
2. two models, one per OpIRBench split, trained on that split's training part: ``random`` and
   ``system`` (the system model never sees the held-out systems; the report checks it);
3. OpIRBench on each split's test part: the model against ``persistence`` and ``frame0``;
4. ``DIR/report.md``: setup, timings, leaderboards (with the MSE per frame) and figures (training
   curves, leaderboard bar chart, MSE per frame, predicted vs true operando heatmaps and difference
   spectra of held-out samples, predicted streams vs the true solvent/SEI contributions), plus
   ``DIR/<split>/leaderboard.{md,csv,json}``.

The training budget is a number of steps (``TrainConfig.cpu_default``), so the same seed gives the
same leaderboards on a busy or an idle machine; the wall clock (seconds, s/step) is reported beside
the steps.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from .. import provenance
from .._atomic import atomic_directory, write_text
from .._paths import check_replaceable_output
from ..data import default_dataset, generate, load
from ..model import ABCC, ABCCConfig, load_predictor
from ..opirbench import (METRIC_KEYS, Frame0, Persistence, SimulatorOracle, evaluate, manifest_sha256,
                         write_leaderboard)
from ..opirbench.report import example_indices, per_frame_figure, write_figures
from ..presets import CLI_PRESETS, check_cli_preset
from ..train.predict import supported_kwargs
from ..train.trainer import TrainConfig, TrainResult, train
from ..viz import decomposition, save_figure
from .pretrained_runs import packaged_runs

SPLITS = ("random", "system")
QUICK_DATA = dict(n_samples=240, T=8, W=64)
ORACLE_REPLICATES = 16       # simulator-oracle draws: its MSE sits ~6 % above the bound (default data)
ORACLE_NAME = "oracle"


def _say(msg: str) -> None:
    print(f"[abcc demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _dataset(out: Path, quick: bool, data: Optional[str], seed: int, progress: bool):
    if data is not None:
        if not Path(data).exists():
            raise FileNotFoundError(f"dataset directory not found: {data}")
        return load(data)
    if not quick:
        return default_dataset(progress=progress)
    path = out / "data"
    if (path / "manifest.json").exists():
        try:
            return load(path)
        except ValueError:
            pass
    generate(path, seed=seed, progress=progress, **QUICK_DATA)
    return load(path)


def _held_out_check(ds) -> dict:
    """Systems of the system split's train/val/test parts; the test systems must be unseen in training."""
    parts = {p: sorted({int(s) for s in ds.split("system", p).system.tolist()}) for p in ("train", "val", "test")}
    leak = sorted(set(parts["train"]) & set(parts["test"]))
    if leak:
        raise ValueError(f"the dataset's system split trains on held-out systems {leak}; regenerate the dataset")
    return parts


def _read_log(path: Path) -> dict:
    rows = {"train": ([], []), "val": ([], [])}
    if not path.exists():
        return rows
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r.get("kind") in rows and r.get("loss"):
                rows[r["kind"]][0].append(int(r["step"]))
                rows[r["kind"]][1].append(float(r["loss"]))
    return rows


def _training_curves(logs: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for (split, log), color in zip(logs.items(), ("tab:blue", "tab:orange")):
        steps, loss = log["train"]
        if steps:
            ax.plot(steps, loss, color=color, lw=0.9, alpha=0.8, label=f"{split}: train")
        steps, loss = log["val"]
        if steps:
            ax.plot(steps, loss, "o--", color=color, ms=4, label=f"{split}: validation (EMA)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training objective")
    ax.set_title("ABCC training curves")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)
    return path


def _leaderboard_bars(results: dict, path: Path) -> Path:
    """One panel per headline metric; grouped bars per split, one bar per model."""
    keys = [ks[0] for ks in METRIC_KEYS.values() if any(ks[0] in r.metrics for rs in results.values() for r in rs)]
    models = list(dict.fromkeys(r.model for rs in results.values() for r in rs))
    ncol = min(3, len(keys))
    nrow = int(np.ceil(len(keys) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
    width = 0.8 / max(1, len(models))
    colors = plt.get_cmap("tab10")(np.arange(len(models)))
    for i, ax in enumerate(axes.flat):
        if i >= len(keys):
            ax.axis("off")
            continue
        key = keys[i]
        for j, model in enumerate(models):
            vals = [next((r.metrics.get(key, np.nan) for r in results[s] if r.model == model), np.nan)
                    for s in results]
            ax.bar(np.arange(len(results)) + (j - (len(models) - 1) / 2) * width, vals, width, color=colors[j],
                   label=model)
        ax.set_xticks(np.arange(len(results)), list(results))
        ax.set_title(key, fontsize=10)
        ax.axhline(0, color="0.5", lw=0.5)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("OpIRBench test scores (lower is better)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def _streams_figure(model, ds, split: str, path: Path) -> Optional[Path]:
    """Predicted solvent/SEI streams vs the true synthetic contributions, first held-out sample."""
    sub = ds.split(split, "test")
    if len(sub) == 0 or sub.solvent is None:
        return None
    row = example_indices(sub, 1)[0]
    extra = supported_kwargs(model.predict, time_s=sub.time_s[row:row + 1], wavenumber=ds.wavenumber)
    with torch.no_grad():
        out = model.predict(sub.static[row:row + 1], sub.voltage[row:row + 1], sub.composition[row:row + 1],
                            sub.electrode[row:row + 1], return_streams=True, **extra)
    systems = [s.get("name", str(i)) if isinstance(s, dict) else str(s)
               for i, s in enumerate(ds.manifest.get("systems") or [])]
    sysi = int(sub.system[row])
    fig = decomposition(ds.wavenumber, sub.solvent[row], sub.sei[row], pred_solvent=out["solvent"][0].cpu(),
                        pred_sei=out["sei"][0].cpu(), frame=-1,
                        title=f"{split} split, sample {int(sub.index[row])} ({systems[sysi] if sysi < len(systems) else sysi}), "
                              "last frame: true (solid) vs predicted (dashed) streams")
    save_figure(fig, path)
    plt.close(fig)
    return path


_FIGURE_ERRORS: list = []


def _guard(make, default):
    """A figure that fails must not cost the leaderboards of a 15-minute run: warn, note, go on."""
    try:
        return make()
    except Exception as err:  # noqa: BLE001 -- reported in report.md
        _FIGURE_ERRORS.append(f"{type(err).__name__}: {err}")
        _say(f"warning: a figure failed ({type(err).__name__}: {err}); continuing")
        return default


def _headroom(results: dict) -> list:
    """Markdown: MSE of persistence, ABCC and the oracle per split, the factors over persistence and
    the share of the achievable improvement (persistence - oracle) that ABCC captures."""
    rows = []
    for split, rs in results.items():
        mse = {r.model: r.metrics.get("mse") for r in rs}
        p, a, o = mse.get("persistence"), mse.get("ABCC"), mse.get(ORACLE_NAME)
        if p is None or a is None:
            continue
        share = f"{(p - a) / (p - o):.0%}" if o is not None and p > o else "n/a"
        rows.append(f"| {split} | {p:.5f} | {a:.5f} | {p / a:.2f}x | "
                    + (f"{o:.5f} | {p / o:.2f}x | {share} |" if o is not None else "n/a | n/a | n/a |"))
    if not rows:
        return []
    return ["## How much of the achievable improvement ABCC captures", "",
            "MSE (z-units, test part). *share* = (persistence - ABCC) / (persistence - oracle).", "",
            "| split | persistence | ABCC | persistence / ABCC | oracle | persistence / oracle | share |",
            "|---|---|---|---|---|---|---|", *rows, ""]


def _rel(path: Path, root: Path) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def demo_train_config(preset: str = "cpu", quick: bool = False, seed: int = 0):
    """The demo's TrainConfig: the preset's step budget (``--quick``: 12 tiny steps)."""
    return TrainConfig.tiny(steps=12, seed=seed) if quick else TrainConfig.preset_named(preset, seed=seed)


def train_split(ds, split: str, train_cfg, model_preset: str, run_dir: Path, progress: bool = True):
    """Train the demo's ABCC (``model_preset``) on ``split`` from scratch into ``run_dir``; returns the
    TrainResult. Deterministic: the initial weights and the run follow ``train_cfg.seed``."""
    _say(f"training ABCC ({model_preset}) on split '{split}': budget {train_cfg.steps} steps"
         + (f", wall-clock safety cap {train_cfg.max_time_s:.0f} s" if train_cfg.max_time_s else ""))
    torch.manual_seed(train_cfg.seed)
    model = ABCC(ABCCConfig.from_dataset(ds, split, preset=model_preset))
    r = train(model, ds, split=split, config=train_cfg, out_dir=run_dir, resume=False, progress=progress)
    _say(f"  {r.steps_done} steps in {r.wall_time_s:.0f} s ({r.s_per_step:.3g} s/step)"
         + (" -- CAPPED by the wall-clock cap before the step budget" if r.capped else "")
         + f"; train loss {r.train_loss:.4g}; best val loss "
         + ("n/a" if r.best_val_loss is None else f"{r.best_val_loss:.5g}"))
    return r


def training_jobs(jobs, train_cfg, n_splits: int = len(SPLITS)) -> tuple[int, int]:
    """(processes, torch threads per process) for training ``n_splits`` models.

    ``jobs``: a number, or "auto": one process per split on a CPU-only run with at least two cores
    (a model's step does not use two threads well: on the 2-core machine the demo's two models
    trained side by side in 464 s, one after the other with two threads in 961 s; see
    bench/results/demo_v6_cpu), one process on a GPU.
    The cores are shared out evenly, so a run's thread count, and with it its numbers, depend only
    on the machine's core count and ``jobs``."""
    cpus = os.cpu_count() or 1
    if jobs == "auto":
        on_gpu = train_cfg.device != "cpu" and torch.cuda.is_available()
        jobs = 1 if on_gpu else min(n_splits, cpus)
    try:
        jobs = int(jobs)
    except (TypeError, ValueError):
        raise ValueError(f"jobs must be a positive number or 'auto', got {jobs!r}") from None
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    jobs = min(jobs, n_splits)
    return jobs, max(1, cpus // jobs) if jobs > 1 else torch.get_num_threads()


def _train_worker(root: str, split: str, cfg_json: dict, model_preset: str, run_dir: str, threads: int) -> dict:
    """One split's training in a child process (spawned: it starts from a clean interpreter)."""
    torch.set_num_threads(threads)
    r = train_split(load(root), split, TrainConfig.from_json(cfg_json), model_preset, Path(run_dir), progress=False)
    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "model"}


def _poll_progress(futures: dict, run_root: Path, steps: int) -> None:
    """Parent-side progress of the worker processes: one bar per split, read from each run's log.csv."""
    bars = {s: tqdm(total=steps, desc=f"train {s}", unit="step", position=i, dynamic_ncols=True)
            for i, s in enumerate(futures)}
    try:
        while not all(f.done() for f in futures.values()):
            time.sleep(2.0)
            for s, bar in bars.items():
                done = _last_step(run_root / s / "log.csv")
                if done > bar.n:
                    bar.update(done - bar.n)
    finally:
        for bar in bars.values():
            bar.close()


def _last_step(log_csv: Path) -> int:
    try:
        lines = log_csv.read_text().strip().splitlines()
    except OSError:
        return 0
    head = lines[-1].split(",", 1)[0] if len(lines) > 1 else ""
    return int(head) if head.isdigit() else 0


def train_splits(ds, splits, train_cfg, model_preset: str, run_root: Path, progress: bool = True,
                 jobs="auto") -> dict:
    """Train one ABCC per split into ``run_root/<split>``; returns {split: TrainResult}.

    With more than one job (:func:`training_jobs`) each split trains in its own spawned process on
    ``ds`` loaded again from its folder (an in-memory dataset trains in this process, in turn);
    the results are those of :func:`train_split` with the same thread count, and each
    ``TrainResult.model`` is the saved EMA model read back."""
    n_jobs, threads = training_jobs(jobs, train_cfg, len(splits))
    if n_jobs == 1 or getattr(ds, "root", None) is None:
        return {s: train_split(ds, s, train_cfg, model_preset, run_root / s, progress) for s in splits}
    _say(f"training {len(splits)} models side by side: {n_jobs} processes x {threads} torch thread(s)")
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
        futures = {s: pool.submit(_train_worker, str(ds.root), s, train_cfg.to_json(), model_preset,
                                  str(run_root / s), threads) for s in splits}
        if progress:
            _poll_progress(futures, run_root, int(train_cfg.steps))
        fields = {s: f.result() for s, f in futures.items()}
    return {s: TrainResult(**{**d, "model": ABCC.from_pretrained(d["model_dir"])}) for s, d in fields.items()}


def score_split(ds, split: str, abcc_fn, progress: bool = True) -> list:
    """OpIRBench on the test part of ``split``: persistence, frame0, the simulator oracle (OpIRSim
    data) and ABCC (``abcc_fn``); returns their EvalResults in that order."""
    predictors = [("persistence", Persistence()), ("frame0", Frame0())]
    if ds.manifest.get("generator", {}).get("name") == "OpIRSim":
        oracle = _guard(lambda: SimulatorOracle(ds.manifest, replicates=ORACLE_REPLICATES), None)
        if oracle is not None:
            predictors.append((ORACLE_NAME, oracle))
    predictors.append(("ABCC", abcc_fn))
    results = []
    for name, fn in predictors:
        _say(f"OpIRBench {split}/test: {name}")
        res = evaluate(fn, ds, split, "test", progress=progress, name=name)
        _say("  " + res.summary())
        results.append(res)
    return results


def run_demo(out_dir="abcc_demo", preset: str = "cpu", quick: bool = False, data: Optional[str] = None,
             seed: int = 0, progress: bool = True, pretrained: bool = False, jobs="auto") -> Path:
    """Run the demo into ``out_dir``; returns the path of ``report.md``.

    preset: "cpu" (default: two models of ``TrainConfig.cpu_default``'s step budget, trained side by
    side; about 9 minutes on 2 cores), "gpu" or "tiny";
    quick: tiny model + small generated dataset (a CI-sized end-to-end run);
    pretrained: no training: score the packaged models (abcc_fast/pretrained, one per split) on the
    dataset they were built on, and write the same report;
    jobs: training processes ("auto": one per split on a CPU machine with at least two cores, each with
    cpu_count // jobs torch threads; one on a GPU); see :func:`train_splits`.

    The folder is built beside ``out_dir`` and replaces it as a whole at the end, so nothing of an
    earlier run survives and an interrupted run leaves the earlier one intact (``--quick`` reuses
    the earlier run's small dataset).
    """
    check_cli_preset(preset)
    if pretrained and quick:
        raise ValueError("--pretrained scores the packaged models on the default dataset; --quick trains tiny ones on "
                         "a small dataset: give one of them")
    final = check_replaceable_output(out_dir, "report.md", "abcc demo")
    with atomic_directory(final) as tmp:
        if quick and data is None and (final / "data" / "manifest.json").is_file():
            shutil.copytree(final / "data", tmp / "data")
        _run_demo(tmp, final, preset, quick, data, seed, progress, pretrained, jobs)
    _say(f"done: {final / 'report.md'}")
    return final / "report.md"


def _run_demo(out: Path, final: Path, preset: str, quick: bool, data: Optional[str], seed: int,
              progress: bool, pretrained: bool = False, jobs="auto") -> None:
    """The demo, written into ``out`` (a temporary folder that becomes ``final``)."""
    t_total = time.perf_counter()
    load_start = provenance.load_average()
    _FIGURE_ERRORS.clear()
    timings: dict[str, float] = {}

    # ---- 1. data ---------------------------------------------------------------------------
    _say("dataset: " + ("small generated dataset (--quick)" if quick else data or "embedded OpIRSim default"))
    t = time.perf_counter()
    ds = _dataset(out, quick, data, seed, progress)
    timings["data"] = time.perf_counter() - t
    systems_by_part = _held_out_check(ds)
    _say(f"dataset ready: {len(ds)} samples, T={ds.T}, W={ds.W} ({timings['data']:.0f} s)")

    # ---- 2. training: one model per split (--pretrained: the packaged ones) ----------------------
    model_preset = "tiny" if quick else CLI_PRESETS[preset]
    train_cfg = demo_train_config(preset, quick, seed)
    runs = {}
    if pretrained:
        runs, train_cfg, model_preset = packaged_runs(ds, SPLITS)
        _say("models: the packaged pretrained " + ", ".join(f"{s}: {r.model_dir}" for s, r in runs.items()))
    else:
        t = time.perf_counter()
        runs = train_splits(ds, SPLITS, train_cfg, model_preset, out / "runs", progress, jobs)
        timings.update({f"train_{s}": r.wall_time_s for s, r in runs.items()})
        timings["train"] = time.perf_counter() - t
    n_params = sum(p.numel() for p in runs[SPLITS[0]].model.parameters())

    # ---- 3. OpIRBench -------------------------------------------------------------------------
    results, boards, figs = {}, {}, {}
    for split in SPLITS:
        t = time.perf_counter()
        abcc_fn = load_predictor(str(runs[split].model_dir))
        results[split] = score_split(ds, split, abcc_fn, progress)
        boards[split] = write_leaderboard(results[split], ds, out / split, split, "test")
        timings[f"bench_{split}"] = time.perf_counter() - t
        t = time.perf_counter()
        _say(f"figures for split '{split}'")
        figs[split] = _guard(lambda: write_figures([("ABCC", abcc_fn)], ds, split, out / split, "test",
                                                   max_samples=2), []) or []
        stream_fig = _guard(lambda: _streams_figure(runs[split].model, ds, split,
                                                    out / "figures" / f"streams_{split}.png"), None)
        if stream_fig is not None:
            figs[split].append(stream_fig)
        timings[f"figures_{split}"] = time.perf_counter() - t

    curves = _guard(lambda: _training_curves({s: _read_log(runs[s].log_path) for s in SPLITS},
                                             out / "figures" / "training_curves.png"), None)
    per_frame = _guard(lambda: per_frame_figure(
        {f"{r.model} ({s})": r.per_frame["mse"] for s in SPLITS for r in results[s] if "mse" in r.per_frame},
        out / "figures" / "mse_per_frame.png", "MSE per frame (test parts; random and system split)"), None)
    bars = _guard(lambda: _leaderboard_bars(results, out / "figures" / "leaderboard_bars.png"), None)
    timings["total"] = time.perf_counter() - t_total

    # ---- 4. report ----------------------------------------------------------------------------
    summary = {
        "created_utc": provenance.utc_now(),
        "load_average_at_start": load_start, "load_average_at_end": provenance.load_average(),
        "preset": "quick" if quick else "pretrained" if pretrained else preset, "model_preset": model_preset,
        "seed": seed,
        "dataset": {"name": ds.manifest.get("name"), "samples": len(ds), "T": ds.T, "W": ds.W,
                    "manifest_sha256": manifest_sha256(ds)},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "training": {s: runs[s].to_json() for s in SPLITS},
        "leaderboards": {s: {r.model: r.metrics for r in results[s]} for s in SPLITS},
        "mse_per_frame": {s: {r.model: [float(v) for v in r.per_frame["mse"]] for r in results[s] if "mse" in r.per_frame}
                          for s in SPLITS},
    }
    # paths name the final folder, not the temporary one they were written in
    text = json.dumps(summary, indent=1, default=str).replace(json.dumps(str(out))[1:-1], json.dumps(str(final))[1:-1])
    write_text(out / "demo_summary.json", text + "\n")
    report = _report(out, ds, summary, runs, results, boards, figs, (curves, bars, per_frame), systems_by_part,
                     n_params, train_cfg, timings, name=final.name)
    write_text(out / "report.md", report)
    _say(f"finished in {timings['total'] / 60:.1f} min")


def _report(out, ds, summary, runs, results, boards, figs, overview_figs, systems_by_part, n_params, train_cfg,
            timings, name: Optional[str] = None) -> str:
    curves, bars, per_frame = overview_figs
    names = [s.get("name", str(i)) if isinstance(s, dict) else str(s)
             for i, s in enumerate(ds.manifest.get("systems") or [])]

    def sysnames(idx):
        return ", ".join(names[i] if i < len(names) else str(i) for i in idx)

    m = provenance.run_info()
    L = ["# abcc demo report", "",
         f"Generated {summary['created_utc']} on {m['node'] or 'this machine'} "
         f"({m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']}). "
         f"Total wall time **{timings['total'] / 60:.1f} min**; load average (1, 5, 15 min) "
         f"{summary['load_average_at_start']} at the start, {summary['load_average_at_end']} at the end "
         "(other work on the machine makes the run slower, not different: the budget is a number of steps).", "",
         "## Setup", "",
         f"- dataset: `{summary['dataset']['name']}`: {len(ds)} samples, T={ds.T} frames, W={ds.W} wavenumbers "
         f"({float(ds.wavenumber[0]):.0f}-{float(ds.wavenumber[-1]):.0f} cm^-1), manifest sha256 "
         f"`{summary['dataset']['manifest_sha256'][:16]}...`",
         f"- models: ABCC preset `{summary['model_preset']}` ({n_params:,} parameters), **two models**, each trained "
         "from scratch on the training part of its own split and evaluated on that split's test part"
         + ("; here the packaged pretrained models (" + ", ".join(f"`{r.model_dir.name}`" for r in runs.values())
            + "; docs/pretrained.md), not trained by this run: the training rows below are from their model cards"
            if summary["preset"] == "pretrained" else ""),
         f"- split `random`: train/val/test = {len(ds.split('random', 'train'))}/{len(ds.split('random', 'val'))}/"
         f"{len(ds.split('random', 'test'))} samples",
         f"- split `system`: train/val/test = {len(ds.split('system', 'train'))}/{len(ds.split('system', 'val'))}/"
         f"{len(ds.split('system', 'test'))} samples; test systems ({sysnames(systems_by_part['test'])}) are "
         f"absent from its training part (checked: training systems = {sysnames(systems_by_part['train'])})",
         f"- training: AdamW (lr {train_cfg.lr:g}, weight decay {train_cfg.weight_decay:g}), warm-up "
         f"{train_cfg.warmup_steps} steps + cosine, batch {train_cfg.batch_size}, gradient clip {train_cfg.grad_clip:g}, "
         f"EMA {train_cfg.ema_decay:g} (the EMA weights are evaluated), budget **{train_cfg.steps} steps** per model"
         + (f" (wall-clock safety cap {train_cfg.max_time_s:.0f} s)" if train_cfg.max_time_s else ""),
         "- references: `persistence` (every frame = static spectrum), `frame0` (every frame = true frame 0: an "
         "oracle rest state the model does not get), and on OpIRSim data `oracle`: the simulator's Monte-Carlo "
         f"conditional mean over {ORACLE_REPLICATES} re-simulations of each test sample with every draw that no "
         "input reveals redrawn (film kinetics, salt polarisation, operando baseline and noise, and the split of the "
         "static spectrum's scale into contact and static gain, of which the inputs reveal only the product): the best score "
         "any model of these inputs can expect (its MSE sits above the Bayes bound by the hidden variance / "
         f"{ORACLE_REPLICATES})", "",
         "## Training", "",
         "| split | steps | time (s) | s/step | final train loss | best val loss |", "|---|---|---|---|---|---|"]
    for s, r in runs.items():
        bv = "n/a" if r.best_val_loss is None else f"{r.best_val_loss:.4g}"
        steps = f"{r.steps_done}" + (f" of {train_cfg.steps} (**capped** by the wall-clock cap)" if r.capped else "")
        sps = "n/a" if r.s_per_step is None else f"{r.s_per_step:.3g}"
        L.append(f"| {s} | {steps} | {r.wall_time_s:.0f} | {sps} | {r.train_loss:.4g} | {bv} |")
    L += ["", f"![training curves]({_rel(curves, out)})" if curves else "(training-curve figure failed)", "",
          "## Timings", "", "| stage | seconds |", "|---|---|"]
    L += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    L += ["", "## Leaderboards (OpIRBench, test parts)", "",
          f"![leaderboard]({_rel(bars, out)})" if bars else "(bar-chart figure failed)", "",
          f"![MSE per frame]({_rel(per_frame, out)})" if per_frame else "(per-frame figure failed)", ""]
    for s in results:
        md = Path(boards[s]["md"]).read_text(encoding="utf-8")
        md = md.replace("# OpIRBench leaderboard", "### OpIRBench leaderboard", 1)
        L += [md, f"Files: `{_rel(Path(boards[s]['csv']), out)}`, `{_rel(Path(boards[s]['json']), out)}`", ""]
    L += _headroom(results)
    L += ["## Figures: held-out samples", "",
          "Per split, for the first test sample of up to two systems: the true and predicted operando heatmaps "
          "(x_t - x_0), waterfalls, difference spectra (true solid, predicted dashed) and band-centroid drift; "
          "and the predicted solvent/SEI streams against the true synthetic contributions.", ""]
    for s in figs:
        L.append(f"### split `{s}`")
        L.append("")
        for p in figs[s]:
            p = Path(p)
            if any(k in p.name for k in ("heatmap", "difference", "streams", "centroid")):
                L.append(f"![{p.stem}]({_rel(p, out)})")
        L.append("")
    if _FIGURE_ERRORS:
        L += ["Figures that failed: " + "; ".join(_FIGURE_ERRORS), ""]
    name = name or out.name
    how = {"quick": "--quick", "pretrained": "--pretrained"}.get(summary["preset"], f"--preset {summary['preset']}")
    bench = runs["random"].model_dir if summary["preset"] == "pretrained" else _rel(runs["random"].model_dir, out)
    L += ["## Reproduce", "", "```", f"abcc demo --out {name} {how}",
          f"abcc bench --model {bench} --split random", "```", ""]
    return "\n".join(L)
