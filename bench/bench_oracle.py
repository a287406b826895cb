"""How far below persistence can any model get on OpIRSim data, and what stops it?

    python -m bench.bench_oracle [--n 160] [--replicates 8] [--split random]

For N test samples of the default dataset: M re-simulations per sample with the inputs held fixed
and a group of the draws no input reveals redrawn (``conditional_randoms``; frame noise redrawn
too). The leave-one-out spread of those copies estimates the error of the Bayes predictor of the
inputs, E||x - E[x | inputs]||^2 = LOO / (1 + 1/(M - 1)), per source: frame noise only; + operando
nuisance (baseline walk, atmosphere, electrode term, re-seating, gain drift); + film kinetics;
+ salt polarisation; everything hidden. Then the simulator oracle itself (mean of M noise-free
copies, what `abcc bench --oracle M` scores) at M = 4 and 16, and its Richardson extrapolation
to M -> inf. All in the z-units of OpIRBench's mse (training split's statistics), frames 1..T-1.
Writes bench/results/oracle_cpu.{json,md}. A benchmark, not a test."""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from bench.harness import machine_info, markdown_table, write_results

# groups of OpIRSim's hidden draws (abcc_fast.data.draws.HIDDEN_DRAWS), by name
NUISANCE = ("electrode_term", "electrode_slope", "reseat", "reseat_pos", "gain_drift")
POLARISATION = ("polarisation", "tau_pol")  # salt polarisation gain and time constant


def _groups():
    from abcc_fast.data.draws import HIDDEN_DRAWS

    kinetics = tuple(n for n in HIDDEN_DRAWS if n not in NUISANCE + POLARISATION)
    return {
        "frame noise only": dict(hidden=(), frame_normals=False),
        "+ operando nuisance (baseline walk, atmosphere, electrode, re-seating, gain)": dict(hidden=NUISANCE,
                                                                                             frame_normals=True),
        "+ film kinetics (rates, onsets, passivation, aging, ...)": dict(hidden=kinetics, frame_normals=False),
        "+ salt polarisation": dict(hidden=POLARISATION, frame_normals=False),
        "+ static gain (the static spectrum's scale split into contact and gain)": dict(hidden=(), frame_normals=False,
                                                                                         static_gain=True),
        "everything hidden": dict(hidden=HIDDEN_DRAWS, frame_normals=True, static_gain=True),
    }


def main(argv=None) -> int:
    from abcc_fast.data import default_dataset
    from abcc_fast.data.simulator import OpIRSim, SimConfig, conditional_randoms

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=160)
    ap.add_argument("--replicates", type=int, default=8)
    ap.add_argument("--split", default="random", choices=["random", "system"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    load_before = [round(x, 2) for x in os.getloadavg()]
    ds = default_dataset(progress=False)
    mean, std = ds.norm_stats(args.split)
    test = ds.split(args.split, "test")
    pick = np.linspace(0, len(test) - 1, min(args.n, len(test))).round().astype(int)
    idx = test.index.numpy()[pick]
    frames = (test.frames.numpy()[pick] - mean) / std
    static = (test.static.numpy()[pick] - mean) / std
    persistence = float(((frames[:, 1:] - static[:, None]) ** 2).mean())
    gen = ds.manifest["generator"]
    sim = OpIRSim(SimConfig.from_json(gen["config"]))
    seed, T, W, M = int(gen["seed"]), sim.config.T, sim.config.W, int(args.replicates)
    rows = []
    for name, g in _groups().items():
        t0 = time.perf_counter()
        rnd = conditional_randoms(seed, idx, T, W, M, draw_seed=1, frame_noise=True, **g)
        x = (sim.simulate(np.tile(idx, M), seed=seed, randoms=rnd)["frames"].reshape(M, idx.size, T, W) - mean) / std
        loo = (x.sum(0, keepdims=True) - x) / (M - 1)
        bayes = float(((x - loo)[:, :, 1:] ** 2).mean()) / (1 + 1 / (M - 1))
        rows.append({"what": f"Bayes error: {name}", "mse": bayes, "x_persistence": persistence / bayes,
                     "seconds": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    oracle = {}
    for m in (4, 16):
        t0 = time.perf_counter()
        pred = (sim.conditional_mean(idx, seed=seed, replicates=m)["frames"] - mean) / std
        oracle[m] = float(((pred - frames)[:, 1:] ** 2).mean())
        rows.append({"what": f"simulator oracle, M = {m} (abcc bench --oracle {m})", "mse": oracle[m],
                     "x_persistence": persistence / oracle[m], "seconds": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    limit = (16 * oracle[16] - 4 * oracle[4]) / 12            # mse(M) = bound + v / M
    rows.append({"what": "simulator oracle, M -> inf (from M = 4 and 16)", "mse": limit,
                 "x_persistence": persistence / limit, "seconds": 0.0})
    rows.insert(0, {"what": "persistence", "mse": persistence, "x_persistence": 1.0, "seconds": 0.0})
    info = machine_info(torch.device("cpu"))
    info["load_average_1_5_15_before"] = load_before
    payload = {"machine": info, "dataset": ds.manifest.get("name"), "split": args.split, "samples": int(idx.size),
               "replicates": M, "rows": rows}
    md = (f"# What any model could reach ({args.split} split, {idx.size} test samples, default dataset)\n\n"
          f"Machine: {info['cpu']}, torch {info['torch']}, 1 thread, {info['date']}, load {load_before}. "
          "MSE in OpIRBench z-units over frames 1..T-1. Bayes errors from the leave-one-out spread of "
          f"M = {M} re-simulations per sample with the named draws redrawn (each row adds its source to "
          "the frame noise, not to the rows above); `python -m bench.bench_oracle`.\n\n"
          + markdown_table(rows, [("what", "what", ""), ("mse", "MSE", ".5f"), ("x_persistence", "persistence / MSE", ".1f"),
                                  ("seconds", "s", ".1f")]))
    write_results(f"oracle_cpu_{args.split}", payload, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
