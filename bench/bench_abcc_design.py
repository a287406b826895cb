"""ABCC design screening: train one configuration for N steps, score test MSE and per-frame MSE.

One run per call; results are appended to bench/results/abcc_design/runs.jsonl. Example (the
screening behind the cpu_default choices, one seed each, see docs/model.md)::

    OMP_NUM_THREADS=1 python -m bench.bench_abcc_design --entry abcc --steps 600 --tag _d96 \
        --cfg '{"dim": 96, "heads": 3}'
    OMP_NUM_THREADS=1 python -m bench.bench_abcc_design --entry mlp --steps 600

MSE is in z-units (the training split's normalisation) over frames 1..T-1 of the test part (or
the validation part with ``--part val``, for screening), as
OpIRBench's mse column; f1_4 the MSE of frames 1-4, f5_31 the mean over the later frames.
"""
import argparse
import json
import os
import shutil
import tempfile
import time

import torch

from abcc_fast.data import default_dataset
from abcc_fast.model import ABCC, ABCCConfig
from abcc_fast.model import baselines as BL
from abcc_fast.opirbench import evaluate
from abcc_fast.train import load_predictor
from abcc_fast.train.trainer import TrainConfig, train

ap = argparse.ArgumentParser()
ap.add_argument("--entry", default="abcc", help="abcc, or a baseline name (mlp, cnn, ...)")
ap.add_argument("--steps", type=int, default=600)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--split", default="random")
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--cfg", default="{}", help="JSON overrides of the cpu_default config")
ap.add_argument("--part", default="test", choices=["test", "val"],
                help="the part scored: test (published rows) or val (screening, so design choices are not fitted to test)")
ap.add_argument("--dilate", action="store_true", help="also score DILATE (the table's second column; slower)")
ap.add_argument("--tag", default="", help="suffix of the entry name in the results")
ap.add_argument("--score-only", action="store_true",
                help="score a finished run of this configuration in --runs again (train_result.json) instead of training")
ap.add_argument("--runs", default=os.path.join(tempfile.gettempdir(), "abcc_design_runs"),
                help="trainer output folder (not the repository)")
a = ap.parse_args()
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
ds = default_dataset(progress=False)
over = json.loads(a.cfg)
torch.manual_seed(a.seed)
if a.entry == "abcc":
    model = ABCC(ABCCConfig.from_dataset(ds, a.split, preset="cpu_default", **over))
else:
    model = BL.get(a.entry).from_dataset(ds, a.split, preset="cpu_default", **over)
n_params = sum(p.numel() for p in model.parameters())
tcfg = TrainConfig.cpu_default(steps=a.steps, max_time_s=None, seed=a.seed, lr=a.lr, batch_size=a.batch,
                               eval_every=10**9, checkpoint_every=10**9, log_every=50)
out = os.path.join(a.runs, f"{a.entry}{a.tag}_{a.split}_s{a.seed}")
if a.score_only:
    with open(os.path.join(out, "train_result.json")) as f:
        tt = float(json.load(f)["wall_time_s"])
    model_dir = os.path.join(out, "model")
else:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    res = train(model, ds, split=a.split, config=tcfg, out_dir=out, resume=False, progress=False)
    tt = time.time() - t0
    model_dir = str(res.model_dir)
metrics = ["mse", "decomp"] + (["dilate"] if a.dilate else [])
scored = evaluate(load_predictor(model_dir), ds, a.split, a.part, metrics=metrics, progress=False)
pf = scored.per_frame["mse"]                                      # frames 1..T-1
r = dict(entry=a.entry + a.tag, split=a.split, part=a.part, seed=a.seed, steps=a.steps, lr=a.lr, params=n_params,
         train_s=round(tt, 1), s_per_step=round(tt / a.steps, 4), mse=float(scored.metrics["mse"]),
         f1_4=[round(float(x), 5) for x in pf[:4]], f5_31=float(pf[4:].mean()), cfg=over,
         decomp_sei=float(scored.metrics.get("decomp_sei", float("nan"))),
         decomp_solvent=float(scored.metrics.get("decomp_solvent", float("nan"))),
         load=os.getloadavg()[0])
if a.dilate:
    r["dilate"] = float(scored.metrics["dilate"])
print(json.dumps(r))
path = os.path.join(os.path.dirname(__file__), "results", "abcc_design", "runs.jsonl")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "a") as f:
    f.write(json.dumps(r) + "\n")
