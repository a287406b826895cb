"""How much of what is learnable lies outside ABCC's output span, and how much of the static spectrum
is its own measurement's noise.

Run: ``python -m bench.bench_output_span [--split random] [--n 256] [--replicates 16]``; prints
a Markdown table and writes bench/results/output_span_<split>.json/.md.

- *oracle change outside the span*: the simulator oracle's predicted change, E[frame_k] - static
  (the learnable part of the frames), projected on the span of ABCC's output rows for one sample:
  the electrolyte templates, the film rows (static x nu', nu'^2, and with ``film_constant`` static x
  1), the SEI templates and the baseline polynomials. The mean square of what is left (z-units^2,
  per point and frame) is what a model restricted to that span cannot predict, however well trained.
- *static outside templates + baseline*: the static spectrum's part outside the span of the
  templates and the baseline polynomials (``clean_static``'s row): its noise and atmosphere, which
  the frames do not share; and how much persistence improves when that part is subtracted.
"""
from __future__ import annotations

import argparse
import sys

import torch

from abcc_fast.data import default_dataset
from abcc_fast.model import ABCC, ABCCConfig
from abcc_fast.model.backbone import legendre_basis, orthonormal_span
from abcc_fast.opirbench import SimulatorOracle

from .harness import machine_info, markdown_table, write_results


def outside(rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x [..., W] minus its least-squares projection on the span of rows [R, W]."""
    q = orthonormal_span(rows, rtol=1e-10).to(x.dtype)
    return x - (x @ q) @ q.T


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="random")
    ap.add_argument("--n", type=int, default=256, help="test samples for the oracle part")
    ap.add_argument("--replicates", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = default_dataset(progress=False)
    cfg = ABCCConfig.from_dataset(ds, args.split, film_constant=True, clean_static=True)
    backbone = ABCC(cfg).backbone
    head = backbone.head_solvent
    std2 = cfg.norm_std ** 2
    test = ds.split(args.split, "test")
    templates = head.solvent_templates.double()
    sei = backbone.head_sei.sei_templates.double()
    legendre = legendre_basis(cfg.W, cfg.baseline_basis).double()

    n = min(args.n, len(test))
    static = test.static[:n].double()
    z_static = (static - cfg.norm_mean) / cfg.norm_std
    oracle = SimulatorOracle(ds.manifest, replicates=args.replicates)
    change = oracle({"static": test.static[:n], "index": test.index[:n]})["frames"].double()[:, 1:] - static[:, None]
    film = head.film_rows(z_static).double()                    # [n, 4, W]: static x 1, nu', nu'^2; outside
    spans = {"templates, static x nu', nu'^2, SEI templates, baseline": lambda b: [film[b, 1:3]],
             "... and static x 1 (film_constant)": lambda b: [film[b, 0:3]]}
    rows = []
    for name, extra in spans.items():
        left = sum(float(outside(torch.cat([templates, sei, legendre, *extra(b)]), change[b]).pow(2).mean())
                   for b in range(n)) / n
        rows.append({"quantity": f"oracle change outside: {name}", "samples": n, "mean square (z^2)": left / std2})
    all_static = test.static.double()
    noise = outside(torch.cat([templates, legendre]), all_static)
    frames = test.frames.double()[:, 1:]
    gain = float((frames - all_static[:, None]).pow(2).mean() - (frames - (all_static - noise)[:, None]).pow(2).mean())
    rows.append({"quantity": "static outside templates + baseline", "samples": len(test),
                 "mean square (z^2)": float(noise.pow(2).mean()) / std2})
    rows.append({"quantity": "persistence MSE gained by subtracting it", "samples": len(test),
                 "mean square (z^2)": gain / std2})
    table = markdown_table(rows, [("quantity", "quantity", ""), ("samples", "samples", "d"),
                                  ("mean square (z^2)", "mean square (z-units^2 per point)", ".3g")])
    print(table)
    command = "python -m bench.bench_output_span " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = machine_info(torch.device("cpu"))
    md = (f"# ABCC's output span and the static spectrum's own noise ({args.split} split)\n\n"
          f"Command: `{command.strip()}`. Machine: {machine}.\n\n" + table)
    write_results(f"output_span_{args.split}", {"machine": machine, "rows": rows, "args": vars(args)}, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
