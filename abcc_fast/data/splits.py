"""OpIRBench splits and the normalisation statistics stored in the manifest.

Indices are *global sample indices* (rows of the full dataset). ``system`` values are 0-based
positions in ``manifest["systems"]``; the default held-out systems are 2 (LP30 ‖ Cu) and 5
(EC:DEC + FEC ‖ Si) *as numbered in docs/opirsim.md*, i.e. positions 1 and 4.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

SPLIT_SEED_OFFSET = 0x5EED  # splits use their own stream, so they do not depend on sample draws
DEFAULT_HELD_OUT_NUMBERS = (2, 5)  # docs/opirsim.md numbering (1-based)


def _stratified(system: np.ndarray, idx: np.ndarray, fractions: Sequence[float],
                rng: np.random.Generator) -> list[list[int]]:
    """Split ``idx`` into len(fractions) parts, per system, with the given fractions.

    Per-system counts are within 1 of fraction * n; the fractional remainders are carried from
    one system to the next (largest remainder first), so small systems do not all round the small
    parts (val/test) down to zero and the global totals follow the fractions.
    """
    frac = np.asarray(fractions, dtype=float)
    parts: list[list[int]] = [[] for _ in fractions]
    carry = np.zeros(frac.size)
    for s in np.unique(system[idx]):
        members = idx[system[idx] == s]
        members = members[rng.permutation(members.size)]
        n = members.size
        want = frac * n + carry
        # a negative carry can push floor(want) below zero: a negative count would make np.split
        # hand the same samples to two parts
        counts = np.clip(np.floor(want).astype(int), 0, np.ceil(frac * n).astype(int))
        while counts.sum() < n:
            j = int(np.argmax(np.where(counts < np.ceil(frac * n), want - counts, -np.inf)))
            counts[j] += 1
        while counts.sum() > n:
            j = int(np.argmax(np.where(counts > 0, counts - want, -np.inf)))
            counts[j] -= 1
        carry = want - counts
        for p, chunk in enumerate(np.split(members, np.cumsum(counts)[:-1])):
            parts[p].extend(int(i) for i in chunk)
    return [sorted(p) for p in parts]


def make_splits(system: torch.Tensor, n_systems: int, seed: int = 0,
                held_out_numbers: Sequence[int] = DEFAULT_HELD_OUT_NUMBERS) -> dict:
    """Build the ``random``, ``system`` and ``loso`` splits from the per-sample system labels.

    - ``random``: 80/10/10 train/val/test, stratified by system, fixed seed.
    - ``system``: test = every sample of the held-out systems (docs/opirsim.md numbers, default
      2 and 5); the other systems are split 90/10 train/val, stratified.
    - ``loso``: one fold per system present; fold k tests on one system, the rest 90/10.

    When the held-out systems are absent (imported data), the highest system index present is
    held out instead, if at least two systems exist.
    """
    sysv = np.asarray(torch.as_tensor(system).cpu().numpy(), dtype=np.int64)
    rng = np.random.default_rng([int(seed), SPLIT_SEED_OFFSET])
    all_idx = np.arange(sysv.size)
    tr, va, te = _stratified(sysv, all_idx, (0.8, 0.1, 0.1), rng)
    splits: dict = {"random": {"train": tr, "val": va, "test": te, "fractions": [0.8, 0.1, 0.1],
                               "stratified_by": "system"}}

    present = sorted(int(s) for s in np.unique(sysv))
    held = [n - 1 for n in held_out_numbers if (n - 1) in present]
    if not held and len(present) >= 2:
        held = [present[-1]]
    rest = all_idx[~np.isin(sysv, held)]
    tr, va = _stratified(sysv, rest, (0.9, 0.1), rng)
    splits["system"] = {"train": tr, "val": va,
                        "test": [int(i) for i in all_idx[np.isin(sysv, held)]],
                        "held_out_systems": [h + 1 for h in held],   # docs/opirsim.md numbers
                        "held_out_indices": held}                   # positions in manifest["systems"]
    folds = []
    for s in present:
        rest = all_idx[sysv != s]
        tr, va = _stratified(sysv, rest, (0.9, 0.1), rng)
        folds.append({"held_out_index": s, "held_out_system": s + 1, "train": tr, "val": va,
                      "test": [int(i) for i in all_idx[sysv == s]]})
    splits["loso"] = folds
    return splits


def split_names(splits: dict) -> list[str]:
    """The stored split names: "random", "system", "loso:0", ... (the ``inner:<k>`` folds are
    derived from them on demand and have no stored normalisation)."""
    names = [k for k in splits if k != "loso"]
    names += [f"loso:{k}" for k in range(len(splits.get("loso") or []))]
    return names


def inner_folds(splits: dict) -> list[dict]:
    """Leave-one-training-system-out folds *inside* the ``system`` split, for choosing a model
    for unseen systems without looking at the system split's test systems: fold k tests on every
    sample of the k-th system the system split trains on; train and val are the system split's own
    parts without that system. Derived from the ``system`` split and the ``loso`` folds (no
    stored state, no randomness); [] when either is missing."""
    system, folds = splits.get("system"), splits.get("loso") or []
    if not system or not folds:
        return []
    held = set(system.get("held_out_indices") or [])
    out = []
    for fold in folds:
        if fold["held_out_index"] in held:
            continue
        test = set(fold["test"])
        out.append({"held_out_index": fold["held_out_index"], "held_out_system": fold["held_out_system"],
                    "train": [i for i in system["train"] if i not in test],
                    "val": [i for i in system["val"] if i not in test],
                    "test": sorted(test)})
    return out


def _fold(name: str, family: str, folds: list) -> dict:
    prefix, _, number = name.partition(":")
    try:
        k = int(number)
    except ValueError:
        raise ValueError(f"bad split name {name!r}: use '{prefix}:<fold number>'") from None
    if not 0 <= k < len(folds):
        raise ValueError(f"split {name!r}: the dataset has {len(folds)} {family} folds (0..{len(folds) - 1})")
    return folds[k]


def split_entry(manifest: dict, name: str) -> dict:
    """The {"train", "val", "test"} index lists of split ``name`` in a manifest: "random",
    "system", "loso:<k>" or "inner:<k>" (:func:`inner_folds`)."""
    splits = manifest.get("splits") or {}
    if name.startswith("inner:"):
        return _fold(name, "inner (leave-one-training-system-out)", inner_folds(splits))
    if name.startswith("loso:"):
        return _fold(name, "leave-one-system-out", splits.get("loso") or [])
    if name not in splits or name == "loso":
        known = [s for s in splits if s != "loso"] + [f"loso:0..{len(splits.get('loso') or []) - 1}",
                                                      f"inner:0..{len(inner_folds(splits)) - 1}"]
        raise ValueError(f"unknown split {name!r}; this dataset has {known}")
    return splits[name]


def normalization_stats_from_sums(sum1: torch.Tensor, sum2: torch.Tensor, values_per_sample: int,
                                  splits: dict) -> dict:
    """{split name: {"mean", "std"}} from per-sample sums of frames and of squared frames [S]."""
    s1, s2 = sum1.double(), sum2.double()
    out = {}
    for name in split_names(splits):
        tr = torch.as_tensor(split_entry({"splits": splits}, name)["train"], dtype=torch.int64)
        n = tr.numel() * values_per_sample
        if n == 0:
            continue
        mean = float(s1[tr].sum() / n)
        var = max(float(s2[tr].sum() / n) - mean * mean, 0.0)
        out[name] = {"mean": mean, "std": max(var ** 0.5, 1e-12)}
    return out


def normalization_stats(frames: torch.Tensor, splits: dict) -> dict:
    """{split name: {"mean", "std"}} of the training part's frames [S, T, W] for every split.

    Per-sample sums are computed once in float64, so all folds cost one pass over the data.
    """
    f = frames.reshape(frames.shape[0], -1).double()
    return normalization_stats_from_sums(f.sum(1), (f * f).sum(1), f.shape[1], splits)
