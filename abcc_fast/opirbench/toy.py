"""A small synthetic OpIR dataset for tests and timing when the OpIRSim default is not at hand.

Not chemistry: a few Lorentzian solvent bands that deplete and drift with voltage, SEI bands that
grow below an onset, a sloped baseline and noise. Same schema and manifest keys as a real dataset
(built through `abcc_fast.data.from_tensors`, with the real split and normalisation code).
"""
from __future__ import annotations

import torch

from ..data import from_tensors, make_splits, normalization_stats

TOY_MARKER_WINDOWS = {"ec_ring": [700.0, 760.0], "co_stretch": [1700.0, 1850.0], "sei_carbonate": [1400.0, 1550.0]}


def lorentzian(wavenumber: torch.Tensor, center, hwhm, height) -> torch.Tensor:
    """height / (1 + ((nu - center) / hwhm)^2); center/hwhm/height broadcast against [..., 1]."""
    return height / (1.0 + ((wavenumber - center) / hwhm) ** 2)


def toy_dataset(n_samples: int = 200, T: int = 32, W: int = 512, n_systems: int = 10, seed: int = 0,
                synthetic_streams: bool = True, lo: float = 700.0, hi: float = 1900.0):
    g = torch.Generator().manual_seed(seed)
    S = n_samples
    wn = torch.linspace(lo, hi, W)
    system = torch.arange(S) % n_systems
    tau = torch.linspace(0, 1, T)
    voltage = (3.0 - 2.99 * tau).expand(S, T).contiguous()
    time_s = (tau * 3600.0).expand(S, T).contiguous()
    centers = torch.tensor([728.0, 1270.0, 1775.0, 1750.0])
    heights = 0.2 + 0.3 * torch.rand(S, 1, 4, generator=g)
    drift = (2.0 + 4.0 * torch.rand(S, 1, 4, generator=g)) * tau.view(1, T, 1)        # cm^-1
    deplete = 1.0 - 0.3 * torch.rand(S, 1, 1, generator=g) * tau.view(1, T, 1)
    c = (centers.view(1, 1, 4) + drift).unsqueeze(-1)                                    # [S, T, 4, 1]
    solvent = lorentzian(wn, c, 8.0, (heights * deplete).unsqueeze(-1)).sum(2)           # [S, T, W]
    onset = 0.3 + 0.4 * torch.rand(S, 1, generator=g)
    growth = ((tau.view(1, T) - onset).clamp_min(0) / (1 - onset)) * (0.05 + 0.1 * torch.rand(S, 1, generator=g))
    sei = (lorentzian(wn, 1480.0, 25.0, 1.0) + lorentzian(wn, 1650.0, 15.0, 0.6)) * growth.unsqueeze(-1)
    baseline = (0.02 * torch.rand(S, 1, 1, generator=g)) * (wn - lo) / (hi - lo)
    frames = solvent + sei + baseline + 0.003 * torch.randn(S, T, W, generator=g)
    static = solvent[:, 0] + 0.01 * torch.rand(S, 1, generator=g) + 0.003 * torch.randn(S, W, generator=g)
    composition = torch.rand(S, 3, generator=g)
    composition = composition / composition.sum(1, keepdim=True)
    tensors = {"wavenumber": wn, "static": static.float(), "frames": frames.float(), "voltage": voltage,
               "time_s": time_s, "system": system.long(), "composition": composition,
               "electrode": (system % 3).long()}
    if synthetic_streams:
        tensors.update(solvent=solvent.float(), sei=sei.float(), extent=growth.unsqueeze(-1).float())
    splits = make_splits(system, n_systems=n_systems, seed=seed)
    manifest = {
        "schema_version": 1, "name": "opirbench-toy", "generator": {"name": "opirbench.toy", "version": "1",
                                                                     "seed": seed, "config": {"S": S}},
        "wavenumber": {"start": lo, "stop": hi, "points": W}, "T": T,
        "systems": [{"index": i, "name": f"toy{i}", "electrolyte": "toy", "electrode": "toy"}
                    for i in range(n_systems)],
        "components": ["a", "b", "c"], "electrodes": ["e0", "e1", "e2"], "reactions": ["r0"],
        "marker_windows": dict(TOY_MARKER_WINDOWS), "shards": [], "splits": splits,
        "normalization": normalization_stats(frames, splits), "synthetic": synthetic_streams,
    }
    return from_tensors(tensors, manifest)
