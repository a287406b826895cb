"""The dataset manifest (``manifest.json``, schema v1): its keys, its checks, its JSON layout and its
sha256 (what identifies a dataset in leaderboards and checkpoints). The format itself is described in
:mod:`abcc_fast.data.format`."""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Optional, Union

import torch

from .._paths import plain_name

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
REQUIRED_MANIFEST_KEYS = (
    "schema_version", "name", "generator", "wavenumber", "T", "systems", "components",
    "electrodes", "reactions", "marker_windows", "shards", "splits", "normalization", "synthetic",
)

PathLike = Union[str, os.PathLike]


def validate_grid(grid: torch.Tensor, where: str = "wavenumber grid") -> None:
    """A grid must be 1-D, finite and strictly ascending."""
    g = torch.as_tensor(grid)
    if g.ndim != 1 or g.numel() < 2:
        raise ValueError(f"{where}: expected a 1-D grid of at least 2 points, got shape {tuple(g.shape)}")
    if not bool(torch.isfinite(g).all()):
        raise ValueError(f"{where}: contains NaN/Inf")
    d = g[1:] - g[:-1]
    if not bool((d > 0).all()):
        i = int(torch.nonzero(d <= 0)[0])
        raise ValueError(f"{where}: not strictly ascending (point {i + 1}: {float(g[i + 1])} after "
                         f"{float(g[i])}); sort the spectrum by wavenumber and remove duplicates")


def manifest_json(m: dict) -> str:
    """One top-level key per line, values compact (index lists of 10^4 samples stay one line each)."""
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, separators=(', ', ': '), allow_nan=False)}"
                      for k, v in m.items())
    return "{\n" + body + "\n}"


def manifest_sha256(dataset) -> str:
    """sha256 of the dataset's manifest.json bytes (of its canonical JSON when held in memory)."""
    root = getattr(dataset, "root", None)
    if root is not None and (Path(root) / MANIFEST_NAME).is_file():
        return hashlib.sha256((Path(root) / MANIFEST_NAME).read_bytes()).hexdigest()
    blob = json.dumps(dataset.manifest, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def dataset_identity(dataset) -> str:
    """sha256 of what identifies a dataset's samples: its manifest without the shards' byte hashes.

    OpIRSim is bit-reproducible on one machine, but numpy's AVX-512 math rounds some float64 results
    differently from its AVX2 paths, so between CPUs the shard bytes can differ by a float32 ulp
    (measured 2026-12-04 with NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL": frames identical, static
    spectra within 1.2e-7 AU, every manifest field but the shard hashes identical). That changes
    :func:`manifest_sha256` but not the samples, the splits or the normalisation: use this where the
    question is "the same dataset?" (a packaged model's test part, a suite resumed on another machine),
    the byte hash where bytes matter (caches derived from the data)."""
    m = dict(dataset.manifest)
    m["shards"] = [{k: v for k, v in s.items() if k != "sha256"} for s in m.get("shards", [])]
    return hashlib.sha256(json.dumps(m, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def same_dataset(recorded_sha: Optional[str], recorded_identity: Optional[str], sha: str, identity: str) -> bool:
    """Whether a recorded dataset (a card's, a checkpoint's) is this one: the same manifest bytes, or the
    same :func:`dataset_identity` (records written before identities have only the sha256)."""
    return recorded_sha == sha or (bool(recorded_identity) and recorded_identity == identity)


def read_manifest(path: PathLike) -> dict:
    """Parse and check ``manifest.json`` of a dataset directory (or the file itself).

    Checks the schema version and keys, the types of the fields the loader uses, and their meaning:
    shard entries (plain file names, sha256, sample counts summing to ``num_samples``), split
    indices (integers in range, train/val/test disjoint), normalisation (finite mean, finite
    std > 0). Any failure raises ``ValueError`` naming the field."""
    path = Path(path)
    mpath = path / MANIFEST_NAME if path.is_dir() else path
    if not mpath.is_file():
        raise ValueError(f"{mpath}: no dataset manifest here; point to a directory written by "
                         "`abcc data generate` or `abcc data import`")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"{mpath}: not valid JSON ({err}); the manifest is corrupt, regenerate the "
                         "dataset") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{mpath}: the manifest must be a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{mpath}: schema_version {version!r} is not supported (this abcc_fast reads "
                         f"schema {SCHEMA_VERSION}); regenerate or re-import the dataset")
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"{mpath}: manifest keys missing: {missing}; regenerate the dataset")
    check_manifest(manifest, str(mpath))
    return manifest


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


REWRITE = "the manifest was modified by hand or is corrupt; regenerate or re-import the dataset"


def _bad(where: str, field: str, what: str) -> ValueError:
    return ValueError(f"{where}: manifest[{field}] {what}; {REWRITE}")


def check_manifest(m: dict, where: str = "manifest") -> None:
    """The semantic checks of :func:`read_manifest` on a parsed manifest (see there)."""
    if not _is_int(m["T"]) or m["T"] < 1:
        raise _bad(where, "'T'", f"must be a positive integer (frames per sample), got {m['T']!r}")
    for k in ("systems", "components", "electrodes", "reactions"):
        if not isinstance(m[k], list):
            raise _bad(where, repr(k), f"must be a list, got {type(m[k]).__name__}")
    for k in ("generator", "marker_windows", "splits", "normalization"):
        if not isinstance(m[k], dict):
            raise _bad(where, repr(k), f"must be a JSON object, got {type(m[k]).__name__}")
    wn = m["wavenumber"]
    grid = wn.get("grid") if isinstance(wn, dict) else None
    if not isinstance(grid, list) or not all(_is_num(x) for x in grid):
        raise _bad(where, "'wavenumber']['grid'", "must be a list of numbers (cm^-1)")
    validate_grid(torch.tensor(grid, dtype=torch.float64), f"{where}: wavenumber grid")
    if wn.get("points", len(grid)) != len(grid):
        raise _bad(where, "'wavenumber']['points'", f"is {wn.get('points')!r} but the grid has {len(grid)} points")

    shards = m["shards"]
    if not isinstance(shards, list) or not shards:
        raise _bad(where, "'shards'", "must be a non-empty list of {file, sha256, samples} entries")
    seen: set = set()
    total = 0
    for i, e in enumerate(shards):
        f = f"'shards'][{i}"
        if not isinstance(e, dict):
            raise _bad(where, f, f"must be an object {{\"file\", \"sha256\", \"samples\"}}, got "
                                 f"{type(e).__name__}")
        for k in ("file", "sha256", "samples"):
            if k not in e:
                raise _bad(where, f, f"has no {k!r}")
        plain_name(e["file"], where, f"manifest['shards'][{i}]['file']", REWRITE)
        if e["file"] in seen:
            raise _bad(where, f + "]['file'", f"{e['file']!r} is listed twice")
        seen.add(e["file"])
        if not isinstance(e["sha256"], str) or len(e["sha256"]) != 64 or \
                any(c not in "0123456789abcdef" for c in e["sha256"]):
            raise _bad(where, f + "]['sha256'", "must be 64 lower-case hex digits")
        if not _is_int(e["samples"]) or e["samples"] < 1:
            raise _bad(where, f + "]['samples'", f"must be a positive integer, got {e['samples']!r}")
        total += e["samples"]
    n = m.get("num_samples", total)
    if not _is_int(n) or n != total:
        raise _bad(where, "'num_samples'", f"is {n!r} but the shards hold {total} samples in all")

    splits = m["splits"]
    named = [(name, splits[name]) for name in splits if name != "loso"]
    loso = splits.get("loso", [])
    if not isinstance(loso, list):
        raise _bad(where, "'splits']['loso'", "must be a list of folds")
    named += [(f"loso'][{k}", fold) for k, fold in enumerate(loso)]
    for name, sp in named:
        if not isinstance(sp, dict):
            raise _bad(where, f"'splits']['{name}'", "must be an object with train/val/test index lists")
        parts = {}
        for part in ("train", "val", "test"):
            idx = sp.get(part)
            field = f"'splits']['{name}']['{part}'"
            if not isinstance(idx, list) or not all(_is_int(i) for i in idx):
                raise _bad(where, field, "must be a list of integer sample indices")
            out = [i for i in idx if not 0 <= i < total]
            if out:
                raise _bad(where, field, f"holds index {out[0]} outside 0..{total - 1}")
            parts[part] = set(idx)
            if len(parts[part]) != len(idx):
                raise _bad(where, field, "lists a sample twice")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = parts[a] & parts[b]
            if both:
                raise _bad(where, f"'splits']['{name}'", f"puts sample {min(both)} in both {a!r} and {b!r} "
                                                         "(the parts must be disjoint)")
    for name, st in m["normalization"].items():
        field = f"'normalization']['{name}'"
        if not isinstance(st, dict) or not _is_num(st.get("mean")) or not _is_num(st.get("std")):
            raise _bad(where, field, "must be an object with numeric 'mean' and 'std'")
        if not math.isfinite(st["mean"]) or not math.isfinite(st["std"]) or st["std"] <= 0:
            raise _bad(where, field, f"needs a finite mean and a finite std > 0, got mean {st['mean']!r}, "
                                     f"std {st['std']!r}")
