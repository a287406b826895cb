"""`abcc bench`: score models on OpIRBench and write the leaderboard and figures."""
from __future__ import annotations

import argparse
from pathlib import Path

from .metrics import ALL_METRICS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="OpIRBench: score models, write the leaderboard (md/csv/json) and figures",
        description="Score one or more models on an OpIRBench split. The references `persistence` (every "
                    "frame = static spectrum) and `frame0` (every frame = true frame 0) are always included. "
                    "Writes leaderboard.md/.csv/.json and figures/ into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", action="append", default=[], metavar="NAME|PATH",
                   help="persistence, frame0, or the path of a saved model; repeat for several")
    p.add_argument("--split", default="random", choices=["random", "system", "loso"],
                   help="random 80/10/10, system (held-out systems), or loso (leave-one-system-out, all folds)")
    p.add_argument("--part", default="test", choices=["train", "val", "test"])
    p.add_argument("--data", default=None, metavar="PATH",
                   help="dataset directory (default: the embedded OpIRSim default dataset)")
    p.add_argument("--out", default="opirbench_out", metavar="DIR", help="output directory")
    p.add_argument("--metrics", default=",".join(ALL_METRICS), help="comma-separated metric names")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", default="auto",
                   help="CPU threads while scoring: a number, or auto (1 when the machine's load exceeds its "
                        "cores, else torch's default)")
    p.add_argument("--oracle", type=int, default=0, metavar="M",
                   help="also score the simulator oracle (OpIRSim data only): the Monte-Carlo mean of M "
                        "re-simulations with every draw no input reveals redrawn, i.e. what a perfect model "
                        "of these inputs could reach; 0: off")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _load_dataset(path):
    from .. import data

    if path is not None:
        return data.load(path)
    default = getattr(data, "default_dataset", None)
    if default is None:
        raise ValueError("the embedded default dataset needs abcc_fast.data.default_dataset (not available yet); "
                         "pass --data PATH to a dataset directory")
    return default()


def run(args) -> int:
    from .leaderboard import write_leaderboard
    from .protocol import REFERENCES, auto_threads, evaluate, load_predictor
    from .report import write_figures

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.threads == "auto":
        threads = auto_threads()
    else:
        try:
            threads = int(args.threads)
        except ValueError:
            raise ValueError(f"--threads must be a number or 'auto', got {args.threads!r}") from None
    specs = list(REFERENCES)  # references first, always
    for m in args.model:
        if m not in specs:
            specs.append(m)
    predictors = [(spec if spec in REFERENCES else Path(spec).name or spec, load_predictor(spec)) for spec in specs]
    dataset = _load_dataset(args.data)
    if args.oracle:
        from .oracle import SimulatorOracle

        oracle = SimulatorOracle(dataset.manifest, replicates=args.oracle)
        predictors.insert(len(REFERENCES), (oracle.name, oracle))
    results = []
    for name, fn in predictors:
        r = evaluate(fn, dataset, args.split, args.part, metrics=metrics, batch_size=args.batch_size,
                     progress=not args.no_progress, name=name, num_threads=threads)
        print(r.summary(), f"[{r.wall_time_s:.1f} s]", flush=True)
        results.append(r)
    out = Path(args.out)
    paths = write_leaderboard(results, dataset, out, args.split, args.part)
    print(Path(paths["md"]).read_text())
    if not args.no_figures:
        figs = write_figures(predictors, dataset, args.split, out, args.part)
        print(f"wrote {len(figs)} figures to {out / 'figures'}")
    print(f"wrote {paths['md']}, {paths['csv']}, {paths['json']}")
    return 0
