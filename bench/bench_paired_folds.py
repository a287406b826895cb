"""Design runs on several folds (``inner:<k>``, ``loso:<k>``), paired by fold and seed against a base
entry (markdown on stdout).

Usage (from the repository root)::

    python -m bench.bench_paired_folds bench/results/abcc_inner_physics/runs.jsonl --base abcc_def

Reads the rows of ``bench.bench_abcc_design`` (one JSON object per line) whose split has a fold
number. Folds differ several-fold in MSE (a held-out system can be ten times harder than another),
so each variant is compared with the base as a ratio, run by run (same fold, same seed), and the
ratios are averaged; the plain means are shown beside them. DILATE is paired the same way where
every run scored it (``bench_abcc_design --dilate``).
"""
import argparse
import json
from collections import defaultdict

import numpy as np


def load_rows(path: str) -> dict:
    """{entry: {(split, seed): row}} of the fold rows (split "<name>:<k>") in a runs.jsonl."""
    by = defaultdict(dict)
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if ":" in r.get("split", ""):
                    by[r["entry"]][(r["split"], r["seed"])] = r
    return by


def _fold_key(split: str) -> tuple:
    name, _, k = split.partition(":")
    return name, int(k)


def _paired(by: dict, ref: dict, e: str, keys: list, metric: str) -> np.ndarray:
    """100 x (metric / base - 1) run by run (same fold, same seed)."""
    return np.array([by[e][k][metric] / ref[k][metric] - 1 for k in keys]) * 100


def _has(rows: list, metric: str) -> bool:
    return bool(rows) and all(r.get(metric) is not None for r in rows)


def _per_fold(by: dict, base: str, entries: list, metric: str, fmt: str) -> list:
    """Per-fold table of one metric (every paired run has it: ``table`` checks), the base's value and
    the others' ratio to it (means over seeds)."""
    ref, out = by[base], []
    for fold in sorted({k[0] for k in ref}, key=_fold_key):
        cells = []
        for e in entries:
            ks = [k for k in by[e] if k[0] == fold and k in ref]
            if not ks:
                cells.append("-")
            elif e == base:
                cells.append(f"{np.mean([ref[k][metric] for k in ks]):{fmt}}")
            else:
                cells.append(f"{_paired(by, ref, e, ks, metric).mean():+.1f} %")
        out.append(f"| {fold} | " + " | ".join(cells) + " |")
    return out


def table(by: dict, base: str) -> str:
    """Markdown: one row per entry (paired MSE and, where every run scored it, DILATE), then per fold."""
    if base not in by:
        raise SystemExit(f"no rows of the base entry {base!r} (entries: {', '.join(sorted(by))})")
    ref = by[base]
    entries = [base] + sorted(e for e in by if e != base)
    dilate = all(_has([by[e][k] for k in by[e] if k in ref] + list(ref.values()), "dilate") for e in entries)
    head = "| entry | runs | MSE (mean over runs) | MSE / base - 1 (mean ± std over runs) | lower than base | "
    head += "DILATE (mean) | DILATE / base - 1 | lower than base | " if dilate else ""
    out = [head + "decomp SEI (AU) | decomp solvent (AU) | config |", "|---" * (head.count("|") + 2) + "|"]
    for e in entries:
        keys = sorted(k for k in by[e] if k in ref)
        rows = [by[e][k] for k in keys]
        cells = [e, str(len(keys)), f"{np.mean([r['mse'] for r in rows]):.5f}"]
        for metric in ("mse", "dilate") if dilate else ("mse",):
            if metric == "dilate":
                cells.append(f"{np.mean([r['dilate'] for r in rows]):.4f}")
            rel = _paired(by, ref, e, keys, metric)
            cells.append("-" if e == base else f"{rel.mean():+.1f} % ± {rel.std(ddof=1) if len(rel) > 1 else 0:.1f} %")
            cells.append("-" if e == base else f"{int((rel < 0).sum())}/{len(rel)}")
        cells += [f"{np.mean([r['decomp_sei'] for r in rows]):.2e}", f"{np.mean([r['decomp_solvent'] for r in rows]):.2e}",
                  f"`{json.dumps(rows[0]['cfg'])}`"]
        out.append("| " + " | ".join(cells) + " |")
    columns = ["", "| fold | " + " | ".join(entries) + " |", "|---" * (len(entries) + 1) + "|"]
    out += ["", "Per fold (base: MSE, mean over seeds; the others: MSE / base - 1, mean over seeds):"] + columns
    out += _per_fold(by, base, entries, "mse", ".5f")
    if dilate:
        out += ["", "Per fold, DILATE (base: its value; the others: DILATE / base - 1):"] + columns
        out += _per_fold(by, base, entries, "dilate", ".4f")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="a runs.jsonl of bench.bench_abcc_design")
    ap.add_argument("--base", default="abcc", help="the entry the others are paired with")
    args = ap.parse_args(argv)
    print(table(load_rows(args.runs), args.base), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
