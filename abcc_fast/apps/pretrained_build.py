"""Build the packaged pretrained models: train, score on OpIRBench, write weights + card atomically.

    python -m abcc_fast.apps.pretrained_build --split random,system --steps 6000 --out abcc_fast/pretrained
    make pretrained                                   # the same with the defaults below

For each split: an ABCC (``--preset``) is trained from scratch on the split's training part of the
dataset (default: the embedded OpIRSim default dataset), scored on its test part with OpIRBench
beside ``persistence``, ``frame0`` and the simulator oracle (the scoring of ``abcc demo``), and
written to ``OUT/<name>/`` (``opirsim`` for random, ``opirsim-system`` for system) as one atomic
folder: ``model.safetensors``, ``config.json``, ``training_data.json``, ``log.csv`` and
``card.json`` (abcc_fast/apps/modelcard.py). A model larger than 10 MB is refused before training
(parameter estimate) and again before writing. Then the generated tables of docs/pretrained.md are
rendered from the cards in OUT (when that file exists beside the package, or with ``--docs``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional

import torch

from .. import __version__
from .._atomic import atomic_directory
from .._cli_format import HelpFormatter
from ..data import default_dataset, load
from ..data.manifest import dataset_identity
from ..model import ABCC, ABCCConfig, ABCCPredictor, load_predictor
from ..opirbench import manifest_sha256
from ..presets import CLI_PRESETS as PRESETS
from ..pretrained import BUILD_COMMAND, CARD_NAME, LOG_NAME, MAX_BYTES, PACKAGE_DIR, SPLIT_MODELS
from ..train.trainer import TrainConfig, train
from . import modelcard as C
from .demo import score_split

MODEL_FILES = ("model.safetensors", "config.json", "training_data.json")
REPO_ROOT = PACKAGE_DIR.parents[1]


def _say(msg: str) -> None:
    print(f"[pretrained build {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=BUILD_COMMAND, description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("--split", default="random,system",
                    help="comma-separated OpIRBench splits, one model each: random (-> opirsim), system "
                         "(-> opirsim-system)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's budget)")
    ap.add_argument("--preset", default="cpu", choices=list(PRESETS), help="model + training preset")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, metavar="PATH", help="dataset directory (default: the embedded dataset)")
    ap.add_argument("--out", default=str(PACKAGE_DIR), metavar="DIR", help="where OUT/<name>/ folders are written")
    ap.add_argument("--name", default=None, help="model name (only with a single --split; default: per split)")
    ap.add_argument("--docs", default=None, metavar="FILE",
                    help="markdown file whose generated block gets the cards' tables (default: docs/pretrained.md "
                         "of the checkout when --out is the package folder)")
    ap.add_argument("--no-docs", action="store_true", help="do not touch any docs file")
    ap.add_argument("--docs-only", action="store_true",
                    help="train nothing: only render the docs tables again from the cards in --out")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--work", default=None, metavar="DIR",
                    help="keep the training run here (default: a temporary folder)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    args.splits = [s.strip() for s in args.split.split(",") if s.strip()]
    bad = [s for s in args.splits if s not in SPLIT_MODELS]
    if bad or not args.splits:
        ap.error(f"--split: unknown {bad or args.split!r}; choose from {', '.join(SPLIT_MODELS)} (comma-separated)")
    if args.name is not None and len(args.splits) != 1:
        ap.error("--name needs a single --split")
    if args.steps is not None and args.steps < 1:
        ap.error(f"--steps must be >= 1, got {args.steps}")
    return args


def _state_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def canonical_command(args, split: str) -> str:
    """The command that rebuilds this one model (every setting explicit)."""
    parts = [*shlex.split(BUILD_COMMAND), "--split", split, "--preset", args.preset,
             "--steps", str(args.train_cfg.steps), "--batch-size", str(args.train_cfg.batch_size),
             "--seed", str(args.seed)]
    if args.data:
        parts += ["--data", args.data]
    return shlex.join(parts)


def train_one(ds, split: str, args, run_dir: Path):
    """Train the split's model from scratch; returns the TrainResult (refuses > MAX_BYTES first)."""
    torch.manual_seed(args.seed)
    model = ABCC(ABCCConfig.from_dataset(ds, split, preset=PRESETS[args.preset]))
    est = _state_bytes(model)
    if est > MAX_BYTES:
        raise ValueError(f"preset {args.preset!r}: the weights alone take {est / 1e6:.1f} MB, above the "
                         f"{MAX_BYTES / 1e6:.1f} MB a packaged model may have; choose a smaller preset (cpu)")
    _say(f"training ABCC ({PRESETS[args.preset]}, {sum(p.numel() for p in model.parameters()):,} parameters) on "
         f"split '{split}': {args.train_cfg.steps} steps, batch {args.train_cfg.batch_size}")
    return train(model, ds, split=split, config=args.train_cfg, out_dir=run_dir, resume=False,
                 progress=not args.no_progress)


def score(ds, split: str, model_dir: Path, args) -> tuple[dict, dict]:
    """OpIRBench on the test part (the demo's references + oracle; on the GPU when there is one) and
    the fixed-subset MSE, always on the CPU in float32, where tests/test_pretrained.py recomputes it."""
    results = score_split(ds, split, load_predictor(str(model_dir)), progress=not args.no_progress)
    cpu = ABCCPredictor(ABCC.from_pretrained(model_dir, map_location="cpu"), str(model_dir))
    subset = C.subset_mse(cpu, ds, split)
    full = next(r for r in results if r.model == "ABCC")
    check = float(full.per_sample["mse"][:subset["first"]].mean())
    subset["mse_full_evaluation"] = check
    if abs(check - subset["mse"]) > subset["rtol"] * max(abs(check), 1e-12):
        warnings.warn(f"the subset MSE on the CPU ({subset['mse']:.8g}) differs from the same {subset['first']} "
                      f"samples of the full evaluation ({check:.8g}) by more than {subset['rtol']:g} (relative): the "
                      f"evaluation device computes differently (TF32?)", stacklevel=2)
    return C.eval_block(results), subset


def make_card(name: str, split: str, ds, args, result, ev: dict, subset: dict, t_start: float, load0) -> dict:
    cfg = args.train_cfg
    model = result.model
    mach = C.machine(args.device_used)
    mach["load_average_at_start"] = load0
    return {
        "card_version": C.CARD_VERSION, "name": name, "model_type": "abcc", "split": split,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": canonical_command(args, split),
        "invoked_as": shlex.join([*shlex.split(BUILD_COMMAND), *args.argv]),
        "git": args.git, "abcc_fast_version": __version__,
        "dataset": {"name": ds.manifest.get("name"), "manifest_sha256": manifest_sha256(ds),
                    "identity": dataset_identity(ds), "samples": len(ds), "generator": ds.manifest.get("generator")},
        "training": {"steps": int(result.steps_done), "steps_budget": int(cfg.steps), "batch_size": int(cfg.batch_size),
                     "seed": int(args.seed), "preset": PRESETS[args.preset], "train_config": cfg.to_json(),
                     "result": {k: v for k, v in result.to_json().items()
                                if k not in ("run_dir", "model_dir", "best_dir", "log_path")},
                     "wall_time_s": round(float(result.total_time_s), 1),
                     "build_wall_time_s": round(time.perf_counter() - t_start, 1), "machine": mach},
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "opirbench": ev, "subset": subset, "knows": C.knowledge(ds, split),
        "intended_use": C.INTENDED_USE,
        "limits": C.limits(getattr(model.config, "composition_encoding", "vocabulary")),
    }


def write_model(out: Path, name: str, model_dir: Path, log_path: Path, card: dict) -> Path:
    """OUT/name/ as one atomic folder; refused (nothing written) above MAX_BYTES."""
    target = out / name
    with atomic_directory(target) as tmp:
        for f in MODEL_FILES:
            shutil.copyfile(model_dir / f, tmp / f)
        if log_path.is_file():
            shutil.copyfile(log_path, tmp / LOG_NAME)
        size = 0
        while card.get("size_bytes") != size:              # the card states the folder's size, itself included
            card["size_bytes"] = size
            (tmp / CARD_NAME).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
            size = C.folder_bytes(tmp)
        if size > MAX_BYTES:
            raise ValueError(f"{name}: the packaged folder would take {size / 1e6:.2f} MB, above the "
                             f"{MAX_BYTES / 1e6:.1f} MB limit; nothing was written (choose a smaller preset)")
    return target


def build_one(ds, split: str, args, work: Path) -> dict:
    t_start = time.perf_counter()
    load0 = C.machine("cpu")["load_average"]
    name = args.name or SPLIT_MODELS[split]
    result = train_one(ds, split, args, work / split)
    _say(f"  {result.steps_done} steps in {result.total_time_s:.0f} s; scoring OpIRBench {split}/test")
    ev, subset = score(ds, split, Path(result.model_dir), args)
    card = make_card(name, split, ds, args, result, ev, subset, t_start, load0)
    target = write_model(Path(args.out), name, Path(result.model_dir), Path(result.log_path), card)
    m = ev["models"]
    _say(f"  wrote {target} ({card['size_bytes'] / 1e6:.2f} MB): test MSE ABCC {m['ABCC']['mse']:.5f}, persistence "
         f"{m['persistence']['mse']:.5f}" + (f", oracle {m['oracle']['mse']:.5f}" if "oracle" in m else ""))
    return card


def docs_target(args) -> Optional[Path]:
    if args.no_docs:
        return None
    if args.docs:
        return Path(args.docs)
    doc = REPO_ROOT / "docs" / "pretrained.md"
    same = Path(args.out).resolve() == PACKAGE_DIR
    return doc if same and doc.is_file() else None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size)) if v is not None}
    args.train_cfg = TrainConfig.preset_named(args.preset, seed=args.seed, device=args.device, **overrides).validate()
    args.device_used = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.git = C.git_state(REPO_ROOT)        # before this build rewrites any tracked file
    doc = docs_target(args)
    if doc is not None and not doc.is_file():
        raise FileNotFoundError(f"--docs {doc} does not exist")
    if args.docs_only:
        if doc is None:
            raise ValueError("--docs-only: no docs file to render (give --docs FILE, or --out the package folder)")
        return write_docs(doc, Path(args.out))
    ds = load(args.data) if args.data else default_dataset(progress=not args.no_progress)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="abcc_pretrained_"))
    try:
        for split in args.splits:
            build_one(ds, split, args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return write_docs(doc, Path(args.out)) if doc is not None else 0


def write_docs(doc: Path, out: Path) -> int:
    """Render the tables of every card in ``out`` into the generated block of ``doc``."""
    cards = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob(f"*/{CARD_NAME}"))]
    C.update_docs(doc, cards)
    _say(f"updated the generated tables of {doc} from {len(cards)} model cards")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as err:
        print(f"{BUILD_COMMAND}: error: {err}", file=sys.stderr)
        sys.exit(2)
