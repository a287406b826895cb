"""Calibrated uncertainty of ABCC on the default dataset, CPU, 1 thread.

Two phases, each a few minutes on one core (run them one after the other)::

    OMP_NUM_THREADS=1 python -m bench.bench_uncertainty train   --run /tmp/abcc_unc   # ~3 min
    OMP_NUM_THREADS=1 python -m bench.bench_uncertainty measure --run /tmp/abcc_unc   # ~2 min

``train``: a cpu_default ABCC on the random split, ``TrainConfig.cpu_default(steps=1000)``.
``measure``: split-conformal calibration on 128 validation samples (K = 8 samples, noise 0.002 AU),
coverage of the 50/90 % intervals on 128 test samples, calibrated and raw; writes
``bench/results/uncertainty_cpu.{md,json}`` and ``uncertainty_cpu_reliability.png``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.harness import RESULTS, machine_info, write_results


def _train(run: Path) -> None:
    from abcc_fast import ABCC, ABCCConfig, data
    from abcc_fast.train import TrainConfig, train

    ds = data.default_dataset(progress=False)
    torch.manual_seed(0)
    model = ABCC(ABCCConfig.from_dataset(ds, "random", preset="cpu_default"))
    t0 = time.perf_counter()
    res = train(model, ds, split="random", config=TrainConfig.cpu_default(steps=1000), out_dir=run,
                resume=False, progress=False)
    info = {"steps_done": res.steps_done, "stopped_by": res.stopped_by, "wall_time_s": time.perf_counter() - t0,
            "train_loss": res.train_loss, "best_val_loss": res.best_val_loss, "machine": machine_info(torch.device("cpu"))}
    (run / "bench_train.json").write_text(json.dumps(info, indent=1, default=str))
    print(json.dumps(info, indent=1, default=str))


def _measure(args) -> None:
    import matplotlib.pyplot as plt

    from abcc_fast import data, uncertainty as unc
    from abcc_fast.train.predict import load_model

    mdir = args.run / "model"
    model, _ = load_model(mdir)
    ds = data.default_dataset(progress=False)
    machine = machine_info(torch.device("cpu"))
    t0 = time.perf_counter()
    cal = unc.calibrate(model, ds, "random", "val", samples=args.samples, noise=args.noise, max_samples=args.n_val,
                        model_dir=mdir)
    t_cal = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = unc.coverage(model, ds, "random", "test", calibration=cal, max_samples=args.n_test)
    t_cov = time.perf_counter() - t0
    trained = json.loads((args.run / "bench_train.json").read_text())
    trained.pop("machine", None)
    payload = {"machine": machine, "machine_at_training": json.loads((args.run / "bench_train.json").read_text())["machine"],
               "training": {"preset": "cpu_default", "split": "random", "steps": 1000, **trained},
               "calibrate_wall_s": t_cal, "coverage_wall_s": t_cov, "report": report, "calibration": cal.to_dict()}
    png = RESULTS / "uncertainty_cpu_reliability.png"
    fig = unc.reliability_figure(report, png)
    plt.close(fig)
    m = machine
    md = (f"# Calibrated uncertainty of ABCC, CPU\n\n"
          f"{m['date']}, git {m.get('git', '?')}, {m['cpu']} ({m['cpu_count']} cores, torch {m['torch']}, "
          f"{m['torch_threads']} thread), load average {', '.join(f'{x:.2f}' for x in m['load_average_1_5_15'])} "
          f"(other work shared the machine). `python -m bench.bench_uncertainty train|measure`.\n\n"
          f"Model: ABCC cpu_default on the default dataset's random split, `TrainConfig.cpu_default(steps=1000)`: "
          f"{trained['steps_done']} steps ({trained['stopped_by']}), {trained['wall_time_s']:.0f} s, best val loss "
          f"{trained['best_val_loss']:.4g}. Calibration: {unc.METHOD}, per frame, fitted on {cal.n_samples} val samples "
          f"in {t_cal:.0f} s; coverage on {report['n_samples']} test samples in {t_cov:.0f} s.\n\n"
          + unc.report_markdown(report) + "\n![reliability](uncertainty_cpu_reliability.png)\n")
    out_json, out_md = write_results("uncertainty_cpu", payload, md)
    print(md)
    print(f"wrote {out_json}, {out_md}, {png}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["train", "measure"])
    p.add_argument("--run", default="/tmp/abcc_unc", type=Path)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--noise", type=float, default=0.002)
    p.add_argument("--n-val", type=int, default=128)
    p.add_argument("--n-test", type=int, default=128)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.phase == "train":
        _train(args.run)
    else:
        _measure(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
