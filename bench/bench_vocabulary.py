"""Held-out component: train on OpIRSim samples WITHOUT a band-JSON solvent X, predict samples
WITH X, giving X only as a template (composition_encoding="templates"), on the default grid (W=512, T=32).

Compared on the X samples (MSE in AU^2 over frames 1..T-1):
  persistence            every frame = the static spectrum
  templates + X          templates-encoded ABCC, X passed with extra_components
  templates, X dropped   the same model, X removed from the composition (renormalised)
  vocabulary, X dropped  a one-hot (vocabulary) ABCC trained identically: it cannot represent X at all
and on held-in samples without X (not trained on) for reference.

    OMP_NUM_THREADS=1 python bench/bench_vocabulary.py --seconds 70
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from abcc_fast import vocabulary as V
from abcc_fast.data import chemistry as chem
from abcc_fast.data import simulator as S
from abcc_fast.model import ABCC, ABCCConfig

X = {"name": "NEWSOLV", "kind": "solvent", "molar_mass": 110.0, "density": 1.05,
     "bands": [{"position": 1610, "height": 1.0, "fwhm": 20, "eta": 0.6, "bound_position": 1590},
               {"position": 1230, "height": 0.4, "fwhm": 30, "bound_position": 1255},
               {"position": 980, "height": 0.3, "fwhm": 15}]}
C = len(chem.COMPONENT_NAMES)


def batch(out, rows, comp_cols=C):
    return {"static": torch.from_numpy(out["static"][rows]), "frames": torch.from_numpy(out["frames"][rows]),
            "voltage": torch.from_numpy(out["voltage"][rows]), "time_s": torch.from_numpy(out["time_s"][rows]),
            "composition": torch.from_numpy(out["composition"][rows, :comp_cols]),
            "electrode": torch.from_numpy(out["electrode"][rows])}


def train(encoding, out, rows, seconds, wn, seed=0):
    fr = out["frames"][rows]
    cfg = ABCCConfig.tiny(W=wn.size, T=out["frames"].shape[1], n_components=C, components=list(chem.COMPONENT_NAMES),
                          wavenumber=[float(w) for w in wn], n_electrodes=5, n_reactions=len(chem.REACTIONS),
                          composition_encoding=encoding, norm_mean=float(fr.mean()), norm_std=float(fr.std()),
                          volt_mean=float(out["voltage"].mean()), volt_std=float(out["voltage"].std()))
    torch.manual_seed(seed)
    model = ABCC(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    t0, steps = time.time(), 0
    while time.time() - t0 < seconds:
        pick = rows[torch.randperm(len(rows), generator=g)[:16].numpy()]
        loss, _ = model.training_loss(batch(out, pick), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return model.eval(), steps


def mse(pred, out, rows):
    f = torch.from_numpy(out["frames"][rows])
    return float((pred[:, 1:] - f[:, 1:]).pow(2).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seconds", type=float, default=70.0, help="training time per model")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = S.SimConfig(T=32, W=512, systems=[1, 4, 6])
    t0 = time.time()
    out = V.simulate_with([X], np.arange(args.n), seed=11, config=cfg,
                          dosage={"NEWSOLV": V.Dosage(prob=0.3, lo=10.0, hi=25.0)})
    sim_s = time.time() - t0
    wn = cfg.grid()
    has = out["composition"][:, -1] > 0
    without = np.nonzero(~has)[0]
    held_in = without[-24:]
    train_rows = without[:-24]
    test = np.nonzero(has)[0]
    res = {"n_train": int(train_rows.size), "n_test_X": int(test.size), "n_held_in": int(held_in.size),
           "X_mole_fraction_mean": float(out["composition"][test, -1].mean()), "simulate_s": round(sim_s, 1)}
    tm, ts = train("templates", out, train_rows, args.seconds, wn)
    vm, vs = train("vocabulary", out, train_rows, args.seconds, wn)
    res.update(steps_templates=ts, steps_vocabulary=vs)
    for tag, rows in (("X", test), ("held_in", held_in)):
        b = batch(out, rows, comp_cols=C + 1)
        full = b["composition"]
        dropped = full[:, :C] / full[:, :C].sum(1, keepdim=True)
        kw = dict(time_s=b["time_s"])
        persist = b["static"][:, None].expand(-1, out["frames"].shape[1], -1)
        res[f"{tag}_mse_persistence"] = mse(persist, out, rows)
        if tag == "X":
            res["X_mse_templates_with_X"] = mse(tm.predict(b["static"], b["voltage"], full, b["electrode"],
                                                           extra_components=[X], **kw)["frames"], out, rows)
        res[f"{tag}_mse_templates_X_dropped"] = mse(tm.predict(b["static"], b["voltage"], dropped, b["electrode"],
                                                               **kw)["frames"], out, rows)
        res[f"{tag}_mse_vocabulary_X_dropped"] = mse(vm.predict(b["static"], b["voltage"], dropped, b["electrode"],
                                                                **kw)["frames"], out, rows)
    try:
        vm.predict(b["static"][:1], b["voltage"][:1], full[:1], b["electrode"][:1], extra_components=[X])
    except ValueError as err:
        res["vocabulary_with_X"] = f"ValueError: {str(err)[:80]}..."
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
