"""Per product: how well predicted SEI streams place each sample's film in time and size.

For the first N samples of a split's part (default: 200 of the random split's validation part) the
predicted SEI stream of a saved model (or of the simulator oracle, ``--model oracle``) is fitted by
the product templates (``analysis.pathway.fit_amounts``, as ``abcc analyze --evaluate`` does) and
compared, product by product, with the true amounts: the fraction of the largest amount formed by
frames 1 and 2 (median true / predicted, their correlation over samples, the median relative error
of the frame-1 fraction) and the correlation of the largest amounts. An onset within 0.1 V needs the
frame-1 fraction right to about 15-20 % (relative) for products that form in the first interval.

    OMP_NUM_THREADS=1 python -m bench.bench_sei_timing --model RUN/model --out FILE.md
    OMP_NUM_THREADS=1 python -m bench.bench_sei_timing --model oracle --out FILE.md

Products whose largest true band is below the detection threshold (``pathway.DEFAULT_DETECT_AU``,
5e-4 AU) are left out.
"""
import argparse
import collections

import numpy as np
import torch

from abcc_fast._atomic import write_text
from abcc_fast.analysis import evaluation as E
from abcc_fast.analysis.pathway import DEFAULT_DETECT_AU, fit_amounts
from abcc_fast.data import default_dataset
from abcc_fast.opirbench.oracle import SimulatorOracle
from abcc_fast.train.predict import StreamsPredictor

def _rows(ds, sub, streams) -> dict:
    """product -> array [n, 7]: true f1, f2, predicted f1, f2, true max, predicted max, electrode."""
    S = E._Samples(ds, sub, {}, E.DEFAULT_TOL_V)
    rows = collections.defaultdict(list)
    for s in range(len(sub)):
        _, products, tpl, truth = S.products(s)
        est = fit_amounts(streams["sei"][s], tpl)["amounts"]
        for j, p in enumerate(products):
            top_t, top_e = truth[:, j].max(), max(est[:, j].max(), 1e-12)
            if top_t * tpl.peak[j] < DEFAULT_DETECT_AU:
                continue
            rows[p].append([truth[1, j] / top_t, truth[2, j] / top_t, est[1, j] / top_e, est[2, j] / top_e,
                            top_t, top_e, int(sub.electrode[s])])
    return {p: np.array(r, dtype=np.float64) for p, r in rows.items()}


def _corr(x, y) -> float:
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 0 and y.std() > 0 else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a saved ABCC model directory, or 'oracle' (M = 16)")
    ap.add_argument("--split", default="random")
    ap.add_argument("--part", default="val", choices=["train", "val", "test"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", required=True, help="markdown file written (atomically)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = default_dataset(progress=False)
    sub = E.select_samples(ds, args.n, args.split, args.part)
    model = SimulatorOracle(ds.manifest, replicates=16) if args.model == "oracle" else StreamsPredictor(args.model)
    streams, _ = E._model_streams(model, sub)
    lines = [f"# SEI timing and size per product: {args.model}", "",
             f"{len(sub)} first samples of {args.split}/{args.part}; `python -m bench.bench_sei_timing --model "
             f"{args.model} --split {args.split} --part {args.part} --n {args.n}`", "",
             f"setup: `{E.setup_info()}`", "",
             "| product | n | frame-1 fraction true / predicted (median) | frame-2 fraction | corr(frame-1 fraction) "
             "| median relative error of the frame-1 fraction | corr(largest amount) |",
             "|---|---|---|---|---|---|---|"]
    for p, r in sorted(_rows(ds, sub, streams).items(), key=lambda kv: -len(kv[1])):
        rel = np.median(np.abs(r[:, 2] / np.maximum(r[:, 0], 1e-3) - 1))
        lines.append(f"| {p} | {len(r)} | {np.median(r[:, 0]):.2f} / {np.median(r[:, 2]):.2f} | "
                     f"{np.median(r[:, 1]):.2f} / {np.median(r[:, 3]):.2f} | {_corr(r[:, 0], r[:, 2]):.2f} | "
                     f"{rel:.2f} | {_corr(r[:, 4], r[:, 5]):.2f} |")
    text = "\n".join(lines) + "\n"
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
