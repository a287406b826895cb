"""Torch datasets over an :class:`~abcc_fast.data.format.OpIRDataset` for training.

``FramePairs`` yields one sample per item with ``pairs`` (r, tau) frame pairs drawn for the
MeanFlow objective: normalised times tau_k = k / (T - 1), r <= tau; a share of the pairs has
r = tau (instantaneous velocity) and a share starts at r = 0, where the state x_r is the *static*
spectrum (a separate measurement) with probability ``p_static`` and frame 0 otherwise.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .format import OpIRDataset


class FramePairs(Dataset):
    """Samples of a split with (r, tau) frame pairs.

    Args:
        dataset: the loaded dataset.
        split: split name ("random", "system", "loso:<k>") or None for every sample.
        part: "train" | "val" | "test".
        pairs: (r, tau) pairs per sample.
        p_equal: share of pairs with r = tau.
        p_r0: share of pairs with r = 0 (jumps from the initial state).
        p_static: probability that an r = 0 pair starts from the static spectrum instead of frame 0.
        normalize: z-score absorbances with the training split's (mean, std) (manifest).
        seed: base seed; pairs for item i in epoch e come from a generator seeded by (seed, e, i).

    Each item is a dict of tensors::

        static [W], frames [T, W], voltage [T], time_s [T], tau_grid [T], composition [C],
        electrode [], system [], index [],
        r_idx [P], tau_idx [P] (int64 frame indices), r [P], tau [P] (float32 in [0, 1]),
        x_r [P, W], x_tau [P, W], from_static [P] (bool),
        solvent, sei [T, W] and extent [T, K] when the dataset is synthetic.
    """

    def __init__(self, dataset: OpIRDataset, split: Optional[str] = None, part: str = "train", *,
                 pairs: int = 4, p_equal: float = 0.25, p_r0: float = 0.25, p_static: float = 0.5,
                 normalize: bool = True, seed: int = 0):
        self.data = dataset.split(split, part) if split else dataset
        self.pairs = int(pairs)
        if self.pairs < 1:
            raise ValueError(f"pairs must be >= 1, got {pairs}")
        for name, v in (("p_equal", p_equal), ("p_r0", p_r0), ("p_static", p_static)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        self.p_equal, self.p_r0, self.p_static = p_equal, p_r0, p_static
        self.seed = int(seed)
        self.epoch = 0
        if normalize:
            self.mean, self.std = dataset.norm_stats(split or "random")
        else:
            self.mean, self.std = 0.0, 1.0
        T = self.data.T
        self.tau_grid = torch.arange(T, dtype=torch.float32) / max(T - 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """Draw new pairs in the next epoch (call from the training loop)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def _z(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def __getitem__(self, i: int) -> dict:
        item = self.data[i]
        T = int(item["frames"].shape[0])
        rng = np.random.default_rng([self.seed, self.epoch, int(item["index"])])
        P = self.pairs
        r = rng.integers(0, T, P)
        tau = r + np.floor(rng.random(P) * (T - r)).astype(np.int64)
        kind = rng.random(P)
        equal = kind < self.p_equal
        start0 = (kind >= self.p_equal) & (kind < self.p_equal + self.p_r0)
        tau = np.where(equal, r, tau)
        r = np.where(start0, 0, r)
        tau = np.where(start0 & (tau == 0) & (T > 1), rng.integers(1, max(T, 2), P), tau)
        from_static = (r == 0) & (rng.random(P) < self.p_static)
        r_t, tau_t = torch.as_tensor(r), torch.as_tensor(tau)
        frames = self._z(item["frames"])
        static = self._z(item["static"])
        x_r = frames[r_t].clone()
        fs = torch.as_tensor(from_static)
        if fs.any():
            x_r[fs] = static
        out = {
            "static": static, "frames": frames, "voltage": item["voltage"], "time_s": item["time_s"],
            "tau_grid": self.tau_grid, "composition": item["composition"], "electrode": item["electrode"],
            "system": item["system"], "index": item["index"],
            "r_idx": r_t, "tau_idx": tau_t, "r": self.tau_grid[r_t], "tau": self.tau_grid[tau_t],
            "x_r": x_r, "x_tau": frames[tau_t], "from_static": fs,
        }
        if "solvent" in item:
            out["solvent"] = item["solvent"] / self.std   # additive parts: scale only
            out["sei"] = item["sei"] / self.std
            out["extent"] = item["extent"]
        return out
