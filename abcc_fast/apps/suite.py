"""``abcc bench --all``: the full OpIRBench table.

Every *entry* (ABCC, its ablations, every baseline) is trained on each split (``random``,
``system``) with each seed, under one step budget (a ``TrainConfig`` preset, optionally with
``steps`` overridden: the same for every entry, and written into every output), then scored on the
split's test part with every metric. The table gives mean +- std over seeds, with the references
``persistence``, ``frame0`` and (OpIRSim data) the simulator ``oracle`` as rows, the wall clock
(s/step) beside the steps, and the MSE of frames 1-4 and of later groups of frames.

Budgets are steps, so a table does not depend on the load of the machine it ran on. An optional
wall-clock cap (``max_time_s``) only ends a run early, with a warning; such a run is marked
*capped* in every output (its scores do not compare with full runs).

Entries (``ENTRIES``):

  abcc              ABCC as configured by the preset
  abcc_no_physics   without the physics constraints (ABCCConfig.ablation("no_physics"))
  abcc_no_spectrum  without the spectrum constraints (ablation "no_spectrum")
  abcc_one_stream   one stream instead of two (ablation "one_stream": SEI velocity 0)
  abcc_no_labels    the SEI stream trained through the frames alone (ablation "no_labels": w_sei_label 0)
  abcc_no_extents   the SEI stream a free template mix per tau, not the reaction extents (ablation "no_extents")
  abcc_mf_sources   also trained from MeanFlow sources r > 0 (ablation "mf_sources")
  abcc_chemistry    variant: the SEI head only the products the cell's reactions can form, the solvent
                    head only the cell's own components' bands
  abcc_steps<N>     the trained ``abcc_mf_sources`` model, predicting with N chained jumps
                    (``ABCC.predict(steps=N)``) instead of one: one step vs several, no retraining
  meanflow_noise    without Chemical Flow: noise-to-data MeanFlow (the baseline of that name; it runs on
                    the baselines' convolutional trunk, not the ABCC backbone)
  mlp, cnn, gru, patchtst, dlinear, convlstm, simvp, cfm   the other OpIRBench baselines

An ablation that changes nothing in the preset (what it removes is off there: the labels of the tiny
preset, say) would train the ``abcc`` model again under another name; it is left out, and the table
and ``suite_setup.json`` ("unchanged_ablations") say so.

Validation sweep (``sweep=True``, every trained entry: ABCC, its ablations and the baselines
alike): each is trained with seed 0 at lr x ``sweep_lr`` factors of the preset's lr; the lr with
the lowest val-part MSE is kept for every seed (its seed-0 run *is* the seed-0 run of the table:
same config, same seed). ``abcc_steps<N>`` scores the ``abcc_mf_sources`` runs, so it shares their lr.

Output directory (resumable: a (split, entry, seed) whose ``results/...json`` exists is skipped;
an interrupted training run resumes from its last checkpoint)::

    suite_setup.json                    budget, seeds, dataset sha, git sha, machine (checked on resume)
    runs/<split>/<entry>/lr<lr>/seed<k>/   trainer runs (model/, log.csv, train_result.json)
    results/<split>/<entry>/seed<k>.json   test scores of one trained model
    results/<split>/reference/<name>.json  the references
    sweep/<split>/<entry>.json          the validation sweep and its choice
    table.md, table.csv, table.json     the aggregated table (mean +- std over seeds)
    figures/best3_<split>.png           the best three models (test MSE) on the same held-out samples
    figures/mse_per_frame_<split>.png   MSE per frame of every row (mean over seeds)
    best3/<split>/figures/...           their per-model heatmaps / difference spectra (report.write_figures)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import data, provenance
from .._atomic import write_text
from ..data.manifest import dataset_identity
from ..model import ABCC, ABCCConfig, ABCCPredictor
from ..model.baselines import BASELINES, get
from ..opirbench.leaderboard import clean_json, dataset_info, manifest_sha256
from ..opirbench.metrics import ALL_METRICS, METRIC_DEFINITIONS, METRICS_VERSION, check_metric_names
from ..opirbench.oracle import SimulatorOracle
from ..opirbench.protocol import Frame0, Persistence, evaluate
from ..opirbench.report import slug, write_figures
from ..presets import CLI_PRESETS, check_cli_preset
from ..train.predict import load_predictor
from ..train.trainer import TrainConfig, train
from ..viz import save_figure
from .suite_table import PER_FRAME_COLUMNS, aggregate, best_models, per_frame_figures, to_csv, to_markdown  # noqa: F401

SPLITS = ("random", "system")
ABLATION_ENTRIES = {"abcc": "abcc", "abcc_no_physics": "no_physics", "abcc_no_spectrum": "no_spectrum",
                    "abcc_one_stream": "one_stream", "abcc_no_labels": "no_labels", "abcc_no_extents": "no_extents",
                    "abcc_mf_sources": "mf_sources",
                    "abcc_chemistry": "chemistry"}
BASELINE_ENTRIES = tuple(BASELINES)
ENTRIES = tuple(ABLATION_ENTRIES) + ("abcc_steps4",) + BASELINE_ENTRIES
SWEEP_LR = (0.5, 1.0, 2.0)       # factors of the preset's lr tried on the validation part (every trained entry)
ORACLE_REPLICATES = 16
_STEPS_RE = re.compile(r"^abcc_steps([0-9]+)$")
# setup fields that must agree when an output directory is resumed
# the dataset by identity (manifest without shard byte hashes: a resume on a CPU whose numpy rounds a float32
# ulp differently joins the same suite; data.manifest.dataset_identity); setups older than identities by sha256
_RESUME_KEYS = ("preset", "train_config", "model_presets", "sweep", "sweep_lr", "sweep_entries", "dataset_identity",
                "metrics")


def _say(msg: str) -> None:
    print(f"[abcc bench --all {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# entries and budget
# --------------------------------------------------------------------------------------------
def entry_kind(entry: str) -> str:
    """reference | abcc | ablation | baseline."""
    if entry in ("persistence", "frame0", "oracle"):
        return "reference"
    if entry == "abcc":
        return "abcc"
    if entry in ABLATION_ENTRIES or _STEPS_RE.match(entry):
        return "ablation"
    return "baseline"


def check_entries(entries: Optional[Sequence[str]]) -> list[str]:
    """The entry list, validated (unknown names stop with the list of known ones)."""
    if entries is None:
        return list(ENTRIES)
    if isinstance(entries, str):
        entries = [e for e in entries.split(",")]
    out = []
    for e in entries:
        e = str(e).strip()
        if not e:
            continue
        m = _STEPS_RE.match(e)
        if m and int(m.group(1)) < 1:
            raise ValueError(f"entry {e!r}: abcc_steps<N> needs N >= 1")
        if e not in ENTRIES and e not in ABLATION_ENTRIES and not m:
            raise ValueError(f"unknown entry {e!r}; choose among {', '.join(ENTRIES)} (or abcc_steps<N>, N >= 1)")
        if e not in out:
            out.append(e)
    if not out:
        raise ValueError("no entries given; choose among " + ", ".join(ENTRIES))
    return out


def model_presets(preset: str) -> dict:
    """Model config preset per family for a suite preset: tiny -> tiny, cpu -> cpu_default,
    gpu -> gpu_default (ABCC and every baseline)."""
    name = CLI_PRESETS[preset]
    return {"abcc": name, "baseline": name}


def train_config(preset: str, steps: Optional[int] = None, max_time_s: Optional[float] = None):
    """The budget every entry trains under: the preset's TrainConfig with ``steps`` overridden when
    given (the same for all entries); ``max_time_s``: an optional wall-clock safety cap (ends a run
    early and marks it capped; never changes the schedule)."""
    over = {"tensorboard": False}
    if steps is not None:
        over["steps"] = int(steps)
    if max_time_s is not None:
        over["max_time_s"] = float(max_time_s)
    return TrainConfig.preset_named(preset, **over).validate()


def _trained_entry(entry: str) -> str:
    """The entry whose trained model ``entry`` evaluates (abcc_steps<N> -> abcc_mf_sources: chained
    jumps start from predicted states at r > 0, which only a model trained from such sources knows)."""
    return "abcc_mf_sources" if _STEPS_RE.match(entry) else entry


def unchanged_ablations(entries: Sequence[str], ds, presets: dict) -> dict:
    """{entry: why} for the ablation entries whose overrides leave the preset's ABCC config as it is
    (what they remove is off in that preset, e.g. the extents in the gpu preset): training them would
    repeat the ``abcc`` runs under another name, so the suite leaves them out and says so."""
    base = ABCCConfig.from_dataset(ds, "random", preset=presets["abcc"])
    return {e: f"the same configuration as abcc in preset {presets['abcc']} (nothing of it is on there)"
            for e in entries if e != "abcc" and e in ABLATION_ENTRIES and base.ablation(ABLATION_ENTRIES[e]) == base}


def _build_model(entry: str, ds, split: str, presets: dict):
    if entry in ABLATION_ENTRIES:
        return ABCC(ABCCConfig.from_dataset(ds, split, preset=presets["abcc"]).ablation(ABLATION_ENTRIES[entry]))
    return get(entry).from_dataset(ds, split, preset=presets["baseline"])


# --------------------------------------------------------------------------------------------
# bookkeeping
# --------------------------------------------------------------------------------------------
def _machine() -> dict:
    info = provenance.run_info()
    m = provenance.pick(info, "node", "processor", "cpu_count", "python", "torch", "cuda", "torch_threads")
    if info["load_average_1_5_15"] is not None:
        m["load_average_1min"] = info["load_average_1_5_15"][0]
    return m


def _write_json(path: Path, obj) -> Path:
    return write_text(path, json.dumps(clean_json(obj), indent=1, allow_nan=False) + "\n")


def _lr_tag(lr: float) -> str:
    return f"lr{lr:.3g}"


def _run_dir(out: Path, split: str, entry: str, lr: float, seed: int) -> Path:
    return out / "runs" / split / entry / _lr_tag(lr) / f"seed{seed}"


def _result_path(out: Path, split: str, entry: str, seed: int) -> Path:
    return out / "results" / split / entry / f"seed{seed}.json"


class _Suite:
    def __init__(self, out: Path, ds, presets: dict, tcfg, metrics, progress: bool):
        self.out, self.ds, self.presets, self.tcfg, self.metrics, self.progress = out, ds, presets, tcfg, metrics, progress

    # -- training -------------------------------------------------------------------------------
    def trained(self, entry: str, split: str, seed: int, lr: float) -> tuple[Path, dict]:
        """(model dir, training summary) of ``entry`` on ``split`` with ``seed`` and ``lr``: trained
        now, resumed from its last checkpoint, or loaded when its run has finished."""
        run = _run_dir(self.out, split, entry, lr, seed)
        done = run / "train_result.json"
        if not done.is_file():
            cfg = dataclasses.replace(self.tcfg, seed=int(seed), lr=float(lr))
            torch.manual_seed(int(seed))
            model = _build_model(entry, self.ds, split, self.presets)
            _say(f"  training {entry} on {split} (seed {seed}, lr {lr:g}; budget {cfg.steps} steps"
                 + (f", cap {cfg.max_time_s:g} s" if cfg.max_time_s else "") + f") -> {run}")
            res = train(model, self.ds, split=split, config=cfg, out_dir=run, resume=True, progress=self.progress)
            _say(f"  {entry}: {res.steps_done} steps in {res.total_time_s:.1f} s"
                 + (f" ({res.s_per_step:.3g} s/step)" if res.s_per_step else "")
                 + (" -- CAPPED by the wall-clock cap before its step budget" if res.capped else ""))
        tr = json.loads(done.read_text())
        steps = int(tr.get("steps_done") or 0)
        total = float(tr.get("total_time_s") or tr.get("wall_time_s") or 0.0)
        summary = {"run_dir": str(run), "lr": float(lr), "seed": int(seed), "steps_done": steps,
                   "steps_budget": tr.get("steps_budget"), "stopped_by": tr.get("stopped_by"),
                   # "time": a run of the older wall-clock budget that the clock ended
                   "capped": tr.get("stopped_by") in ("time_cap", "time"), "train_time_s": total,
                   "s_per_step": total / steps if steps else None, "best_val_loss": tr.get("best_val_loss"),
                   "final_val_loss": tr.get("final_val_loss")}
        return run / "model", summary

    def predictor(self, entry: str, model_dir: Path):
        m = _STEPS_RE.match(entry)
        if m:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            fn = ABCCPredictor(ABCC.from_pretrained(model_dir, map_location=device), str(model_dir),
                               steps=int(m.group(1)))
        else:
            fn = load_predictor(str(model_dir))
        n_params = sum(p.numel() for p in fn.model.parameters()) if hasattr(fn, "model") else None
        return fn, n_params

    # -- the validation sweep ------------------------------------------------------------------
    def sweep_lr(self, entry: str, split: str, factors: Sequence[float]) -> float:
        """The lr (factor x the preset's) with the lowest val-part MSE, seed 0; cached in sweep/."""
        path = self.out / "sweep" / split / f"{entry}.json"
        lrs = [float(self.tcfg.lr) * float(f) for f in factors]
        if path.is_file():
            rec = json.loads(path.read_text())
            if [round(x, 12) for x in rec.get("lrs", [])] == [round(x, 12) for x in lrs]:
                return float(rec["best_lr"])
        rows = []
        for lr in lrs:
            model_dir, tr = self.trained(entry, split, 0, lr)
            fn, _ = self.predictor(entry, model_dir)
            val = evaluate(fn, self.ds, split, "val", metrics=["mse"], progress=False, name=entry)
            rows.append({"lr": lr, "val_mse": val.metrics["mse"], "steps_done": tr["steps_done"]})
            _say(f"  sweep {entry}/{split}: lr {lr:g} -> val MSE {val.metrics['mse']:.5g}")
        best = min(rows, key=lambda r: (r["val_mse"] if math.isfinite(r["val_mse"]) else math.inf))
        _write_json(path, {"entry": entry, "split": split, "criterion": "val-part MSE (z-units), seed 0",
                           "lrs": lrs, "factors": list(factors), "settings": rows, "best_lr": best["lr"]})
        return float(best["lr"])

    # -- one (entry, split, seed) ---------------------------------------------------------------
    def score(self, entry: str, split: str, seed: int, lr: float) -> dict:
        path = _result_path(self.out, split, entry, seed)
        if path.is_file():
            return json.loads(path.read_text())
        model_dir, tr = self.trained(_trained_entry(entry), split, seed, lr)
        fn, n_params = self.predictor(entry, model_dir)
        res = evaluate(fn, self.ds, split, "test", metrics=self.metrics, progress=self.progress, name=entry)
        rec = {"entry": entry, "kind": entry_kind(entry), "split": split, "part": "test", "seed": int(seed),
               "n_samples": res.n_samples, "metrics": res.metrics, "eval_time_s": res.wall_time_s,
               "config_hash": res.config_hash, "n_params": n_params, "model_dir": str(model_dir),
               "training": tr, "metrics_version": METRICS_VERSION, **_per_frame_record(res)}
        _write_json(path, rec)
        _say("  " + res.summary())
        return rec

    def reference(self, name: str, split: str, fn) -> dict:
        path = self.out / "results" / split / "reference" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        res = evaluate(fn, self.ds, split, "test", metrics=self.metrics, progress=self.progress, name=name)
        rec = {"entry": name, "kind": "reference", "split": split, "part": "test", "seed": None,
               "n_samples": res.n_samples, "metrics": res.metrics, "eval_time_s": res.wall_time_s,
               "config_hash": res.config_hash, "n_params": None, "training": None, "metrics_version": METRICS_VERSION,
               **_per_frame_record(res)}
        _write_json(path, rec)
        _say("  " + res.summary())
        return rec


def _per_frame_record(res) -> dict:
    """{"mse_per_frame": [frames 1..T-1]} of an EvalResult (empty when mse was not scored)."""
    return {"mse_per_frame": [float(v) for v in res.per_frame["mse"]]} if "mse" in res.per_frame else {}


def best_three_figure(suite: _Suite, rows: list, split: str, lrs: dict) -> list[Path]:
    """The best three models' predictions on the same held-out samples: per-model figures from
    ``report.write_figures`` (best3/<split>/figures/) and one overview, figures/best3_<split>.png, tiling
    their difference spectra (rows: samples, columns: models)."""
    names = best_models(rows, split)
    if not names:
        return []
    preds = []
    for e in names:
        model_dir, _ = suite.trained(_trained_entry(e), split, 0, lrs.get((_trained_entry(e), split), suite.tcfg.lr))
        preds.append((e, suite.predictor(e, model_dir)[0]))
    fig_root = suite.out / "best3" / split
    paths = write_figures(preds, suite.ds, split, fig_root, "test", max_samples=2)
    diffs = [p for p in paths if "_difference_" in p.name]
    tags = list(dict.fromkeys(p.name.split("_difference_")[0] for p in diffs))
    fig, axes = plt.subplots(len(tags), len(names), figsize=(6.0 * len(names), 3.8 * len(tags)), squeeze=False)
    for i, tag in enumerate(tags):
        for j, e in enumerate(names):
            ax = axes[i, j]
            ax.axis("off")
            f = fig_root / "figures" / f"{tag}_difference_{slug(e)}.png"
            if f.is_file():
                ax.imshow(plt.imread(f))
            if i == 0:
                ax.set_title(f"#{j + 1} {e}", fontsize=12)
    fig.suptitle(f"best three models by test MSE, split '{split}': difference spectra x_t - x_0 on the same "
                 "held-out samples (true solid, predicted dashed)", fontsize=12)
    fig.tight_layout()
    out = save_figure(fig, suite.out / "figures" / f"best3_{split}.png")
    plt.close(fig)
    return [out] + paths


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------
def run_suite(out_dir, dataset=None, *, entries: Optional[Sequence[str]] = None, splits: Sequence[str] = SPLITS,
              seeds: int = 3, preset: str = "cpu", steps: Optional[int] = None, max_time_s: Optional[float] = None,
              sweep: bool = False, sweep_lr: Sequence[float] = SWEEP_LR, metrics: Sequence[str] = ALL_METRICS,
              oracle_replicates: int = ORACLE_REPLICATES, figures: bool = True, progress: bool = True) -> dict:
    """Train, score and tabulate every entry x split x seed into ``out_dir``; returns the paths
    written ({"md", "csv", "json", "figures": [...], "failures": [...]}).

    dataset: an OpIRDataset, a dataset directory, or None (the embedded default). seeds: the seeds
    0..seeds-1. preset: tiny | cpu | gpu (TrainConfig preset; see ``model_presets``). steps /
    max_time_s: override the preset's budget for every entry. sweep: the baselines' lr sweep on the
    val part (``sweep_lr`` factors). Resumable: rerun with the same arguments to continue.

    >>> run_suite("bench_all", entries=["abcc", "mlp"], seeds=2, preset="tiny", steps=5)  # doctest: +SKIP
    """
    entries = check_entries(entries)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or int(seeds) < 1:
        raise ValueError(f"seeds must be an integer >= 1 (the seeds 0..seeds-1 are run), got {seeds!r}")
    splits = [splits] if isinstance(splits, str) else list(splits)
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ValueError(f"splits must be among {', '.join(SPLITS)}, got {splits}")
    check_cli_preset(preset)
    sweep_lr = [float(f) for f in sweep_lr]
    if sweep and (not sweep_lr or any(not (f > 0 and math.isfinite(f)) for f in sweep_lr)):
        raise ValueError(f"sweep_lr factors must be positive numbers, got {sweep_lr}")
    metrics = list(check_metric_names(metrics))
    tcfg = train_config(preset, steps, max_time_s)
    presets = model_presets(preset)
    ds = _dataset(dataset, progress)
    unchanged = unchanged_ablations(entries, ds, presets)
    entries = [e for e in entries if e not in unchanged]
    if not entries:
        raise ValueError(f"every entry asked for is the same model as abcc in preset {preset}: {', '.join(unchanged)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    setup = {"created_utc": provenance.utc_now(),
             "preset": preset, "train_config": tcfg.to_json(), "model_presets": presets,
             "budget_overrides": {"steps": steps, "max_time_s": max_time_s}, "budget_kind": "steps",
             "sweep": bool(sweep), "sweep_lr": sweep_lr if sweep else [], "sweep_entries": "all" if sweep else None,
             "metrics": metrics,
             "metrics_version": METRICS_VERSION, "metric_definitions": METRIC_DEFINITIONS,
             "entries": entries, "unchanged_ablations": unchanged, "splits": splits, "seeds": list(range(int(seeds))),
             "dataset": {**dataset_info(ds, "random"), "samples": len(ds)},
             "dataset_manifest_sha256": manifest_sha256(ds), "dataset_identity": dataset_identity(ds),
             "git_sha": provenance.git_revision(full=True, dirty=True),
             "machine": _machine()}
    _write_setup(out, setup)

    suite = _Suite(out, ds, presets, tcfg, metrics, progress)
    for e, why in unchanged.items():
        _say(f"{e} not run: {why}")
    n_jobs = len(splits) * len(entries) * int(seeds)
    _say(f"{len(entries)} entries x {len(splits)} splits x {seeds} seeds = {n_jobs} scored models; budget "
         f"{tcfg.steps} steps each" + (f" (wall-clock safety cap {tcfg.max_time_s:g} s)" if tcfg.max_time_s else "")
         + f" (preset {preset})")
    records, failures, lrs, job = [], [], {}, 0
    for split in splits:
        records += _references(suite, split, oracle_replicates, failures)
        scored, job = _entries(suite, split, entries, int(seeds), sweep_lr if sweep else None, lrs, failures,
                               (job, n_jobs, t0))
        records += scored
    if not records:
        raise RuntimeError("abcc bench --all: nothing was scored; failures: "
                           + "; ".join(f"{f['entry']}/{f['split']}: {f['error']}" for f in failures))
    return _write_tables(suite, records, failures, setup, splits, lrs, figures, t0)


def _dataset(dataset, progress: bool):
    if dataset is None:
        return data.default_dataset(progress=progress)
    if isinstance(dataset, (str, os.PathLike)):
        if not Path(dataset).exists():
            raise FileNotFoundError(f"dataset directory not found: {dataset}")
        return data.load(dataset)
    return dataset


def _write_setup(out: Path, setup: dict) -> None:
    """suite_setup.json; an existing one (a resumed run) must agree on ``_RESUME_KEYS``."""
    setup_path = out / "suite_setup.json"
    if setup_path.is_file():
        old = json.loads(setup_path.read_text())
        keys = [k if k != "dataset_identity" or k in old else "dataset_manifest_sha256" for k in _RESUME_KEYS]
        diff = [k for k in keys if json.dumps(old.get(k), sort_keys=True) != json.dumps(
            json.loads(json.dumps(setup[k], default=str)), sort_keys=True)]
        if diff:
            older = "" if "budget_kind" in old else (
                " (it was made by an older version with a wall-clock budget and a baselines-only sweep; its tables "
                "stay readable, but new runs cannot join it)")
            raise ValueError(f"{out} holds a suite run with a different setup ({', '.join(diff)} differ){older}; "
                             "resume it with the same --preset/--steps/--max-time/--sweep/--metrics/--data, or use "
                             "another --out")
        _say(f"resuming the suite in {out} (finished results are kept)")
    _write_json(setup_path, setup)


def _references(suite: _Suite, split: str, oracle_replicates: int, failures: list) -> list:
    """The reference rows of ``split``: persistence, frame0 and (OpIRSim data) the simulator oracle."""
    _say(f"split '{split}': references")
    refs = [("persistence", Persistence()), ("frame0", Frame0())]
    if (suite.ds.manifest.get("generator") or {}).get("name") == "OpIRSim" and oracle_replicates > 0:
        refs.append(("oracle", SimulatorOracle(suite.ds.manifest, replicates=int(oracle_replicates))))
    records = []
    for name, fn in refs:
        try:
            records.append(suite.reference(name, split, fn))
        except Exception as err:  # noqa: BLE001 -- one failure must not cost an hours-long table
            failures.append({"split": split, "entry": name, "seed": None, "error": f"{type(err).__name__}: {err}"})
            _say(f"  FAILED {name} on {split}: {type(err).__name__}: {err}")
    return records


def _entries(suite: _Suite, split: str, entries: list, seeds: int, sweep_lr: Optional[list], lrs: dict,
             failures: list, progress: tuple) -> tuple[list, int]:
    """Every entry x seed on ``split`` (the lr chosen by the sweep when ``sweep_lr`` is given); ``progress``
    = (jobs counted so far, jobs in all, start time). Returns the records and the new job count."""
    records = []
    job, n_jobs, t0 = progress
    for entry in entries:
        base = _trained_entry(entry)
        lr = float(suite.tcfg.lr)
        if sweep_lr is not None:
            try:
                lr = suite.sweep_lr(base, split, sweep_lr)
            except Exception as err:  # noqa: BLE001
                failures.append({"split": split, "entry": entry, "seed": 0, "error": f"sweep: {type(err).__name__}: {err}"})
                _say(f"  FAILED sweep of {entry} on {split}: {type(err).__name__}: {err}")
                job += seeds
                continue
        lrs[(base, split)] = lr
        for seed in range(seeds):
            job += 1
            done = _result_path(suite.out, split, entry, seed).is_file()
            _say(f"[{job}/{n_jobs}] {split} / {entry} / seed {seed}" + (" (done, skipped)" if done else "")
                 + f"  [{(time.perf_counter() - t0) / 60:.1f} min so far]")
            try:
                records.append(suite.score(entry, split, seed, lr))
            except Exception as err:  # noqa: BLE001
                failures.append({"split": split, "entry": entry, "seed": seed, "error": f"{type(err).__name__}: {err}"})
                _say(f"  FAILED {entry} on {split} seed {seed}: {type(err).__name__}: {err}")
    return records, job


def _write_tables(suite: _Suite, records: list, failures: list, setup: dict, splits: list, lrs: dict,
                  figures: bool, t0: float) -> dict:
    """table.json/.csv/.md and (``figures``) the per-frame and best-three figures."""
    out = suite.out
    rows = aggregate(records)
    board = {"benchmark": "OpIRBench", "suite": "abcc bench --all", "setup": setup, "rows": rows,
             "failures": failures, "wall_time_s": time.perf_counter() - t0}
    paths: dict = {"json": _write_json(out / "table.json", board), "csv": write_text(out / "table.csv", to_csv(rows)),
                   "md": write_text(out / "table.md", to_markdown(rows, setup)), "figures": [], "failures": failures}
    if figures:
        try:
            paths["figures"] += per_frame_figures(rows, splits, out)
        except Exception as err:  # noqa: BLE001 -- the table is written already
            failures.append({"split": None, "entry": "per-frame figure", "seed": None,
                             "error": f"{type(err).__name__}: {err}"})
        for split in splits:
            try:
                figs = best_three_figure(suite, rows, split, lrs)
                paths["figures"] += figs
                if figs:
                    _say(f"figure: {figs[0]}")
            except Exception as err:  # noqa: BLE001 -- the table is written already
                failures.append({"split": split, "entry": "best3 figure", "seed": None,
                                 "error": f"{type(err).__name__}: {err}"})
                _say(f"  figure for {split} failed: {type(err).__name__}: {err}")
    if failures:
        _write_json(out / "table.json", {**board, "failures": failures})
        _say(f"{len(failures)} failure(s); see table.json 'failures'")
    _say(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {paths['md']}")
    return paths
