"""`abcc analyze`: SEI formation-pathway analysis of one series, or the evaluation against truth."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import data
from .._atomic import atomic_directory
from .._cli_format import HelpFormatter
from .._paths import check_replaceable_output
from ..analysis.chemometrics import METHODS, MODES
from ..analysis.evaluation import CHEMOMETRIC_METHODS, evaluate, table_markdown, write_evaluation
from ..analysis.pathway import analyze
from ..analysis.report import read_dataset_sample, read_prediction_dir, write_report
from ..data import chemistry as chem
from ..opirbench.oracle import SimulatorOracle
from ..train.predict import StreamsPredictor


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help="SEI formation pathway: product growth, onsets, order, centroid drift; or --evaluate",
        description="Analyse one operando series: a prediction directory written by `abcc predict` (PRED), or "
                    "a dataset sample (--data DIR --sample i; no DIR: the default dataset). Fits each frame's SEI "
                    "stream (given, or estimated from the frames by a template fit) with OpIRSim's SEI product "
                    "templates (NNLS), reports each product's onset potential and the formation order, and the "
                    "band-centroid drift. Writes analysis.md, analysis.json and figures/ into --out. With "
                    "--evaluate: score the analysis and MCR-ALS/NMF against synthetic ground truth on --n samples "
                    "and write evaluation.md/.json.",
        formatter_class=HelpFormatter)
    p.add_argument("prediction", nargs="?", default=None, metavar="PRED",
                   help="prediction directory written by `abcc predict --out PRED`")
    p.add_argument("--data", nargs="?", const="", default=None, metavar="DIR",
                   help="dataset directory (give --data alone for the embedded default dataset)")
    p.add_argument("--sample", type=int, default=None, help="sample row of --data to analyse")
    p.add_argument("--out", default="abcc_analysis", metavar="DIR", help="output directory")
    p.add_argument("--products", default=None,
                   help="comma-separated SEI products to fit (default: those the electrolyte can form)")
    p.add_argument("--source", default="auto", choices=["auto", "streams", "frames"],
                   help="SEI stream: the given streams (auto when present), or the template fit of the frames")
    p.add_argument("--fraction", type=float, default=0.1, help="onset: fraction of the largest amount")
    p.add_argument("--detect-au", type=float, default=5e-4, help="detection: strongest band at least this (AU)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--evaluate", action="store_true", help="evaluate against synthetic truth instead")
    p.add_argument("--n", type=int, default=200, help="--evaluate: number of samples (the first N of --split/--part)")
    p.add_argument("--split", default="random", help="--evaluate: the split whose samples are scored")
    p.add_argument("--part", default="test", choices=["train", "val", "test"],
                   help="--evaluate: the part of --split scored (val for design screening, test for published rows)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="--evaluate: also score the streams of this saved ABCC model (abcc train's DIR/model) and the template "
                        "fit of its predicted frames (a second row)")
    p.add_argument("--oracle", type=int, default=0, metavar="M",
                   help="--evaluate: also score the simulator oracle's streams (M replicates, e.g. 16; OpIRSim data "
                        "only): what the best predictor of these inputs gives the pathway analysis")
    p.add_argument("--methods", default="all",
                   help="--evaluate: chemometric baselines, 'all', 'none' or e.g. mcr_als:difference:2,nmf:frames:3")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _methods(text: str):
    if text == "all":
        return CHEMOMETRIC_METHODS
    if text == "none":
        return ()
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) != 3 or parts[0] not in METHODS or parts[1] not in MODES or not parts[2].isdigit():
            raise ValueError(f"--methods: cannot read {item!r}; write method:mode:k with method in {list(METHODS)}, "
                             f"mode in {list(MODES)}, k >= 2, e.g. mcr_als:difference:2")
        out.append((parts[0], parts[1], int(parts[2])))
    return tuple(out)


def run(args) -> int:
    check_replaceable_output(args.out, MARKERS, "abcc analyze")    # before any work
    if args.evaluate:
        return _evaluate(args)
    for flag, given in (("--model", args.model is not None), ("--oracle", args.oracle != 0)):
        if given:
            raise ValueError(f"{flag} scores streams against synthetic truth: it needs --evaluate")
    if args.prediction is not None and args.data is not None:
        raise ValueError("give either a prediction directory (PRED) or --data [DIR] --sample i, not both")
    if args.prediction is not None:
        series = read_prediction_dir(args.prediction)
    elif args.data is not None or args.sample is not None:
        if args.sample is None:
            raise ValueError("--data needs --sample i (the row of the dataset to analyse)")
        series = read_dataset_sample(args.data or None, args.sample)
    else:
        raise ValueError("nothing to analyse: give a prediction directory (abcc analyze PRED --out DIR) or a dataset "
                         "sample (abcc analyze --data [DIR] --sample i --out DIR), or --evaluate")
    products = [s for s in args.products.split(",")] if args.products else None
    has_streams = series.get("sei") is not None
    if args.source == "streams" and not has_streams:
        raise ValueError("--source streams: this input has no solvent/sei streams (run `abcc predict --streams`, "
                         "or use --source frames)")
    res = analyze(series["frames"], series["voltage"], series["wavenumber"], time_s=series.get("time_s"),
                  solvent=series.get("solvent"), sei=series.get("sei"), products=products,
                  components=series.get("components"), marker_windows=series.get("marker_windows"),
                  fraction=args.fraction, detect_au=args.detect_au, resolution=series.get("resolution", 4.0),
                  use_streams=args.source != "frames")
    truth = series.get("truth")
    if truth is not None:
        truth = truth[:, [chem.FILM_SPECIES.index(p) for p in res.products]]
    paths = write_report(res, args.out, series["description"], truth, figures=not args.no_figures)  # whole folder
    print(Path(paths["md"]).read_text())
    print(f"wrote {paths['md']}, {paths['json']} and {len(paths['figures'])} figures")
    return 0


MARKERS = ("analysis.json", "evaluation.json")


def _whole(out):
    """The output folder, built aside and swapped in whole (nothing of an earlier run survives)."""
    return atomic_directory(check_replaceable_output(out, MARKERS, "abcc analyze"))


def _evaluate(args) -> int:
    if args.prediction is not None:
        raise ValueError("--evaluate scores a dataset, not a prediction directory; drop PRED (use --data DIR)")
    if args.oracle < 0:
        raise ValueError(f"--oracle takes the number of replicates (e.g. 16; 0: none), got {args.oracle}")
    methods = _methods(args.methods)
    ds = data.load(args.data) if args.data else None
    models = [StreamsPredictor(args.model)] if args.model is not None else []   # a saved model's streams
    if args.oracle:                      # the oracle re-simulates from the dataset's manifest
        ds = ds if ds is not None else data.default_dataset(progress=not args.no_progress)
        models.append(SimulatorOracle(ds.manifest, replicates=args.oracle))
    result = evaluate(ds, args.n, split=args.split, part=args.part, model=models, chemometric_methods=methods,
                      fraction=args.fraction, detect_au=args.detect_au, progress=not args.no_progress)
    with _whole(args.out) as tmp:
        paths = write_evaluation(result, tmp)
    print(table_markdown(result))
    print(f"wrote {Path(args.out) / Path(paths['md']).name}, {Path(args.out) / Path(paths['json']).name}")
    return 0
