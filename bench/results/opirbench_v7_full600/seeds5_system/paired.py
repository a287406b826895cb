"""The 5-seed table of ABCC and its ablations on the held-out systems, paired by seed.

Usage (from the repository root):
    python bench/results/opirbench_v7_full600/seeds5_system/paired.py > bench/results/opirbench_v7_full600/seeds5_system/paired.md
Reads results/system/<entry>/seed<k>.json of the parent folder (seeds 0-2) and of this one (3-4).
"""
import glob
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
res = {}
for d in (os.path.dirname(HERE), HERE):
    for f in glob.glob(os.path.join(d, "results", "system", "abcc*", "seed*.json")):
        r = json.load(open(f))
        res.setdefault(r["entry"], {})[r["seed"]] = r
base = res["abcc"]
print("| entry | seeds | lr | test MSE (mean ± std) | DILATE | decomp (AU) | paired MSE - ABCC (mean ± std) | seeds below ABCC |")
print("|---|---|---|---|---|---|---|---|")
for e in sorted(res, key=lambda e: (e != "abcc", e)):
    s = res[e]
    ks = sorted(s)
    m = np.array([s[k]["metrics"]["mse"] for k in ks])
    dil = np.mean([s[k]["metrics"]["dilate"] for k in ks])
    dec = np.mean([s[k]["metrics"]["decomp"] for k in ks])
    lr = ", ".join(f"{v:g}" for v in sorted({s[k]["training"]["lr"] for k in ks}))
    if e == "abcc":
        paired, below = "-", "-"
    else:
        d = np.array([s[k]["metrics"]["mse"] - base[k]["metrics"]["mse"] for k in ks if k in base])
        paired, below = f"{d.mean():+.6f} ± {d.std(ddof=1):.6f}", f"{int((d < 0).sum())} of {len(d)}"
    print(f"| {e} | {len(ks)} | {lr} | {m.mean():.6f} ± {m.std(ddof=1):.6f} | {dil:.3f} | {dec:.5f} | {paired} | {below} |")
