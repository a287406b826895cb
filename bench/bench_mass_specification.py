"""Is ABCC's mass-conservation term correctly specified? A check on OpIRSim's true fields.

Run: ``python -m bench.bench_mass_specification [--n 600]``; prints a Markdown table and writes
bench/results/mass_specification.json/.md.

The term ties one number per frame, the solvent stream's area lost since tau = 0, to the reaction
extents xi(tau) [K] after projecting out three nuisance columns per sample (a step after tau = 0,
tau, the salt polarisation). Here the simulator's own solvent stream, extents, film thickness and
polarisation of the first ``n`` samples of the default dataset's generator stand in for a perfect
model, so what the fits below leave unexplained is what the term penalises even in the truth:

- *global alpha*: area loss = xi . alpha with one alpha [K] for every cell (``mass_gain="global"``,
  the form in the cpu preset);
- *per-sample gain*: g_b xi . alpha (a cell's contact and penetration depth scale its areas);
- *two per-sample gains*: g1_b xi . alpha + g2_b L(tau), consumption and film displacement apart
  (the film thickness L is a fixed positive combination of the extents; ``mass_gain="sample"``).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from abcc_fast.data.simulator import OpIRSim, SimConfig

from .harness import machine_info, markdown_table, write_results


def residual(cols: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y [B, T] minus its per-sample least-squares fit on cols [B, T, J]. Exact least squares, not the
    model's ``constraints.project_out``: that one adds a 1e-6 ridge, which swamps columns as small as
    the extent profiles here (xi . alpha ~ 1e-5; with it the last fit below leaves 2.6 %, not 0.9 %)."""
    coef = torch.linalg.lstsq(cols, y[..., None]).solution
    return y - (cols @ coef)[..., 0]


def global_fit(cols: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One coefficient vector [J] for every sample: y [B, T] ~ cols [B, T, J] @ c."""
    return torch.linalg.lstsq(cols.reshape(-1, cols.shape[-1]), y.reshape(-1, 1)).solution[:, 0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="samples simulated (the default dataset's first n)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.n < 8:
        raise SystemExit("--n must be at least 8")
    torch.set_num_threads(args.threads)
    out = OpIRSim(SimConfig(T=32, W=512)).simulate(np.arange(args.n), seed=0, return_extras=True)
    f64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    solvent = f64(out["solvent"])
    area = (solvent[:, :1] - solvent).mean(-1)                                  # [B, T] area lost since tau = 0
    xi, film = f64(out["extent"]), f64(out["film_nm"])
    B, T = area.shape
    tau = torch.linspace(0.0, 1.0, T, dtype=torch.float64).expand(B, T)
    nuisance = torch.stack([(tau > 0).double(), tau, f64(out["polarisation"])], -1)
    spread = float((area - area.mean(1, keepdim=True)).pow(2).sum())
    a_left = residual(nuisance, area)
    left = float(a_left.pow(2).sum())
    xi_left = torch.stack([residual(nuisance, xi[..., k]) for k in range(xi.shape[-1])], -1)
    alpha = global_fit(xi_left, a_left)
    profile = xi @ alpha
    g = torch.ones(B, dtype=torch.float64)
    for _ in range(10):     # per-sample gain x one global alpha: alternate the two least-squares fits
        alpha = global_fit(xi_left * g[:, None, None], a_left)
        p = xi_left @ alpha
        g = (p * a_left).sum(1) / p.pow(2).sum(1).clamp_min(1e-30)
    fits = {
        "global alpha (mass_gain='global')": float((a_left - xi_left @ global_fit(xi_left, a_left)).pow(2).sum()),
        "per-sample gain x global alpha": float((a_left - g[:, None] * (xi_left @ alpha)).pow(2).sum()),
        "per-sample gains on xi . alpha and L (mass_gain='sample')":
            float(residual(torch.cat([nuisance, profile[..., None], film[..., None]], -1), area).pow(2).sum()),
    }
    rows = [{"quantity": "solvent area loss: variance over tau (per sample)", "value": spread / (B * T)},
            {"quantity": "left after the nuisance columns (share of the above)", "value": left / spread}]
    rows += [{"quantity": f"unexplained by {k} (share of what the nuisance left)", "value": v / left}
             for k, v in fits.items()]
    table = markdown_table(rows, [("quantity", "quantity", ""), ("value", "value", ".3g")])
    print(table)
    command = "python -m bench.bench_mass_specification " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = machine_info(torch.device("cpu"))
    md = (f"# The mass-conservation term against OpIRSim's true fields ({B} samples)\n\n"
          f"Command: `{command.strip()}`. Machine: {machine}.\n\n" + table)
    write_results("mass_specification", {"machine": machine, "rows": rows, "args": vars(args)}, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
