"""`abcc data generate | inspect | import`."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .._errors import Interrupted
from .._paths import check_output_dir
from ..data.format import load
from ..data.importer import import_csv
from ..data.simulator import default_dataset, default_dataset_path, generate
from ..viz.data_figures import write_overview


def register(sub) -> None:
    p = sub.add_parser("data", help="OpIRSim data: generate, inspect, import",
                       description="Generate the OpIRSim dataset, inspect a dataset, or import measured data.")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    g = dsub.add_parser("generate", help="generate an OpIRSim dataset (default: the 7,118-sample default)",
                        description="Simulate operando IR formation cycles of the 10 systems of "
                                    "docs/opirsim.md and write a dataset directory (manifest + safetensors).")
    g.add_argument("--out", type=Path, default=None,
                   help="output directory (default: the default-dataset cache path, $ABCC_DATA_DIR or "
                        "~/.cache/abcc_fast/...)")
    g.add_argument("--count", type=int, default=7118, help="number of samples (default 7118)")
    g.add_argument("--T", type=int, default=32, help="frames per sample (default 32)")
    g.add_argument("--W", type=int, default=512, help="wavenumber points (default 512)")
    g.add_argument("--range", type=float, nargs=2, default=(700.0, 1900.0), metavar=("LO", "HI"),
                   help="wavenumber range in cm^-1 (default 700 1900)")
    g.add_argument("--systems", type=str, default=None,
                   help="comma-separated system numbers of docs/opirsim.md (default: all 10)")
    g.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--force", action="store_true", help="replace --out if it already holds a dataset")
    g.set_defaults(func=_generate)

    i = dsub.add_parser("inspect", help="summarise a dataset and write figures",
                        description="Validate a dataset, print a summary, and optionally write figures.")
    i.add_argument("path", type=Path, nargs="?", default=None,
                   help="dataset directory (default: the embedded default dataset)")
    i.add_argument("--figures", type=Path, default=None, help="write PNG figures into this directory")
    i.add_argument("--samples", type=str, default="0", help="comma-separated sample rows for figures")
    i.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the shards")
    i.set_defaults(func=_inspect)

    m = dsub.add_parser("import", help="import measured CSV data into the dataset format",
                        description="Import one experiment: a frames CSV (wavenumber column + one column "
                                    "per frame), a time/voltage table CSV (one row per frame) and a static "
                                    "spectrum CSV (wavenumber, absorbance); resampled onto the grid.")
    m.add_argument("--frames", type=Path, required=True, help="frames CSV")
    m.add_argument("--table", type=Path, required=True, help="time/voltage CSV (time_s, voltage)")
    m.add_argument("--static", type=Path, required=True,
                   help="static spectrum: CSV (wavenumber, absorbance) or JCAMP-DX (.jdx/.dx, AFFN)")
    m.add_argument("--out", type=Path, required=True, help="output dataset directory")
    m.add_argument("--range", type=float, nargs=2, default=(700.0, 1900.0), metavar=("LO", "HI"))
    m.add_argument("--W", type=int, default=512)
    m.add_argument("--composition", type=str, default=None,
                   help="mole fractions, e.g. EC=0.46,DMC=0.46,LiPF6=0.08")
    m.add_argument("--electrode", type=str, default="graphite")
    m.add_argument("--system-name", type=str, default="measured")
    m.add_argument("--name", type=str, default=None)
    m.add_argument("--force", action="store_true", help="replace --out if it already holds a dataset")
    m.set_defaults(func=_import)


def _parse_systems(text):
    if not text:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--systems must be comma-separated numbers 1..10, got {text!r}") from None


def check_new_dataset(out: Path, force: bool) -> Path:
    """Refuse to replace an existing dataset (or any non-empty folder) at ``out`` without ``force``."""
    check_output_dir(out)
    if out.is_dir() and any(out.iterdir()) and not force:
        what = "a dataset" if (out / "manifest.json").exists() else "files"
        raise ValueError(f"--out {out} already exists and holds {what}; pass --force to replace it, or choose "
                         "another --out")
    return out


_KEPT = ("the dataset is written to a temporary folder and moved into place only when complete, so {out} "
         "is as it was before")


def _generate(args) -> int:
    out = check_new_dataset(Path(args.out or default_dataset_path(args.seed)), args.force)
    t0 = time.perf_counter()
    try:
        path = generate(out, n_samples=args.count, T=args.T, W=args.W, wn_range=tuple(args.range),
                        systems=_parse_systems(args.systems), seed=args.seed, progress=not args.no_progress)
    except KeyboardInterrupt:
        raise Interrupted(_KEPT.format(out=out)) from None
    print(f"wrote {args.count} samples to {path} in {time.perf_counter() - t0:.1f} s")
    return 0


def summary(ds) -> str:
    """A plain-text summary of a dataset."""
    m = ds.manifest
    lines = [f"dataset   {m.get('name')}  ({ds.root})",
             f"generator {m['generator'].get('name')} {m['generator'].get('version')} seed "
             f"{m['generator'].get('seed')}",
             f"samples   {len(ds)}   T={ds.T}   W={ds.W} over {float(ds.wavenumber[0]):.1f}-"
             f"{float(ds.wavenumber[-1]):.1f} cm^-1   synthetic={m.get('synthetic')}",
             f"shards    {len(m['shards'])}"]
    sysv = ds.system.numpy()
    dyn = (ds.frames - ds.static[:, None]).abs().amax(-1).mean(-1).numpy()
    lines.append("systems:")
    for s in m["systems"]:
        sel = sysv == s["index"]
        if not sel.any():
            continue
        extra = ""
        if ds.sei is not None:
            extra = f"  SEI max {float(ds.sei[torch_index(sel)][:, -1].amax(-1).mean()):.4f} AU"
        lines.append(f"  {s['index']:2d} #{s.get('number', '')!s:>2} {s['name']:32s} n={int(sel.sum()):5d}  "
                     f"|frames-static| {float(dyn[sel].mean()):.4f} AU  V {float(ds.voltage[torch_index(sel)].min()):.2f}"
                     f"..{float(ds.voltage[torch_index(sel)].max()):.2f}{extra}")
    lines.append("splits:")
    for name in ("random", "system"):
        if name in m["splits"]:
            sp = m["splits"][name]
            lines.append(f"  {name:7s} train {len(sp['train'])} val {len(sp['val'])} test {len(sp['test'])}"
                         + (f"  held out {sp.get('held_out_systems')}" if name == "system" else ""))
    lines.append(f"  loso    {len(m['splits'].get('loso', []))} folds")
    for name, st in m.get("normalization", {}).items():
        if name in ("random", "system"):
            lines.append(f"  norm[{name}] mean {st['mean']:.5f} std {st['std']:.5f}")
    return "\n".join(lines)


def torch_index(mask):
    return torch.as_tensor(mask)


def _inspect(args) -> int:
    if args.figures:
        check_output_dir(args.figures, "--figures")
    ds = load(args.path, verify=not args.no_verify) if args.path else default_dataset()
    print(summary(ds))
    if args.figures:
        rows = [int(s) for s in args.samples.split(",") if s.strip()]
        for r in rows:
            if not 0 <= r < len(ds):
                raise ValueError(f"--samples: row {r} out of range 0..{len(ds) - 1}")
        paths = write_overview(ds, args.figures, rows)
        print(f"wrote {len(paths)} figures to {args.figures}")
    return 0


def _import(args) -> int:
    check_new_dataset(Path(args.out), args.force)
    path = import_csv(args.frames, args.table, args.static, args.out, wn_range=tuple(args.range), W=args.W,
                      composition=args.composition, electrode=args.electrode, system_name=args.system_name,
                      name=args.name)
    print(f"imported 1 sample into {path}")
    return 0
