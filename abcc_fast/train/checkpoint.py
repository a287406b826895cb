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

``state.json`` records the sha256 of the three weights files; loading checks them, so a flipped
byte is an error rather than a silent resume from damaged weights. ``LATEST`` must name a
``step_*`` directory inside ``checkpoints/`` (no path, no link out of it).

Nothing here calls ``pickle`` or ``torch.load``: a checkpoint from an untrusted source can at
worst fail validation, with a ``ValueError`` that names the file.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from .._atomic import clean_stale_temps, sha256_file, swap_into_place, temp_dir, write_text
from .._paths import confined_dir
from ..data.manifest import manifest_sha256, same_dataset

PathLike = Union[str, os.PathLike]
LATEST = "LATEST"
WEIGHT_FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors")
FILES = WEIGHT_FILES + ("state.json",)
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
    clean_stale_temps(final, any_name=True)    # temporaries of earlier steps whose writer died
    tmp = temp_dir(final)
    try:
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer_state)
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        save_file(_contiguous(ema_state), str(tmp / "ema.safetensors"))
        save_file(_contiguous(opt_tensors), str(tmp / "optimizer.safetensors"))
        hashes = {f: sha256_file(tmp / f) for f in WEIGHT_FILES}
        body = {"checkpoint_version": CHECKPOINT_VERSION, "step": int(step), "optimizer": opt_meta,
                "sha256": hashes, **state}
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
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        name = None
    fix = f"the run directory was modified by hand. Delete {root} to start again, or fix {pointer}"
    if not isinstance(name, str) or not name.startswith("step_"):
        raise ValueError(f"{pointer}: does not name a step_NNNNNNN checkpoint; {fix}")
    return confined_dir(root, name, str(pointer), "the checkpoint name", fix=fix)


def _read_safetensors(path: Path, expected_sha: Optional[str]) -> dict:
    if not path.is_file():
        raise ValueError(f"checkpoint file missing: {path}; the checkpoint is incomplete. Delete its directory "
                         "(an older one is used if LATEST names it) or train from scratch without --resume")
    if expected_sha is not None and sha256_file(path) != expected_sha:
        raise ValueError(f"checkpoint file {path} is corrupt or was modified (its sha256 differs from the one in "
                         "state.json); delete the checkpoint directory and train again, or resume from an intact copy")
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
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"{state_path}: 'step' must be a non-negative integer, got {step!r}; the checkpoint was "
                         "modified by hand, delete it and train again")
    opt_meta = state.pop("optimizer", None)
    if not isinstance(opt_meta, dict) or not isinstance(opt_meta.get("param_groups"), list) \
            or not isinstance(opt_meta.get("scalars", {}), dict):
        raise ValueError(f"{state_path}: 'optimizer' must hold the optimizer's param_groups; the checkpoint was "
                         "modified by hand, delete it and train again")
    hashes = state.pop("sha256", None)
    if hashes is None:
        warnings.warn(f"{state_path} records no sha256 of the weights (written by an older abcc_fast); they are "
                      "loaded unchecked", stacklevel=2)
        hashes = {}
    elif not isinstance(hashes, dict) or any(not isinstance(hashes.get(f), str) for f in WEIGHT_FILES):
        raise ValueError(f"{state_path}: 'sha256' must map {', '.join(WEIGHT_FILES)} to their sha256; the "
                         "checkpoint was modified by hand, delete it and train again")
    opt_tensors = _read_safetensors(path / "optimizer.safetensors", hashes.get("optimizer.safetensors"))
    try:
        optimizer = unflatten_optimizer_state(opt_tensors, opt_meta)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{path / 'optimizer.safetensors'}: tensor names or optimizer state do not follow "
                         f"'state.<index>.<key>' ({type(err).__name__}: {err}); delete the checkpoint and train "
                         "again") from None
    return {
        "model": _read_safetensors(path / "model.safetensors", hashes.get("model.safetensors")),
        "ema": _read_safetensors(path / "ema.safetensors", hashes.get("ema.safetensors")),
        "optimizer": optimizer,
        "state": state,
    }


# --------------------------------------------------------------------------------------------
# resume
# --------------------------------------------------------------------------------------------
RESUME_MUST_MATCH = ("lr", "batch_size")    # train_config values a resume may not change


def dataset_fingerprint(dataset) -> str:
    """sha256 identifying a dataset (its manifest; the canonical JSON of an in-memory one)."""
    return manifest_sha256(dataset)


def _shape_mismatch(own: dict, saved: dict) -> Optional[str]:
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    if missing or unexpected:
        def few(keys):
            return f"{len(keys)}" + (f" ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" if keys else "")
        return f"{few(missing)} tensors missing, {few(unexpected)} unexpected"
    wrong = [f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if tuple(saved[k].shape) != tuple(v.shape)]
    return f"{len(wrong)} tensors of another shape ({'; '.join(wrong[:3])})" if wrong else None


def restore_checkpoint(ckpt: PathLike, model: torch.nn.Module, ema_model: torch.nn.Module, optimizer, *,
                       split: str, train_config: dict, dataset_sha256: Optional[str] = None,
                       dataset_identity: Optional[str] = None) -> dict:
    """Load checkpoint ``ckpt`` into ``model``, ``ema_model`` and ``optimizer`` after checking that the
    run continues as it began: same split, same dataset (``dataset_sha256``, or the same
    ``dataset_identity`` where the checkpoint records one: the bytes can differ between CPUs), same ``lr`` and
    ``batch_size``, the same model (tensor names and shapes) and optimizer state of the parameters'
    shapes. Returns the checkpoint's state (``step``, ``best_val_loss``, ...); ValueError naming the
    checkpoint, the value and the fix otherwise."""
    ckpt = Path(ckpt)
    loaded = load_checkpoint(ckpt)
    st = loaded["state"]
    other = "use another --out directory (or --overwrite to start this one afresh)"
    if st.get("split") not in (None, split):
        raise ValueError(f"{ckpt}: this run was trained on split {st.get('split')!r}, not {split!r}; pass "
                         f"--split {st.get('split')} to resume it, or {other}")
    saved_sha = st.get("dataset_sha256")
    if saved_sha is not None and dataset_sha256 is not None and not same_dataset(
            saved_sha, st.get("dataset_identity"), dataset_sha256, dataset_identity):
        raise ValueError(f"{ckpt}: this run was trained on another dataset (manifest sha256 {str(saved_sha)[:12]}..., "
                         f"this one {dataset_sha256[:12]}...); resume with the same --data, or {other}")
    saved_cfg = st.get("train_config") if isinstance(st.get("train_config"), dict) else {}
    for key in RESUME_MUST_MATCH:
        was, now = saved_cfg.get(key), train_config.get(key)
        if was is not None and now is not None and was != now and not (
                isinstance(was, float) and isinstance(now, float) and math.isclose(was, now, rel_tol=1e-12)):
            opt = "--" + key.replace("_", "-")
            raise ValueError(f"{ckpt}: this run was trained with {key}={was!r}, not {now!r}; resume with {opt} {was} "
                             f"(or without {opt}), or {other}")
    for what, module, saved in (("model", model, loaded["model"]), ("EMA", ema_model, loaded["ema"])):
        bad = _shape_mismatch(module.state_dict(), saved)
        if bad:
            raise ValueError(f"{ckpt}: the checkpoint's {what} weights do not fit this model ({bad}); resume with "
                             f"the same --model and --preset, or {other}")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    opt = loaded["optimizer"]
    if len(opt["param_groups"]) != len(optimizer.param_groups):
        raise ValueError(f"{ckpt}: the optimizer state has {len(opt['param_groups'])} parameter groups, this "
                         f"optimizer {len(optimizer.param_groups)}; resume with the same model, or {other}")
    for idx, per_param in opt["state"].items():
        if not 0 <= idx < len(params):
            raise ValueError(f"{ckpt}: optimizer.safetensors holds state for parameter {idx}, the model has "
                             f"{len(params)}; the checkpoint belongs to another model, {other}")
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and tuple(value.shape) != tuple(params[idx].shape):
                raise ValueError(f"{ckpt}: optimizer tensor state.{idx}.{key} has shape {tuple(value.shape)}, its "
                                 f"parameter {tuple(params[idx].shape)}; the checkpoint is damaged or belongs to "
                                 f"another model, {other}")
    try:
        model.load_state_dict(loaded["model"])
        ema_model.load_state_dict(loaded["ema"])
        optimizer.load_state_dict(opt)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{ckpt}: checkpoint does not fit this model ({str(err).splitlines()[0][:200]}); resume "
                         f"with the same model configuration, or {other}") from None
    return st


def divergence_message(loss: float, step: int, run_dir: PathLike) -> str:
    """The advice when the training loss stops being finite. Resuming is exact (the same steps with
    the same random draws) and refuses another --lr, so it would diverge again: start afresh."""
    return (f"training loss is {loss} at step {step}; start the run again with a lower learning rate "
            f"(--lr, with --overwrite to replace {run_dir}) and check the data for outliers (a --resume would "
            "repeat the same steps and diverge again)")
