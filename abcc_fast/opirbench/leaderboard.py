"""The OpIRBench leaderboard: Markdown + CSV + JSON, written atomically.

The JSON carries what makes a number reproducible: the sha256 of the dataset's manifest.json
bytes, the split, the seeds, the metric definitions and their version, each model's config hash
and the evaluation wall time. References (`persistence`, `frame0`) are always rows, so a reader
sees how much dynamic signal there is to predict.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import provenance
from .._atomic import write_text
from ..data.manifest import manifest_sha256
from .metrics import METRIC_DEFINITIONS, METRIC_KEYS, METRICS_VERSION
from .protocol import EvalResult, group_means

PROTOCOL_VERSION = "opirbench-v1"


def dataset_info(dataset, split: str) -> dict:
    man = dataset.manifest
    gen = man.get("generator") or {}
    splits = man.get("splits") or {}
    entry = splits.get(split) if isinstance(splits.get(split), dict) else {}
    return {
        "name": man.get("name"),
        "root": str(getattr(dataset, "root", None)) if getattr(dataset, "root", None) is not None else None,
        "manifest_sha256": manifest_sha256(dataset),
        "synthetic": bool(man.get("synthetic", False)),
        "generator": {"name": gen.get("name"), "version": gen.get("version")},
        "seed": gen.get("seed"),
        "split_seed": entry.get("seed", gen.get("seed")) if entry else gen.get("seed"),
        "held_out_systems": entry.get("held_out_systems") if entry else None,
        "T": man.get("T"),
        "W": len(dataset.wavenumber),
    }


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _columns(results: Sequence[EvalResult]) -> list[str]:
    cols = []
    for keys in METRIC_KEYS.values():
        for k in keys:
            if any(k in r.metrics for r in results):
                cols.append(k)
                if any(k + "_std" in r.metrics for r in results):
                    cols.append(k + "_std")
    return cols


def _row(r: EvalResult, cols: list[str]) -> dict:
    kind = "reference" if r.model in ("persistence", "frame0") or r.model.startswith("oracle") else "model"
    row = {"model": r.model, "kind": kind, "oracle_frame0": r.oracle_frame0, "config_hash": r.config_hash,
           "n_samples": r.n_samples, "wall_time_s": round(r.wall_time_s, 3)}
    row.update({c: r.metrics.get(c) for c in cols})
    if "mse" in r.per_frame:
        row["mse_per_frame"] = [float(v) for v in r.per_frame["mse"]]   # frames 1..T-1
    return row


def leaderboard_dict(results: Sequence[EvalResult], dataset, split: str, part: str = "test") -> dict:
    cols = _columns(results)
    return {
        "benchmark": "OpIRBench",
        "protocol_version": PROTOCOL_VERSION,
        "metrics_version": METRICS_VERSION,
        "metric_definitions": METRIC_DEFINITIONS,
        "created_utc": provenance.utc_now(),
        "split": split,
        "part": part,
        "dataset": dataset_info(dataset, split if split in ("random", "system") else split.split(":")[0]),
        "columns": cols,
        "per_frame": {"mse_per_frame": "per row: MSE (z-units, as the mse column) of each scored frame, "
                                       "frames 1..T-1 in order; its mean is the mse column"},
        "rows": [dict(_row(r, cols), per_system={str(k): v for k, v in r.per_system().items()},
                      timings_s={k: round(v, 4) for k, v in r.timings.items()},
                      folds=[{"split": f.split, "n_samples": f.n_samples, "metrics": f.metrics} for f in r.folds])
                 for r in results],
    }


def to_markdown(board: dict) -> str:
    cols = board["columns"]
    ds = board["dataset"]
    lines = [f"# OpIRBench leaderboard: split `{board['split']}` ({board['part']})", "",
             f"- dataset: `{ds['name']}` (manifest sha256 `{ds['manifest_sha256'][:16]}...`, "
             f"{'synthetic' if ds['synthetic'] else 'real'}, seed {ds['seed']}, T={ds['T']}, W={ds['W']})",
             f"- metrics: {board['metrics_version']}; z-scored with the training split's mean/std; "
             "frames 1..T-1 scored; lower is better everywhere",
             "- references: `persistence` = static spectrum for every frame; `frame0` = true frame 0 "
             "(oracle rest state) for every frame",
             "- DILATE values (soft-DTW, gamma 0.01) can be negative: the softmin's entropy term; "
             "compare rows, a perfect prediction does not score 0", ""]
    if any(str(r["model"]).startswith("oracle") for r in board["rows"]):
        lines[-1:-1] = ["- `oracle` (OpIRSim data): the simulator's Monte-Carlo mean over re-simulations with every "
                        "draw that no input reveals redrawn: the MSE-optimal prediction of these inputs (optimal "
                        "for mse; other metrics, e.g. peak_shift of a mean spectrum, need not be)"]
    head = ["model", "kind"] + cols + ["time (s)"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for row in board["rows"]:
        vals = [row["model"], row["kind"]] + [_fmt(row.get(c)) for c in cols] + [_fmt(row["wall_time_s"])]
        lines.append("| " + " | ".join(vals) + " |")
    lines.append("")
    return "\n".join(lines + per_frame_markdown(board["rows"]))


def per_frame_table(curves: Sequence[tuple[str, Sequence[float]]], first: str = "model") -> list[str]:
    """Markdown table lines: per (name, MSE of frames 1..T-1) the frames 1-4 one by one, then the mean
    over each later group of frames (``protocol.frame_groups``); [] when ``curves`` is empty."""
    curves = [(name, vals) for name, vals in curves if vals]
    if not curves:
        return []
    head = [first] + [f"frame {g}" for g in group_means(curves[0][1])]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join([str(name)] + [_fmt(v) for v in group_means(vals).values()]) + " |"
              for name, vals in curves]
    return lines + [""]


def per_frame_markdown(rows: Sequence[dict]) -> list[str]:
    """Markdown lines: MSE per frame of each leaderboard row with ``mse_per_frame``."""
    table = per_frame_table([(r["model"], r.get("mse_per_frame")) for r in rows])
    if not table:
        return []
    return ["### MSE per frame", "",
            "MSE (z-units, as the mse column) of frames 1-4 one by one, then the mean over each later group of "
            "frames (the mean over all frames is the mse column).", "", *table]


def to_csv(board: dict) -> str:
    """One row per model; the per-frame MSEs as columns mse_f1 .. mse_f<T-1>."""
    cols = ["model", "kind", "oracle_frame0", "config_hash", "n_samples"] + board["columns"] + ["wall_time_s"]
    n_frames = max((len(r.get("mse_per_frame") or []) for r in board["rows"]), default=0)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["split", "part", "manifest_sha256", "metrics_version"] + cols
               + [f"mse_f{k}" for k in range(1, n_frames + 1)])
    for row in board["rows"]:
        frames = list(row.get("mse_per_frame") or [])
        w.writerow([board["split"], board["part"], board["dataset"]["manifest_sha256"], board["metrics_version"]]
                   + ["" if row.get(c) is None else row.get(c) for c in cols]
                   + frames + [""] * (n_frames - len(frames)))
    return buf.getvalue()


def write_leaderboard(results: Sequence[EvalResult], dataset, out_dir, split: str, part: str = "test",
                      stem: str = "leaderboard") -> dict:
    """Write ``<stem>.md``, ``<stem>.csv``, ``<stem>.json`` into ``out_dir``; return their paths."""
    if not results:
        raise ValueError("write_leaderboard: no results to write")
    board = leaderboard_dict(results, dataset, split, part)
    out = Path(out_dir)
    paths = {
        "json": write_text(out / f"{stem}.json", json.dumps(clean_json(board), indent=2, allow_nan=False)
                                                                   + "\n"),
        "csv": write_text(out / f"{stem}.csv", to_csv(board)),
        "md": write_text(out / f"{stem}.md", to_markdown(board)),
    }
    return paths


def clean_json(o):
    """JSON-safe copy: numpy scalars to Python, NaN/Inf to null (strict JSON has no NaN)."""
    if isinstance(o, dict):
        return {str(k): clean_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean_json(v) for v in o]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(float(o)) else None
    return o
