"""The tables of ``abcc bench --all`` (``abcc_fast.apps.suite``): one row per (split, entry) with mean
and std over seeds, as Markdown (``table.md``), CSV (``table.csv``) and the per-frame MSE figures."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..opirbench.leaderboard import per_frame_table
from ..opirbench.metrics import METRIC_KEYS
from ..opirbench.report import per_frame_figure

PER_FRAME_COLUMNS = 4            # table.md / table.csv: MSE of frames 1..4 as columns (all frames in table.json)


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
         "two-stream terms off), `abcc_no_labels` (no SEI labels: the SEI stream learnt from the frames alone), "
         "`abcc_no_extents` (the SEI stream a free mix of the product templates at every tau instead of the reaction "
         "extents, and no labels), "
         "`abcc_steps<N>` (the `abcc_mf_sources` models predicting with N chained jumps); "
         "variant `abcc_chemistry` (SEI templates of the products the cell can form only, the solvent templates of "
         "the cell's own components, no learned residual); *without "
         "Chemical Flow* is `meanflow_noise` (noise-to-data MeanFlow on the baselines' conv trunk)",
         *[f"- `{e}` not run: {why}" for e, why in (setup.get("unchanged_ablations") or {}).items()],
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
    table = per_frame_table([(r["entry"], r.get("mse_per_frame_mean")) for r in rs], first="entry")
    return ["MSE per frame (mean over seeds; groups: mean over their frames)", "", *table] if table else []


def per_frame_figures(rows: list, splits: Sequence[str], out: Path) -> list[Path]:
    """figures/mse_per_frame_<split>.png: the MSE per frame of every row (mean over seeds)."""
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


