"""ABCC and its ablations on one split of a full table, paired by seed (markdown on stdout).

Usage (from the repository root):
    python -m bench.bench_paired_seeds bench/results/opirbench_v7_full600 > .../seeds5_system/paired.md

Reads TABLE/results/<split>/abcc*/seed<k>.json (seeds 0-2 of `abcc bench --all`) and
TABLE/seeds5_<split>/results/<split>/abcc*/seed<k>.json (the seeds added later). Each entry's MSE,
DILATE and stream error (decomp) minus ABCC's is taken seed by seed (same data order and
initialisation seed); "below ABCC" counts the seeds where the entry scored lower (better).
"""
import argparse
import glob
import json
import os

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", help="a full-table folder (abcc bench --all --out)")
    ap.add_argument("--split", default="system")
    args = ap.parse_args(argv)
    res = {}
    for d in (args.table, os.path.join(args.table, f"seeds5_{args.split}")):
        for f in glob.glob(os.path.join(d, "results", args.split, "abcc*", "seed*.json")):
            with open(f) as fh:
                r = json.load(fh)
            res.setdefault(r["entry"], {})[r["seed"]] = r
    if "abcc" not in res:
        raise SystemExit(f"no ABCC results under {args.table}/results/{args.split}/abcc/")
    base = res["abcc"]
    print("| entry | seeds | lr | test MSE (mean ± std) | DILATE (mean ± std) | decomp (AU) "
          "| paired MSE - ABCC (mean ± std) | MSE below ABCC | paired DILATE - ABCC (mean ± std) | DILATE below ABCC "
          "| paired decomp - ABCC (mean ± std) | decomp below ABCC |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for e in sorted(res, key=lambda e: (e != "abcc", e)):
        s = res[e]
        ks = sorted(s)
        row = [e, str(len(ks)), ", ".join(f"{v:g}" for v in sorted({s[k]["training"]["lr"] for k in ks}))]
        for name, fmt in (("mse", ".6f"), ("dilate", ".4f")):
            m = np.array([s[k]["metrics"][name] for k in ks])
            row.append(f"{m.mean():{fmt}} ± {m.std(ddof=1):{fmt}}")
        row.append(f"{np.mean([s[k]['metrics']['decomp'] for k in ks]):.5f}")
        for name, fmt in (("mse", "+.6f"), ("dilate", "+.4f"), ("decomp", "+.6f")):
            if e == "abcc":
                row += ["-", "-"]
                continue
            d = np.array([s[k]["metrics"][name] - base[k]["metrics"][name] for k in ks if k in base])
            row += [f"{d.mean():{fmt}} ± {d.std(ddof=1):{fmt[1:]}}", f"{int((d < 0).sum())} of {len(d)}"]
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
