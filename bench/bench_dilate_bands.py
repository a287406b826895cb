"""Where along the wavenumber axis two trained models differ in OpIRBench's temporal DILATE.

Run: ``python -m bench.bench_dilate_bands A_DIR B_DIR [--split system] [--every 2] [--name NAME]``
(A_DIR, B_DIR: saved ABCC model directories, e.g. ``<run>/model`` of ``bench_abcc_design`` runs);
prints a Markdown table and writes bench/results/dilate_bands_<name>.json/.md.

OpIRBench's DILATE scores each wavenumber channel's series over the frames (shape: soft-DTW; temporal:
the alignment's distortion) and averages the channels. Here the per-channel values of both models on
the same test samples (every ``every``-th one) are averaged over samples and grouped in 100 cm^-1
bands, beside the mean static spectrum and the true SEI stream's energy there (OpIRSim data), so a
difference can be put down to solvent bands or SEI bands.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from abcc_fast.data import default_dataset
from abcc_fast.model import ABCCConfig
from abcc_fast.opirbench.metrics import _dilate_series
from abcc_fast.train.predict import StreamsPredictor

from .harness import machine_info, markdown_table, write_results


def per_channel(model_dir: str, batch: dict, true: torch.Tensor, mean: float, std: float) -> dict:
    """DILATE (and its parts) and MSE per wavenumber channel, averaged over samples: {name: [W]}."""
    predictor = StreamsPredictor(model_dir)
    with torch.no_grad():
        pred = torch.cat([predictor({k: (v if k == "wavenumber" else v[s:s + 64]) for k, v in batch.items()})["frames"]
                          for s in range(0, len(batch["static"]), 64)])[:, 1:].float()
    zp, zt = (pred - mean) / std, (true - mean) / std
    B, T, W = zp.shape
    loss, shape, temporal = _dilate_series(zp.permute(0, 2, 1).reshape(B * W, T).contiguous(),
                                           zt.permute(0, 2, 1).reshape(B * W, T).contiguous())
    return {"dilate": loss.view(B, W).mean(0), "shape": shape.view(B, W).mean(0),
            "temporal": temporal.view(B, W).mean(0), "mse": (zp - zt).pow(2).mean((0, 1))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_a")
    ap.add_argument("model_b")
    ap.add_argument("--split", default="system")
    ap.add_argument("--every", type=int, default=2, help="score every n-th test sample")
    ap.add_argument("--name", default="ab")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.every < 1:
        raise SystemExit("--every must be >= 1")
    torch.set_num_threads(args.threads)
    ds = default_dataset(progress=False)
    test = ds.split(args.split, "test")
    cfg = ABCCConfig.from_dataset(ds, args.split)
    idx = np.arange(0, len(test), args.every)
    batch = {k: getattr(test, k)[idx] for k in ("static", "voltage", "composition", "electrode", "time_s")}
    batch["wavenumber"] = torch.as_tensor(ds.wavenumber)
    true = torch.as_tensor(test.frames[idx])[:, 1:].float()
    a, b = (per_channel(m, batch, true, cfg.norm_mean, cfg.norm_std) for m in (args.model_a, args.model_b))
    wn = np.asarray(ds.wavenumber)
    static = torch.as_tensor(test.static[idx]).float().mean(0).numpy()
    sei = torch.as_tensor(np.asarray(test.sei)[idx])[:, 1:].float().pow(2).mean((0, 1)).numpy()
    rows = []
    for lo in range(int(wn.min()) // 100 * 100, int(wn.max()) + 1, 100):
        m = (wn >= lo) & (wn < lo + 100)
        if not m.any():
            continue
        diff = {k: float((b[k] - a[k]).numpy()[m].mean()) for k in a}
        rows.append({"band": f"{lo}-{lo + 100}", **{f"d_{k}": v for k, v in diff.items()},
                     "static": float(static[m].mean()), "sei_energy": float(sei[m].mean())})
    rows.append({"band": "all", **{f"d_{k}": float((b[k] - a[k]).mean()) for k in a},
                 "static": float(static.mean()), "sei_energy": float(sei.mean())})
    cols = [("band", "band (cm^-1)", ""), ("d_dilate", "B - A: DILATE", "+.4f"), ("d_shape", "shape", "+.4f"),
            ("d_temporal", "temporal", "+.4f"), ("d_mse", "MSE", "+.2e"), ("static", "mean static (AU)", ".3f"),
            ("sei_energy", "true SEI energy (AU^2)", ".2e")]
    table = markdown_table(rows, cols)
    print(table)
    command = "python -m bench.bench_dilate_bands " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = machine_info(torch.device("cpu"))
    md = (f"# Temporal DILATE by wavenumber band: B against A ({args.split} test part, every {args.every}-th sample)\n\n"
          f"A: `{args.model_a}`, B: `{args.model_b}`. DILATE of z-scored frames 1..T-1 per channel, mean over "
          f"samples, then over the band's channels (OpIRBench's own DILATE, alpha 0.5, gamma 0.01).\n\n"
          f"Command: `{command.strip()}`. Machine: {machine}.\n\n" + table)
    write_results(f"dilate_bands_{args.name}", {"machine": machine, "rows": rows, "args": vars(args)}, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
