"""The OpIR dataset format, schema v1.

A dataset is a directory::

    manifest.json            schema version, grid, T, vocabularies, generator, shards (+sha256),
                             splits, normalisation statistics of the training splits
    shard_00000.safetensors  samples [0, n0)
    shard_00001.safetensors  samples [n0, n0 + n1)
    ...

Every shard holds, for its samples (S_k of them), the per-sample fields of schema v1::

    static       float32 [S_k, W]     static spectrum, absorbance (AU)
    frames       float32 [S_k, T, W]  operando spectra, absorbance (AU)
    voltage      float32 [S_k, T]     V vs Li/Li+
    time_s       float32 [S_k, T]     seconds since start
    system       int64   [S_k]        index into manifest["systems"]
    composition  float32 [S_k, C]     mole fractions over manifest["components"]
    electrode    int64   [S_k]        index into manifest["electrodes"]
    solvent      float32 [S_k, T, W]  synthetic only: electrolyte contribution
    sei          float32 [S_k, T, W]  synthetic only: SEI contribution
    extent       float32 [S_k, T, K]  synthetic only: extent of each reaction family (manifest["reactions"])

The wavenumber grid (float32 [W], ascending, cm^-1) lives in the manifest (``wavenumber.grid``).
Only safetensors and JSON are ever read or written (never pickle). Writes are atomic: everything is
written into a temporary directory beside the target and renamed into place at the end, so an error
or an interrupt never leaves a half-written dataset. Loading checks the schema version, the shapes,
the dtypes, the sha256 of every shard and NaN/Inf, and raises ``ValueError`` naming the file, the
problem and the fix.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._atomic import sha256_file, swap_into_place, temp_dir
from .._paths import confined_file
from .manifest import (MANIFEST_NAME, REQUIRED_MANIFEST_KEYS, REWRITE, SCHEMA_VERSION, check_manifest,  # noqa: F401
                       manifest_json, manifest_sha256, read_manifest, validate_grid)
from .splits import make_splits, normalization_stats_from_sums, split_entry

SHARD_SAMPLES = 512  # samples per shard file (~34 MB of frames at T=32, W=512)

# name -> (dtype, shape suffix after the sample axis, symbolic)
FIELDS: dict[str, tuple[torch.dtype, str]] = {
    "static": (torch.float32, "W"),
    "frames": (torch.float32, "TW"),
    "voltage": (torch.float32, "T"),
    "time_s": (torch.float32, "T"),
    "system": (torch.int64, ""),
    "composition": (torch.float32, "C"),
    "electrode": (torch.int64, ""),
}
SYNTHETIC_FIELDS: dict[str, tuple[torch.dtype, str]] = {
    "solvent": (torch.float32, "TW"),
    "sei": (torch.float32, "TW"),
    "extent": (torch.float32, "TK"),
}
ALL_FIELDS = {**FIELDS, **SYNTHETIC_FIELDS}

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------------------------
# The in-memory dataset
# --------------------------------------------------------------------------------------------
@dataclass
class OpIRDataset:
    """A loaded (or in-memory) OpIR dataset: all samples as stacked tensors.

    Shapes: S samples, T frames, W wavenumbers, C components, K reaction families.
    ``index`` holds the global sample index (into the manifest's split lists) of every row; it is
    ``arange(S)`` for a full dataset and follows the rows through ``subset``/``split``.
    """

    root: Optional[Path]
    manifest: dict
    wavenumber: torch.Tensor      # float32 [W] ascending cm^-1
    static: torch.Tensor          # float32 [S, W]
    frames: torch.Tensor          # float32 [S, T, W]
    voltage: torch.Tensor         # float32 [S, T]  V vs Li/Li+
    time_s: torch.Tensor          # float32 [S, T]
    system: torch.Tensor          # int64 [S]
    composition: torch.Tensor     # float32 [S, C]
    electrode: torch.Tensor       # int64 [S]
    solvent: Optional[torch.Tensor] = None  # float32 [S, T, W] synthetic only
    sei: Optional[torch.Tensor] = None      # float32 [S, T, W] synthetic only
    extent: Optional[torch.Tensor] = None   # float32 [S, T, K] synthetic only
    index: Optional[torch.Tensor] = field(default=None)  # int64 [S] global sample indices

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = torch.arange(self.static.shape[0], dtype=torch.int64)

    # -- basic access ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.static.shape[0])

    @property
    def T(self) -> int:
        return int(self.frames.shape[1])

    @property
    def W(self) -> int:
        return int(self.wavenumber.shape[0])

    @property
    def synthetic(self) -> bool:
        return self.solvent is not None

    def _sample_fields(self) -> list[str]:
        return [k for k in ALL_FIELDS if getattr(self, k) is not None]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        """One sample: ``static [W]``, ``frames [T, W]``, ``voltage [T]``, ``time_s [T]``,
        ``system []``, ``composition [C]``, ``electrode []`` (+ ``solvent``, ``sei [T, W]``,
        ``extent [T, K]`` when synthetic) and ``wavenumber [W]``, ``index []``."""
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"sample index {i} out of range for a dataset of {n} samples")
        out = {k: getattr(self, k)[i] for k in self._sample_fields()}
        out["wavenumber"] = self.wavenumber
        out["index"] = self.index[i]
        return out

    def subset(self, indices: Union[Sequence[int], torch.Tensor]) -> "OpIRDataset":
        """The selected rows (positions in *this* dataset), same manifest and grid."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"subset indices out of range for a dataset of {len(self)} samples")
        kw = {k: getattr(self, k)[idx] for k in self._sample_fields()}
        return OpIRDataset(root=self.root, manifest=self.manifest, wavenumber=self.wavenumber,
                           index=self.index[idx], **kw)

    # -- splits and normalisation --------------------------------------------------------
    def split_indices(self, name: str, part: str) -> torch.Tensor:
        """Global sample indices of ``part`` of split ``name`` (see :meth:`split`)."""
        return torch.as_tensor(split_entry(self.manifest, name)[_check_part(part)], dtype=torch.int64)

    def split(self, name: str, part: str) -> "OpIRDataset":
        """The ``part`` ("train" | "val" | "test") of split ``name``.

        ``name`` is "random" (80/10/10 stratified by system), "system" (test = held-out systems
        2 and 5 of docs/opirsim.md) or "loso:<k>" (fold k of leave-one-system-out). Works on a
        subset too: rows are matched through their global ``index``.
        """
        wanted = self.split_indices(name, part)
        mask = torch.isin(self.index, wanted)
        return self.subset(torch.nonzero(mask).reshape(-1))

    def norm_stats(self, name: str) -> tuple[float, float]:
        """(mean, std) of the *training* part's frames for split ``name`` (manifest, else computed)."""
        stats = self.manifest.get("normalization", {}).get(name)
        if stats is not None:
            return float(stats["mean"]), float(stats["std"])
        train = self.split(name, "train")
        if len(train) == 0:
            raise ValueError(f"split {name!r} has no training samples in this dataset; "
                             "normalisation statistics cannot be computed")
        return frame_stats(train.frames)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The per-sample fields plus ``wavenumber``, as written by :func:`write_dataset`."""
        out = {k: getattr(self, k) for k in self._sample_fields()}
        out["wavenumber"] = self.wavenumber
        return out


def _check_part(part: str) -> str:
    if part not in ("train", "val", "test"):
        raise ValueError(f"split part must be 'train', 'val' or 'test', got {part!r}")
    return part


def frame_stats(frames: torch.Tensor) -> tuple[float, float]:
    """(mean, std) over all values of ``frames`` [S, T, W], accumulated in float64."""
    f = frames.double()
    mean = float(f.mean())
    std = float(f.std(unbiased=False)) if f.numel() > 1 else 1.0
    return mean, max(std, 1e-12)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _dims(tensors: dict, manifest: dict) -> dict[str, int]:
    frames = tensors["frames"]
    dims = {"S": int(frames.shape[0]), "T": int(frames.shape[1]), "W": int(frames.shape[2]),
            "C": len(manifest["components"]), "K": len(manifest.get("reactions", []))}
    return dims


def _check_tensor(name: str, t: torch.Tensor, dims: dict[str, int], where: str) -> None:
    dtype, suffix = ALL_FIELDS[name]
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{where}: field {name!r} is a {type(t).__name__}, expected a torch tensor")
    if t.dtype != dtype:
        raise ValueError(f"{where}: field {name!r} has dtype {t.dtype}, expected {dtype} "
                         "(regenerate or re-import the dataset)")
    want = (dims["S"],) + tuple(dims[c] for c in suffix)
    if tuple(t.shape) != want:
        sym = "[" + ", ".join(["S"] + list(suffix)) + "]"
        raise ValueError(f"{where}: field {name!r} has shape {tuple(t.shape)}, expected {sym} = {want}")
    # one reduction first: a sum is finite iff no NaN/Inf (barring float overflow, then the exact check)
    if t.is_floating_point() and not math.isfinite(float(t.sum())) and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{where}: field {name!r} contains {bad} NaN/Inf values; "
                         "clean or drop the affected spectra and write the dataset again")


def validate_tensors(tensors: dict, manifest: dict, where: str = "dataset") -> None:
    """Check the per-sample tensors against schema v1 and the manifest vocabularies."""
    for k in FIELDS:
        if k not in tensors:
            raise ValueError(f"{where}: required field {k!r} missing (schema v1 needs {list(FIELDS)})")
    dims = _dims(tensors, manifest)
    if dims["T"] != int(manifest["T"]):
        raise ValueError(f"{where}: frames have T={dims['T']} but the manifest says T={manifest['T']}")
    for k, t in tensors.items():
        if k == "wavenumber":
            continue
        if k not in ALL_FIELDS:
            raise ValueError(f"{where}: unknown field {k!r}; schema v1 fields are {list(ALL_FIELDS)}")
        _check_tensor(k, t, dims, where)
    present = [k for k in SYNTHETIC_FIELDS if k in tensors]
    if present and len(present) != len(SYNTHETIC_FIELDS):
        raise ValueError(f"{where}: synthetic fields must come together ({list(SYNTHETIC_FIELDS)}), "
                         f"got only {present}")
    n_sys, n_el = len(manifest["systems"]), len(manifest["electrodes"])
    if dims["S"]:
        if int(tensors["system"].min()) < 0 or int(tensors["system"].max()) >= n_sys:
            raise ValueError(f"{where}: 'system' indices outside 0..{n_sys - 1} of manifest['systems']")
        if int(tensors["electrode"].min()) < 0 or int(tensors["electrode"].max()) >= n_el:
            raise ValueError(f"{where}: 'electrode' indices outside 0..{n_el - 1} of manifest['electrodes']")


class DatasetWriter:
    """Stream a dataset to disk shard by shard, atomically.

    Usage::

        with DatasetWriter(out_dir, manifest, wavenumber) as w:
            for chunk in chunks:          # dict of schema-v1 tensors for consecutive samples
                w.add(chunk)
        # leaving the block commits: splits + normalisation + manifest, then rename into place

    Shards go to a temporary directory beside ``out_dir``; on an exception (or ``abort()``) it is
    removed and an existing ``out_dir`` is left untouched. ``manifest`` needs ``name``,
    ``generator``, ``systems``, ``components``, ``electrodes``, ``reactions``, ``marker_windows``;
    the writer fills ``schema_version``, ``T``, ``wavenumber``, ``shards``, ``num_samples``,
    ``synthetic`` and, when absent, ``splits`` and ``normalization`` (from the ``system`` labels and
    the training frames, see :mod:`abcc_fast.data.splits`).
    """

    def __init__(self, out_dir: PathLike, manifest: dict, wavenumber, *, overwrite: bool = True):
        self.out_dir = Path(out_dir)
        self.manifest = json.loads(json.dumps(manifest))  # deep copy; proves it is JSON-serialisable
        self.manifest.setdefault("reactions", [])
        for k in ("name", "generator", "systems", "components", "electrodes", "marker_windows"):
            if k not in self.manifest:
                raise ValueError(f"{self.out_dir}: manifest key {k!r} missing; it is required by schema v1")
        self.wavenumber = torch.as_tensor(wavenumber, dtype=torch.float32).contiguous()
        validate_grid(self.wavenumber, f"{self.out_dir}: wavenumber grid")
        if self.out_dir.exists() and not overwrite:
            raise ValueError(f"{self.out_dir} already exists; choose another output directory")
        if self.out_dir.exists() and not (self.out_dir / MANIFEST_NAME).exists() and any(self.out_dir.iterdir()):
            raise ValueError(f"{self.out_dir} exists, is not empty and holds no {MANIFEST_NAME}; refusing to "
                             "replace it (choose another output directory)")
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_dir(self.out_dir)
        os.chmod(self.tmp, 0o755)  # mkdtemp makes it private; a dataset is meant to be shared
        self.shards: list[dict] = []
        self.systems: list[torch.Tensor] = []
        self.sum1: list[torch.Tensor] = []
        self.sum2: list[torch.Tensor] = []
        self.T: Optional[int] = None
        self.synthetic: Optional[bool] = None
        self.count = 0
        self._done = False

    def add(self, tensors: dict) -> None:
        """Write one shard holding the given samples (schema-v1 fields, first axis = samples)."""
        sample = {k: torch.as_tensor(v).contiguous() for k, v in tensors.items() if k != "wavenumber"}
        if "frames" not in sample:
            raise ValueError(f"{self.out_dir}: a shard needs 'frames'")
        T = int(sample["frames"].shape[1])
        if self.T is None:
            self.T = T
            self.manifest["T"] = T
        if int(sample["frames"].shape[2]) != self.wavenumber.numel():
            raise ValueError(f"{self.out_dir}: frames have W={sample['frames'].shape[2]} but the grid has "
                             f"{self.wavenumber.numel()} points")
        validate_tensors(sample, self.manifest, str(self.out_dir))
        synth = "solvent" in sample
        if self.synthetic is not None and synth != self.synthetic:
            raise ValueError(f"{self.out_dir}: all shards must agree on the synthetic fields")
        self.synthetic = synth
        n = int(sample["frames"].shape[0])
        name = f"shard_{len(self.shards):05d}.safetensors"
        # one metadata key only: safetensors writes its metadata map in hash order, and a single
        # key keeps the bytes deterministic
        save_file(sample, str(self.tmp / name), metadata={"opir_schema": f"v{SCHEMA_VERSION}:{self.count}"})
        os.chmod(self.tmp / name, 0o644)
        self.shards.append({"file": name, "sha256": sha256_file(self.tmp / name), "samples": n})
        self.systems.append(sample["system"].clone())
        f = sample["frames"].reshape(n, -1)
        self.sum1.append(f.sum(1, dtype=torch.float64))
        self.sum2.append(torch.linalg.vector_norm(f, dim=1, dtype=torch.float64) ** 2)
        self.count += n

    def commit(self) -> Path:
        """Write the manifest and move the dataset into place; returns ``out_dir``."""
        if self._done:
            return self.out_dir
        if self.count == 0:
            self.abort()
            raise ValueError(f"{self.out_dir}: no samples to write")
        m = self.manifest
        wn = self.wavenumber
        m["schema_version"] = SCHEMA_VERSION
        m["wavenumber"] = {"start": float(wn[0]), "stop": float(wn[-1]), "points": int(wn.numel()),
                           "unit": "cm^-1", "grid": [float(x) for x in wn.tolist()]}
        m["synthetic"] = bool(self.synthetic)
        system = torch.cat(self.systems)
        if not m.get("splits"):
            m["splits"] = make_splits(system, n_systems=len(m["systems"]),
                                      seed=int((m.get("generator") or {}).get("seed", 0) or 0))
        if not m.get("normalization"):
            m["normalization"] = normalization_stats_from_sums(
                torch.cat(self.sum1), torch.cat(self.sum2), self.T * self.wavenumber.numel(), m["splits"])
        m["shards"] = self.shards
        m["num_samples"] = self.count
        text = manifest_json(m)
        try:
            with open(self.tmp / MANIFEST_NAME, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            swap_into_place(self.tmp, self.out_dir)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.out_dir

    def abort(self) -> None:
        """Remove the temporary directory; ``out_dir`` is untouched."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_dataset(out_dir: PathLike, tensors: dict, manifest: dict, *,
                  shard_samples: int = SHARD_SAMPLES, overwrite: bool = True) -> Path:
    """Write a dataset directory atomically and return its path.

    ``tensors``: the schema-v1 per-sample fields (see module docstring) plus ``wavenumber``
    float32 [W]. ``manifest``: see :class:`DatasetWriter` (splits and normalisation are computed
    when absent). Everything is written to a temporary directory beside ``out_dir`` and renamed into
    place; on any error the temporary directory is removed and an existing ``out_dir`` is untouched.
    """
    if "wavenumber" not in tensors:
        raise ValueError(f"{out_dir}: tensors need a 'wavenumber' grid [W]")
    if "frames" not in tensors:
        raise ValueError(f"{out_dir}: tensors need 'frames' [S, T, W]")
    S = int(tensors["frames"].shape[0])
    for k, v in tensors.items():
        if k != "wavenumber" and int(v.shape[0]) != S:
            raise ValueError(f"{out_dir}: field {k!r} has {v.shape[0]} samples, frames have {S}")
    with DatasetWriter(out_dir, manifest, tensors["wavenumber"], overwrite=overwrite) as w:
        step = max(1, int(shard_samples))
        for lo in range(0, max(S, 1), step):
            w.add({k: v[lo:lo + step] for k, v in tensors.items() if k != "wavenumber"})
    return Path(out_dir)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def load(path: PathLike, *, verify: bool = True) -> OpIRDataset:
    """Load and validate a dataset directory.

    Checks: manifest schema version and keys; each shard exists, has the sha256 listed in the
    manifest (skipped with ``verify=False``), is readable safetensors with the schema-v1 fields,
    dtypes and shapes; no NaN/Inf. Any failure raises ``ValueError`` naming the file.

    Example::

        ds = abcc_fast.data.load("/tmp/opirsim_default")
        train = ds.split("system", "train")
    """
    root = Path(path)
    if not root.exists():
        raise ValueError(f"{root}: no such dataset directory; generate one with `abcc data generate "
                         f"--out {root}`")
    if not root.is_dir():
        raise ValueError(f"{root} is a file; a dataset is a directory (manifest.json + shards)")
    manifest = read_manifest(root)
    wn = torch.tensor(manifest["wavenumber"]["grid"], dtype=torch.float32)
    parts: dict[str, torch.Tensor] = {}
    offset = 0
    expect_synth = bool(manifest.get("synthetic"))
    # every shard is a regular file inside the dataset folder, checked before anything is opened
    mpath = root / MANIFEST_NAME
    files = [confined_file(root, e["file"], str(mpath), f"manifest['shards'][{i}]['file']", fix=REWRITE)
             for i, e in enumerate(manifest["shards"])]
    digests: dict = {}
    if verify:  # hashlib releases the GIL: hash the shards on a few threads
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            digests = dict(zip(files, pool.map(sha256_file, files)))
    for entry, f in zip(manifest["shards"], files):
        if verify:
            digest = digests[f]
            if digest != entry.get("sha256"):
                raise ValueError(f"{f}: sha256 mismatch (file {digest[:12]}..., manifest "
                                 f"{str(entry.get('sha256'))[:12]}...); the shard is corrupt or was "
                                 "modified, regenerate or copy the dataset again")
        try:
            tensors = load_file(str(f))
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise ValueError(f"{f}: cannot read shard as safetensors ({err}); the file is corrupt, "
                             "regenerate the dataset") from None
        dims_manifest = {"components": manifest["components"], "reactions": manifest["reactions"],
                         "T": manifest["T"], "systems": manifest["systems"],
                         "electrodes": manifest["electrodes"]}
        if "frames" not in tensors:
            raise ValueError(f"{f}: shard has no 'frames' tensor; the file is not an OpIR shard")
        if tensors["frames"].ndim != 3 or tensors["frames"].shape[2] != wn.numel():
            raise ValueError(f"{f}: frames of shape {tuple(tensors['frames'].shape)} do not match the "
                             f"grid of {wn.numel()} points in the manifest")
        if int(tensors["frames"].shape[0]) != entry["samples"]:
            raise ValueError(f"{f}: holds {tensors['frames'].shape[0]} samples, the manifest says "
                             f"{entry.get('samples')}")
        validate_tensors(tensors, dims_manifest, str(f))
        if expect_synth != ("solvent" in tensors):
            raise ValueError(f"{f}: manifest says synthetic={expect_synth} but the shard "
                             f"{'lacks' if expect_synth else 'has'} the synthetic fields")
        # copy each shard into preallocated full-size tensors (peak memory ~1x the dataset, not 2x)
        if not parts:
            total = sum(e["samples"] for e in manifest["shards"])
            parts = {k: torch.empty((total,) + tuple(v.shape[1:]), dtype=v.dtype) for k, v in tensors.items()}
            offset = 0
        if set(tensors) != set(parts):
            raise ValueError(f"{f}: holds fields {sorted(tensors)}, the first shard had {sorted(parts)}")
        n = int(tensors["frames"].shape[0])
        for k, v in tensors.items():
            if tuple(v.shape[1:]) != tuple(parts[k].shape[1:]):
                raise ValueError(f"{f}: field {k!r} has shape {tuple(v.shape)}, other shards "
                                 f"{tuple(parts[k].shape)}")
            parts[k][offset:offset + n] = v
        offset += n
        del tensors
    return OpIRDataset(root=root, manifest=manifest, wavenumber=wn, **parts)


def from_tensors(tensors: dict, manifest: dict) -> OpIRDataset:
    """An in-memory dataset (root None) from schema-v1 tensors and a manifest (no files)."""
    wn = torch.as_tensor(tensors["wavenumber"], dtype=torch.float32)
    fields = {k: v for k, v in tensors.items() if k != "wavenumber"}
    return OpIRDataset(root=None, manifest=manifest, wavenumber=wn, **fields)

