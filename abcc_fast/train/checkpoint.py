"""Training checkpoints: safetensors + JSON, written atomically, read without pickle.

A checkpoint is a directory::

    model.safetensors       the raw (optimised) weights            {name: tensor}
    ema.safetensors         the EMA weights (what is evaluated and shipped)
    optimizer.safetensors   every tensor of ``optimizer.state_dict()["state"]``, flattened to
                            ``state.<param index>.<key>`` (e.g. ``state.3.exp_avg``)
    state.json              step, config, param groups and the optimizer's non-tensor state,
                            best validation loss, elapsed time, anything the trainer adds

Checkpoints of one run live in ``<run>/checkpoints/step_<NNNNNNN>/`` and the file
``<run>/checkpoints/LATEST`` names the current one. A save writes a fresh temporary directory,
fsyncs it, renames it to its final name and only then replaces ``LATEST`` (``os.replace`` is
atomic), so a crash or an exception at any point leaves the previous checkpoint complete and
named by ``LATEST``. Older step directories are pruned after the pointer moves.

Nothing here calls ``pickle`` or ``torch.load``: a checkpoint from an untrusted source can at
worst fail validation, with a ``ValueError`` that names the file.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from .._atomic import swap_into_place, write_text

PathLike = Union[str, os.PathLike]
LATEST = "LATEST"
FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "state.json")
CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------------------------
# atomic file and directory writes
# --------------------------------------------------------------------------------------------
def _contiguous(tensors: dict) -> dict:
    # safetensors refuses shared or non-contiguous storage: store independent dense copies
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


# --------------------------------------------------------------------------------------------
# optimizer state <-> (flat tensors, JSON)
# --------------------------------------------------------------------------------------------
def flatten_optimizer_state(state_dict: dict) -> tuple[dict, dict]:
    """``optimizer.state_dict()`` -> (``{"state.<i>.<key>": tensor}``, JSON-able rest).

    Tensor entries (AdamW: ``step``, ``exp_avg``, ``exp_avg_sq``) go to safetensors bit-exactly;
    plain numbers and the param groups go to JSON.
    """
    tensors, scalars = {}, {}
    for idx, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = []
    for g in state_dict["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict, meta: dict) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, per_param in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(per_param)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------
def checkpoint_root(run_dir: PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: PathLike, *, step: int, model_state: dict, ema_state: dict,
                    optimizer_state: dict, state: dict, keep: int = 1) -> Path:
    """Write checkpoint ``step`` of the run at ``run_dir`` atomically and point ``LATEST`` at it.

    model_state / ema_state: ``state_dict()``s; optimizer_state: ``optimizer.state_dict()``;
    state: JSON-able trainer state (step, config, best loss, ...). Keeps the newest ``keep``
    checkpoints. Returns the checkpoint directory.
    """
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{int(step):07d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    try:
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer_state)
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        save_file(_contiguous(ema_state), str(tmp / "ema.safetensors"))
        save_file(_contiguous(opt_tensors), str(tmp / "optimizer.safetensors"))
        body = {"checkpoint_version": CHECKPOINT_VERSION, "step": int(step), "optimizer": opt_meta, **state}
        (tmp / "state.json").write_text(json.dumps(body, indent=1, allow_nan=True), encoding="utf-8")
        for f in FILES:
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        swap_into_place(tmp, final)  # re-saving the same step (final == last periodic) replaces it
        write_text(root / LATEST, name + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, keep=max(1, int(keep)), current=name)
    return final


def _prune(root: Path, keep: int, current: str) -> None:
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))
    for p in steps[:-keep]:
        if p.name != current:
            shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(run_dir: PathLike) -> Optional[Path]:
    """The directory ``LATEST`` names, or None when the run has no checkpoint yet."""
    root = checkpoint_root(run_dir)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    path = root / name
    if not name.startswith("step_") or not path.is_dir():
        raise ValueError(f"{pointer}: names checkpoint {name!r}, which does not exist; the run directory was "
                         f"modified by hand. Delete {root} to start again, or fix {pointer}")
    return path


def _read_safetensors(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"checkpoint file missing: {path}; the checkpoint is incomplete. Delete its directory "
                         "(an older one is used if LATEST names it) or train from scratch without --resume")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"checkpoint file {path} is corrupt or not a safetensors file ({err}); delete the "
                         "checkpoint directory and train again, or resume from an intact copy") from None


def load_checkpoint(path: PathLike) -> dict:
    """Read a checkpoint directory -> ``{"model", "ema", "optimizer", "state"}`` (CPU tensors).

    Raises ValueError naming the file when anything is missing or corrupt.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {path}")
    state_path = path / "state.json"
    if not state_path.is_file():
        raise ValueError(f"checkpoint file missing: {state_path}; the checkpoint is incomplete")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint file {state_path} is corrupt (not JSON: {err}); delete the checkpoint "
                         "directory and train again") from None
    if not isinstance(state, dict) or state.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{state_path}: not a version-{CHECKPOINT_VERSION} abcc_fast checkpoint "
                         f"(checkpoint_version={state.get('checkpoint_version') if isinstance(state, dict) else None})")
    opt_meta = state.pop("optimizer")
    return {
        "model": _read_safetensors(path / "model.safetensors"),
        "ema": _read_safetensors(path / "ema.safetensors"),
        "optimizer": unflatten_optimizer_state(_read_safetensors(path / "optimizer.safetensors"), opt_meta),
        "state": state,
    }
