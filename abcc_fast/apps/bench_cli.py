"""`abcc bench`: score models on OpIRBench and write the leaderboard and figures."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import data
from .._atomic import atomic_directory
from .._errors import Interrupted
from .._paths import check_output_dir, check_replaceable_output
from ..opirbench.leaderboard import write_leaderboard
from ..opirbench.metrics import ALL_METRICS
from ..opirbench.oracle import SimulatorOracle, training_knowledge
from ..opirbench.protocol import REFERENCES, NoModelLoader, auto_threads, evaluate, load_predictor
from ..opirbench.report import per_frame_figure, write_figures
from ..presets import CLI_PRESETS
from ..train.predict import load_predictor as load_saved_model
from .suite import run_suite
from .._cli_format import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="OpIRBench: score models, write the leaderboard (md/csv/json) and figures",
        description="Score one or more models on an OpIRBench split. The references `persistence` (every "
                    "frame = static spectrum) and `frame0` (every frame = true frame 0) are always included. "
                    "Writes leaderboard.md/.csv/.json and figures/ into --out. With --all: the full table -- "
                    "ABCC, its ablations and every baseline trained on both splits with --seeds seeds under one "
                    "budget, mean +- std, references and the simulator oracle, a figure of the best three "
                    "(resumable: rerun the same command to continue).",
        formatter_class=HelpFormatter)
    p.add_argument("--model", action="append", default=[], metavar="NAME|PATH",
                   help="persistence, frame0, or the path of a saved model; repeat for several")
    p.add_argument("--split", default="random",
                   help="random 80/10/10, system (held-out systems), loso (leave-one-system-out, all folds), "
                        "loso:<k> (one fold), inner or inner:<k> (the system split's training systems held out "
                        "one at a time: choose a model for unseen systems without its test systems)")
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
    p.add_argument("--transfer-oracle", action="store_true",
                   help="with --oracle M: also the oracle without the electrode chemistry that the split's training "
                        "part does not show (a reaction sped up on one electrode, Si cracking): what a model that "
                        "learned all the training part shows could reach on held-out systems")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    a = p.add_argument_group("full table (--all; abcc_fast.apps.suite)")
    a.add_argument("--all", action="store_true",
                   help="train and score every entry x split (random, system) x seed; writes table.md/.csv/.json "
                        "(the simulator oracle is always a row: --oracle M replicates, default 16)")
    a.add_argument("--entries", default=None, metavar="E1,E2",
                   help="entries of --all (default: all): abcc, abcc_no_physics, abcc_no_spectrum, abcc_one_stream, "
                        "abcc_no_labels, abcc_no_extents, abcc_mf_sources, abcc_chemistry, "
                        "abcc_steps<N>, mlp, cnn, gru, patchtst, dlinear, convlstm, simvp, cfm, meanflow_noise")
    a.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per entry and split")
    a.add_argument("--preset", default="cpu", choices=list(CLI_PRESETS),
                   help="training budget + model presets (the same preset for ABCC and every baseline)")
    a.add_argument("--steps", type=int, default=None,
                   help="the budget: training steps for every entry, the same for all (default: the preset's)")
    a.add_argument("--max-time", type=float, default=None, metavar="S",
                   help="optional wall-clock safety cap per training run in seconds: a run it ends early is marked "
                        "capped in the table (with a warning); it never changes the step schedule")
    a.add_argument("--sweep", action="store_true",
                   help="every trained entry (ABCC, its ablations, the baselines): choose lr among --sweep-lr x the "
                        "preset's lr by val-part MSE (seed 0)")
    a.add_argument("--sweep-lr", default="0.5,1,2", metavar="F1,F2", help="lr factors of the sweep")
    a.add_argument("--splits", default="random,system", help="splits of --all")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _load_dataset(path):
    return data.load(path) if path is not None else data.default_dataset()


def load_model_predictor(spec: str):
    """``--model NAME|PATH``: a reference, a path a registered loader takes, or a saved ABCC or baseline."""
    try:
        return load_predictor(spec)
    except NoModelLoader:
        return load_saved_model(spec)


def run(args) -> int:
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if getattr(args, "all", False):
        check_output_dir(args.out)      # the suite resumes into --out: it is kept, not replaced
        return run_all(args, metrics)
    out = check_replaceable_output(args.out, "leaderboard.json", "abcc bench")
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
    predictors = [(spec if spec in REFERENCES else Path(spec).name or spec, load_model_predictor(spec))
                  for spec in specs]
    dataset = _load_dataset(args.data)
    if args.transfer_oracle and not args.oracle:
        raise ValueError("--transfer-oracle needs --oracle M (the number of re-simulations, e.g. 16)")
    if args.oracle:
        oracle = SimulatorOracle(dataset.manifest, replicates=args.oracle)
        predictors.insert(len(REFERENCES), (oracle.name, oracle))
    if args.transfer_oracle:
        if args.split in ("loso", "inner"):
            raise ValueError("--transfer-oracle: each loso fold has its own training part; score one fold at a time "
                             "(--split loso:<k> or inner:<k>)")
        know = training_knowledge(dataset, args.split)
        oracle = SimulatorOracle(dataset.manifest, replicates=args.oracle, knowledge=know)
        print(f"transfer oracle on {args.split}: left out {', '.join(know['unseen']) or 'nothing'}", flush=True)
        predictors.insert(len(REFERENCES) + 1, (oracle.name, oracle))
    results = []
    for name, fn in predictors:
        r = evaluate(fn, dataset, args.split, args.part, metrics=metrics, batch_size=args.batch_size,
                     progress=not args.no_progress, name=name, num_threads=threads)
        print(r.summary(), f"[{r.wall_time_s:.1f} s]", flush=True)
        results.append(r)
    figs = []
    with atomic_directory(out) as tmp:   # the whole folder is replaced: no figure of an earlier run survives
        paths = write_leaderboard(results, dataset, tmp, args.split, args.part)
        board = Path(paths["md"]).read_text()
        if not args.no_figures:
            figs = write_figures(predictors, dataset, args.split, tmp, args.part)
            curves = {r.model: r.per_frame["mse"] for r in results if "mse" in r.per_frame}
            if curves:
                figs.append(per_frame_figure(curves, tmp / "figures" / "mse_per_frame.png",
                                             f"MSE per frame, split '{args.split}' ({args.part})"))
    print(board)
    if not args.no_figures:
        print(f"wrote {len(figs)} figures to {out / 'figures'}")
    print(", ".join(f"wrote {out / Path(paths[k]).name}" if i == 0 else str(out / Path(paths[k]).name)
                    for i, k in enumerate(("md", "csv", "json"))))
    return 0


def run_all(args, metrics) -> int:
    """``abcc bench --all``: the suite (abcc_fast.apps.suite.run_suite)."""
    if args.model:
        raise ValueError("--all trains its own entries; pass --entries instead of --model")
    try:
        factors = [float(f) for f in args.sweep_lr.split(",") if f.strip()]
    except ValueError:
        raise ValueError(f"--sweep-lr must be comma-separated numbers, got {args.sweep_lr!r}") from None
    try:
        paths = run_suite(args.out, args.data, entries=args.entries,
                          splits=[s.strip() for s in args.splits.split(",") if s.strip()],
                          seeds=args.seeds, preset=args.preset, steps=args.steps, max_time_s=args.max_time,
                          sweep=args.sweep, sweep_lr=factors, metrics=metrics, oracle_replicates=args.oracle or 16,
                          figures=not args.no_figures, progress=not args.no_progress)
    except KeyboardInterrupt:
        raise Interrupted(f"every finished run is kept in {args.out}; rerun the same command to continue") from None
    print(Path(paths["md"]).read_text())
    print(f"wrote {paths['md']}, {paths['csv']}, {paths['json']}"
          + (f" and {len(paths['figures'])} figures" if paths["figures"] else ""))
    return 1 if paths["failures"] else 0
