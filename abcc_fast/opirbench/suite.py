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
  abcc_mf_sources   also trained from MeanFlow sources r > 0 (ablation "mf_sources")
  abcc_steps<N>     the trained ``abcc_mf_sources`` model, predicting with N chained jumps
                    (``ABCC.predict(steps=N)``) instead of one: one step vs several, no retraining
  meanflow_noise    without Chemical Flow: noise-to-data MeanFlow (the baseline of that name; it runs on
                    the baselines' convolutional trunk, not the ABCC backbone)
  mlp, cnn, gru, patchtst, dlinear, convlstm, simvp, cfm   the other OpIRBench baselines

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

import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .._atomic import write_text
from .metrics import ALL_METRICS, METRIC_DEFINITIONS, METRIC_KEYS, METRICS_VERSION, check_metric_names

SPLITS = ("random", "system")
ABLATION_ENTRIES = {"abcc": "abcc", "abcc_no_physics": "no_physics", "abcc_no_spectrum": "no_spectrum",
                    "abcc_one_stream": "one_stream", "abcc_mf_sources": "mf_sources"}
BASELINE_ENTRIES = ("mlp", "cnn", "gru", "patchtst", "dlinear", "convlstm", "simvp", "cfm", "meanflow_noise")
ENTRIES = tuple(ABLATION_ENTRIES) + ("abcc_steps4",) + BASELINE_ENTRIES
PRESETS = ("tiny", "cpu", "gpu")
SWEEP_LR = (0.5, 1.0, 2.0)       # factors of the preset's lr tried on the validation part (every trained entry)
PER_FRAME_COLUMNS = 4            # table.md / table.csv: MSE of frames 1..4 as columns (all frames in table.json)
ORACLE_REPLICATES = 16
_STEPS_RE = re.compile(r"^abcc_steps([0-9]+)$")
# setup fields that must agree when an output directory is resumed
_RESUME_KEYS = ("preset", "train_config", "model_presets", "sweep", "sweep_lr", "sweep_entries", "dataset_manifest_sha256",
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
    from ..train._cli import PRESETS as CONFIG_PRESETS  # CLI name -> config preset (no torch import)

    name = CONFIG_PRESETS[preset]
    return {"abcc": name, "baseline": name}


def train_config(preset: str, steps: Optional[int] = None, max_time_s: Optional[float] = None):
    """The budget every entry trains under: the preset's TrainConfig with ``steps`` overridden when
    given (the same for all entries); ``max_time_s``: an optional wall-clock safety cap (ends a run
    early and marks it capped; never changes the schedule)."""
    from ..train.trainer import TrainConfig

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


def _build_model(entry: str, ds, split: str, presets: dict):
    from ..model import ABCC, ABCCConfig
    from ..model.baselines import get

    if entry in ABLATION_ENTRIES:
        return ABCC(ABCCConfig.from_dataset(ds, split, preset=presets["abcc"]).ablation(ABLATION_ENTRIES[entry]))
    return get(entry).from_dataset(ds, split, preset=presets["baseline"])


# --------------------------------------------------------------------------------------------
# bookkeeping
# --------------------------------------------------------------------------------------------
def _git_sha() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
        return sha + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _machine() -> dict:
    m = {"node": platform.node(), "processor": platform.processor() or platform.machine(),
         "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
         "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
         "torch_threads": torch.get_num_threads()}
    try:
        m["load_average_1min"] = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        pass
    return m


def _write_json(path: Path, obj) -> Path:
    from .leaderboard import _clean

    return write_text(path, json.dumps(_clean(obj), indent=1, allow_nan=False) + "\n")


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
        import dataclasses

        from ..train.trainer import train

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
        from . import protocol

        m = _STEPS_RE.match(entry)
        if m:
            from ..model import ABCC
            from ..model.abcc import ABCCPredictor

            device = "cuda" if torch.cuda.is_available() else "cpu"
            fn = ABCCPredictor(ABCC.from_pretrained(model_dir, map_location=device), str(model_dir),
                               steps=int(m.group(1)))
        else:
            fn = protocol.load_predictor(str(model_dir))
        n_params = sum(p.numel() for p in fn.model.parameters()) if hasattr(fn, "model") else None
        return fn, n_params

    # -- the validation sweep ------------------------------------------------------------------
    def sweep_lr(self, entry: str, split: str, factors: Sequence[float]) -> float:
        """The lr (factor x the preset's) with the lowest val-part MSE, seed 0; cached in sweep/."""
        from .protocol import evaluate

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
        from .protocol import evaluate

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
        from .protocol import evaluate

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


# --------------------------------------------------------------------------------------------
# aggregation and output
# --------------------------------------------------------------------------------------------
def _metric_keys(records: list) -> list[str]:
    keys = []
    for ks in METRIC_KEYS.values():
        keys += [k for k in ks if any(k in r["metrics"] for r in records)]
    return keys


def aggregate(records: list) -> list[dict]:
    """One row per (split, entry): mean and std (ddof 1; 0 for a single seed) over seeds of every
    metric, the seeds, and the training budget actually used (steps, seconds per step)."""
    keys = _metric_keys(records)
    groups: dict = {}
    for r in records:
        groups.setdefault((r["split"], r["entry"]), []).append(r)
    rows = []
    for (split, entry), rs in groups.items():
        row = {"split": split, "entry": entry, "kind": rs[0]["kind"], "n_seeds": len(rs),
               "seeds": [r["seed"] for r in rs], "n_samples": rs[0]["n_samples"], "n_params": rs[0].get("n_params")}
        for k in keys:
            vals = np.array([r["metrics"][k] for r in rs if k in r["metrics"]], dtype=np.float64)
            row[f"{k}_mean"] = float(vals.mean()) if vals.size else None
            row[f"{k}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else (0.0 if vals.size else None)
        frames = [r["mse_per_frame"] for r in rs if r.get("mse_per_frame")]
        if frames and len({len(f) for f in frames}) == 1:     # results of older versions have none
            arr = np.array(frames, dtype=np.float64)
            row["mse_per_frame_mean"] = arr.mean(0).tolist()
            row["mse_per_frame_std"] = (arr.std(0, ddof=1) if len(arr) > 1 else np.zeros(arr.shape[1])).tolist()
            for k in range(1, min(PER_FRAME_COLUMNS, arr.shape[1]) + 1):
                row[f"mse_f{k}_mean"] = float(arr[:, k - 1].mean())
                row[f"mse_f{k}_std"] = float(arr[:, k - 1].std(ddof=1)) if len(arr) > 1 else 0.0
        trs = [r["training"] for r in rs if r.get("training")]
        if trs:
            row["lr"] = trs[0]["lr"]
            row["capped_runs"] = sum(bool(t.get("capped")) for t in trs)
            row["steps_done_mean"] = float(np.mean([t["steps_done"] for t in trs]))
            sps = [t["s_per_step"] for t in trs if t.get("s_per_step")]
            row["s_per_step_mean"] = float(np.mean(sps)) if sps else None
            row["train_time_s_mean"] = float(np.mean([t["train_time_s"] for t in trs]))
        rows.append(row)
    return rows


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def to_markdown(rows: list, setup: dict) -> str:
    heads = [ks[0] for ks in METRIC_KEYS.values() if any(f"{ks[0]}_mean" in r for r in rows)]
    budget = setup["train_config"]
    L = ["# OpIRBench: full table (`abcc bench --all`)", "",
         f"- dataset `{setup['dataset']['name']}`: {setup['dataset']['samples']} samples, T={setup['dataset']['T']}, "
         f"W={setup['dataset']['W']}, manifest sha256 `{setup['dataset_manifest_sha256'][:16]}...`",
         f"- budget (every trained entry): preset `{setup['preset']}`, {budget['steps']} steps of batch "
         f"{budget['batch_size']}" + _cap_note(setup)
         + f", lr {budget['lr']:g} (AdamW, warm-up {budget['warmup_steps']} + cosine, EMA {budget['ema_decay']:g}; "
         "the EMA weights are scored)",
         f"- model presets: ABCC `{setup['model_presets']['abcc']}`, baselines `{setup['model_presets']['baseline']}`",
         "- validation sweep: " + (f"{_swept(setup)}, lr x {', '.join(f'{f:g}' for f in setup['sweep_lr'])} on the val "
                                   "part (MSE, seed 0); the chosen lr is in the `lr` column" if setup["sweep"] else "off"),
         f"- seeds {setup['seeds']}; mean ± std over seeds (sample std); references are deterministic single rows",
         f"- git `{setup.get('git_sha') or 'unknown'}`; machine {setup['machine'].get('processor')}, "
         f"{setup['machine'].get('cpu_count')} CPUs, GPU {setup['machine'].get('cuda') or 'none'}, torch "
         f"{setup['machine'].get('torch')}",
         f"- metrics {setup['metrics_version']}: z-scored with the training split's statistics, frames 1..T-1, lower "
         "is better; DILATE can be negative (soft-DTW entropy term)",
         "- ablations: `abcc_no_physics` (mass conservation, peak drift/acceleration off), `abcc_no_spectrum` (SEI "
         "non-negative/growing, smoothness, no new solvent bands off), `abcc_one_stream` (SEI velocity 0 and the "
         "two-stream terms off), `abcc_steps<N>` (the `abcc` models predicting with N chained jumps); *without "
         "Chemical Flow* is `meanflow_noise` (noise-to-data MeanFlow on the baselines' conv trunk)",
         "- `steps`: steps trained (mean over seeds); `s/step`: training wall time / steps of the run (evaluation and "
         "checkpoints included): the wall clock beside the step budget; `f1`..`f4`: MSE of frames 1-4 alone (more "
         "frames below each table)", ""]
    for split in setup["splits"]:
        rs = [r for r in rows if r["split"] == split]
        if not rs:
            continue
        rs.sort(key=lambda r: (r["kind"] != "reference", r.get("mse_mean") if r.get("mse_mean") is not None else math.inf))
        L += [f"## split `{split}` (test part, {rs[0]['n_samples']} samples)", ""]
        n_f = max((k for k in range(1, PER_FRAME_COLUMNS + 1) if any(f"mse_f{k}_mean" in r for r in rs)), default=0)
        head = ["entry", "kind", "seeds"] + heads + [f"f{k}" for k in range(1, n_f + 1)] + ["lr", "steps", "s/step"]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "|".join("---" for _ in head) + "|")
        for r in rs:
            cells = [r["entry"], r["kind"], str(r["n_seeds"]) if r["kind"] != "reference" else "-"]
            for k in heads:
                m, s = r.get(f"{k}_mean"), r.get(f"{k}_std")
                cells.append("n/a" if m is None else (_fmt(m) if r["kind"] == "reference" else f"{_fmt(m)} ± {_fmt(s, 2)}"))
            cells += [_fmt(r.get(f"mse_f{k}_mean")) for k in range(1, n_f + 1)]
            steps = _fmt(r.get("steps_done_mean"), 5) if r.get("steps_done_mean") is not None else "-"
            if r.get("capped_runs"):
                steps += f" (capped: {r['capped_runs']} run{'s' if r['capped_runs'] > 1 else ''})"
            cells += [_fmt(r.get("lr"), 3) if r.get("lr") is not None else "-", steps,
                      _fmt(r.get("s_per_step_mean"), 3) if r.get("s_per_step_mean") is not None else "-"]
            L.append("| " + " | ".join(cells) + " |")
        L.append("")
        L += _per_frame_table(rs)
    return "\n".join(L)


def _cap_note(setup: dict) -> str:
    """The wall-clock cap of a setup, if any. Setups of older versions had a wall-clock budget that
    also drove the learning-rate schedule; they still render, labelled as such."""
    cap = (setup.get("train_config") or {}).get("max_time_s")
    if not cap:
        return ""
    if "budget_kind" not in setup:
        return f" or {cap:g} s of wall clock, whichever came first (an older wall-clock budget)"
    return f", wall-clock safety cap {cap:g} s (a run it ended early is marked capped)"


def _swept(setup: dict) -> str:
    return "every trained entry" if setup.get("sweep_entries") == "all" else "baselines only"


def _per_frame_table(rs: list) -> list[str]:
    """Markdown: MSE per frame (frames 1-4, then groups, mean over seeds) of the rows that have it."""
    from .leaderboard import per_frame_table

    table = per_frame_table([(r["entry"], r.get("mse_per_frame_mean")) for r in rs], first="entry")
    return ["MSE per frame (mean over seeds; groups: mean over their frames)", "", *table] if table else []


def per_frame_figures(rows: list, splits: Sequence[str], out: Path) -> list[Path]:
    """figures/mse_per_frame_<split>.png: the MSE per frame of every row (mean over seeds)."""
    from .report import per_frame_figure

    paths = []
    for split in splits:
        curves = {r["entry"]: r["mse_per_frame_mean"] for r in rows
                  if r["split"] == split and r.get("mse_per_frame_mean")}
        if curves:
            paths.append(per_frame_figure(curves, out / "figures" / f"mse_per_frame_{split}.png",
                                          f"MSE per frame, split '{split}' (test part, mean over seeds)"))
    return paths


def to_csv(rows: list) -> str:
    cols = ["split", "entry", "kind", "n_seeds", "n_samples", "n_params", "lr", "steps_done_mean", "s_per_step_mean",
            "train_time_s_mean", "capped_runs"]
    metric_cols = [c for ks in METRIC_KEYS.values() for k in ks for c in (f"{k}_mean", f"{k}_std")
                   if any(c in r for r in rows)]
    metric_cols += [c for k in range(1, PER_FRAME_COLUMNS + 1) for c in (f"mse_f{k}_mean", f"mse_f{k}_std")
                    if any(c in r for r in rows)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols + metric_cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in cols + metric_cols])
    return buf.getvalue()


def best_models(rows: list, split: str, k: int = 3) -> list[str]:
    """The k trained entries with the lowest mean test MSE on ``split`` (references excluded)."""
    rs = [r for r in rows if r["split"] == split and r["kind"] != "reference" and r.get("mse_mean") is not None]
    return [r["entry"] for r in sorted(rs, key=lambda r: r["mse_mean"])[:k]]


def best_three_figure(suite: _Suite, rows: list, split: str, lrs: dict) -> list[Path]:
    """The best three models' predictions on the same held-out samples: per-model figures from
    ``report.write_figures`` (best3/<split>/figures/) and one overview, figures/best3_<split>.png, tiling
    their difference spectra (rows: samples, columns: models)."""
    import matplotlib.pyplot as plt

    from ..viz import save_figure
    from .report import _slug, write_figures

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
            f = fig_root / "figures" / f"{tag}_difference_{_slug(e)}.png"
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
    from .. import data as _data
    from .leaderboard import dataset_info, manifest_sha256
    from .protocol import Frame0, Persistence

    entries = check_entries(entries)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or int(seeds) < 1:
        raise ValueError(f"seeds must be an integer >= 1 (the seeds 0..seeds-1 are run), got {seeds!r}")
    splits = [splits] if isinstance(splits, str) else list(splits)
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ValueError(f"splits must be among {', '.join(SPLITS)}, got {splits}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    sweep_lr = [float(f) for f in sweep_lr]
    if sweep and (not sweep_lr or any(not (f > 0 and math.isfinite(f)) for f in sweep_lr)):
        raise ValueError(f"sweep_lr factors must be positive numbers, got {sweep_lr}")
    metrics = list(check_metric_names(metrics))
    tcfg = train_config(preset, steps, max_time_s)
    presets = model_presets(preset)

    if dataset is None:
        ds = _data.default_dataset(progress=progress)
    elif isinstance(dataset, (str, os.PathLike)):
        if not Path(dataset).exists():
            raise FileNotFoundError(f"dataset directory not found: {dataset}")
        ds = _data.load(dataset)
    else:
        ds = dataset
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    setup = {"created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "preset": preset, "train_config": tcfg.to_json(), "model_presets": presets,
             "budget_overrides": {"steps": steps, "max_time_s": max_time_s}, "budget_kind": "steps",
             "sweep": bool(sweep), "sweep_lr": sweep_lr if sweep else [], "sweep_entries": "all" if sweep else None,
             "metrics": metrics,
             "metrics_version": METRICS_VERSION, "metric_definitions": METRIC_DEFINITIONS,
             "entries": entries, "splits": splits, "seeds": list(range(int(seeds))),
             "dataset": {**dataset_info(ds, "random"), "samples": len(ds)},
             "dataset_manifest_sha256": manifest_sha256(ds), "git_sha": _git_sha(), "machine": _machine()}
    setup_path = out / "suite_setup.json"
    if setup_path.is_file():
        old = json.loads(setup_path.read_text())
        diff = [k for k in _RESUME_KEYS if json.dumps(old.get(k), sort_keys=True) != json.dumps(
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

    suite = _Suite(out, ds, presets, tcfg, metrics, progress)
    is_opirsim = (ds.manifest.get("generator") or {}).get("name") == "OpIRSim"
    records, failures, lrs = [], [], {}
    n_jobs = len(splits) * len(entries) * int(seeds)
    job = 0
    _say(f"{len(entries)} entries x {len(splits)} splits x {seeds} seeds = {n_jobs} scored models; budget "
         f"{tcfg.steps} steps each" + (f" (wall-clock safety cap {tcfg.max_time_s:g} s)" if tcfg.max_time_s else "")
         + f" (preset {preset})")
    for split in splits:
        _say(f"split '{split}': references")
        refs = [("persistence", Persistence()), ("frame0", Frame0())]
        if is_opirsim and oracle_replicates > 0:
            from .oracle import SimulatorOracle

            refs.append(("oracle", SimulatorOracle(ds.manifest, replicates=int(oracle_replicates))))
        for name, fn in refs:
            try:
                records.append(suite.reference(name, split, fn))
            except Exception as err:  # noqa: BLE001 -- one failure must not cost an hours-long table
                failures.append({"split": split, "entry": name, "seed": None, "error": f"{type(err).__name__}: {err}"})
                _say(f"  FAILED {name} on {split}: {type(err).__name__}: {err}")
        for entry in entries:
            base = _trained_entry(entry)
            lr = float(tcfg.lr)
            if sweep:
                try:
                    lr = suite.sweep_lr(base, split, sweep_lr)
                except Exception as err:  # noqa: BLE001
                    failures.append({"split": split, "entry": entry, "seed": 0, "error": f"sweep: {type(err).__name__}: {err}"})
                    _say(f"  FAILED sweep of {entry} on {split}: {type(err).__name__}: {err}")
                    job += int(seeds)
                    continue
            lrs[(base, split)] = lr
            for seed in range(int(seeds)):
                job += 1
                done = _result_path(out, split, entry, seed).is_file()
                _say(f"[{job}/{n_jobs}] {split} / {entry} / seed {seed}" + (" (done, skipped)" if done else "")
                     + f"  [{(time.perf_counter() - t0) / 60:.1f} min so far]")
                try:
                    records.append(suite.score(entry, split, seed, lr))
                except Exception as err:  # noqa: BLE001
                    failures.append({"split": split, "entry": entry, "seed": seed, "error": f"{type(err).__name__}: {err}"})
                    _say(f"  FAILED {entry} on {split} seed {seed}: {type(err).__name__}: {err}")
    if not records:
        raise RuntimeError("abcc bench --all: nothing was scored; failures: "
                           + "; ".join(f"{f['entry']}/{f['split']}: {f['error']}" for f in failures))

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
