"""Score your own predictor on OpIRBench with abcc_fast.opirbench.evaluate.

A predictor is any callable batch -> {"frames": [B, T, W]}; batch holds the inputs (static [B, W],
voltage [B, T], time_s, composition, electrode, system, wavenumber), never the operando frames.
Here "your model" is a per-wavenumber linear response to the voltage swing,
frames[t] = static + (V_t - V_0) * slope, with slope fitted by least squares on the train part;
it is scored beside the references Persistence (frames = static) and Frame0 (the true frame 0).
`opirbench.write_leaderboard([results], ds, out_dir, split)` writes the leaderboard JSON/CSV.

    python examples/score_your_model.py                 # the default OpIRSim data (generated once)
    python examples/score_your_model.py --data DIR --split system   # your dataset, unseen systems
    python examples/score_your_model.py --quick         # a 120-sample dataset generated on the fly (CI)
"""
import argparse
import tempfile

import torch

from abcc_fast import data
from abcc_fast.opirbench import Frame0, Persistence, evaluate


class VoltageSlope:
    name = "voltage_slope"
    config = {"model": "per-wavenumber slope in V - V_0"}  # hashed into the result: name your settings

    def __init__(self, train):
        dv = train.voltage - train.voltage[:, :1]                          # [S, T]
        delta = train.frames - train.static[:, None, :]                    # [S, T, W]
        self.slope = torch.einsum("st,stw->w", dv, delta) / (dv * dv).sum().clamp_min(1e-12)

    def __call__(self, batch):
        dv = batch["voltage"] - batch["voltage"][:, :1]
        return {"frames": batch["static"][:, None, :] + dv[:, :, None] * self.slope}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="score on a tiny generated dataset (CI)")
    ap.add_argument("--data", default=None, help="dataset directory (default: the embedded OpIRSim data)")
    ap.add_argument("--split", default="random", choices=["random", "system"],
                    help="random, or system (test systems unseen in training)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            ds = data.load(data.generate(f"{tmp}/tiny", n_samples=120, T=8, W=64, seed=0, progress=False))
        else:
            ds = data.load(args.data) if args.data else data.default_dataset()
        model = VoltageSlope(ds.split(args.split, "train"))              # fit on train only
        keys = ["mse", "mae", "dilate", "peak_shift"]                       # result.metrics has them all
        print(f"{args.split}/test, {len(ds.split(args.split, 'test'))} samples\n{'model':14s}"
              + "".join(f"{k:>12s}" for k in keys))
        for predictor in (model, Persistence(), Frame0()):
            result = evaluate(predictor, ds, args.split, "test", progress=False)  # an EvalResult
            print(f"{result.model:14s}" + "".join(f"{result.metrics[k]:12.4g}" for k in keys))


if __name__ == "__main__":
    main()
