"""One on-disk format for every model of abcc_fast (ABCC and the OpIRBench baselines):
``DIR/model.safetensors`` (the state dict) + ``DIR/config.json`` ({"model_type", "config",
"weights_sha256"}), written atomically (a temporary sibling directory swapped into place), read
without pickle.

The sha256 of the weights file is recorded in config.json and checked on load, so a flipped byte
is an error instead of a silently different prediction. The bytes are deterministic: identical
weights give an identical file (one metadata key: safetensors writes its metadata map in hash
order) and config.json has sorted keys. A model saved before the hash was recorded still loads,
with a warning.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .._atomic import atomic_directory, sha256_file

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_model_dir(module: nn.Module, path, model_type: str, config: dict) -> Path:
    """Write ``module``'s weights and ``config`` under ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        meta = {"model_type": model_type, "config": config, "weights_sha256": sha256_file(tmp / WEIGHTS_NAME)}
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def read_model_meta(path, where: str) -> dict:
    """The parsed config.json of a model directory (both files must exist); ``where`` prefixes errors."""
    path = Path(path)
    for f in (path / CONFIG_NAME, path / WEIGHTS_NAME):
        if not f.is_file():
            raise FileNotFoundError(f"{where}: {f} is missing; {path} must be a directory written by "
                                    f"save_pretrained ({CONFIG_NAME} + {WEIGHTS_NAME})")
    try:
        meta = json.loads((path / CONFIG_NAME).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: {path / CONFIG_NAME} is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: {path / CONFIG_NAME} does not hold a JSON object")
    return meta


def verify_weights(path, where: str, expected) -> None:
    """Check ``path/model.safetensors`` against the sha256 ``expected`` (from config.json); None:
    a model saved before hashes were recorded, loaded with a warning."""
    w_file = Path(path) / WEIGHTS_NAME
    if expected is None:
        warnings.warn(f"{where}: {Path(path) / CONFIG_NAME} records no weights_sha256 (saved by an older "
                      f"abcc_fast), so {w_file} cannot be checked for corruption; save the model again to add it",
                      stacklevel=3)
        return
    if not isinstance(expected, str) or len(expected) != 64:
        raise ValueError(f"{where}: {Path(path) / CONFIG_NAME}: weights_sha256 must be 64 hex digits; the file "
                         "was modified by hand, save the model again")
    if sha256_file(w_file) != expected:
        raise ValueError(f"{where}: {w_file} is corrupt or was modified (its sha256 differs from the weights_sha256 "
                         f"in {CONFIG_NAME}); copy the model directory again or retrain")


def _key_summary(keys, limit: int = 4) -> str:
    keys = list(keys)
    head = ", ".join(keys[:limit])
    return f"{len(keys)} ({head}{', ...' if len(keys) > limit else ''})"


def load_weights(model: nn.Module, path, where: str, map_location="cpu", meta: dict | None = None) -> nn.Module:
    """Load ``path/model.safetensors`` into ``model`` (strict: every key and shape must match),
    move it to ``map_location`` and put it in eval mode. ``meta``: the parsed config.json (its
    ``weights_sha256`` is checked; read again when not given)."""
    w_file = Path(path) / WEIGHTS_NAME
    if meta is None:
        meta = read_model_meta(path, where)
    verify_weights(path, where, meta.get("weights_sha256"))
    device = torch.device(map_location) if isinstance(map_location, str) else map_location
    try:
        state = load_file(str(w_file), device=str(device) if device is not None else "cpu")
    except Exception as err:  # safetensors raises its own error type for a damaged header
        raise ValueError(f"{where}: cannot read {w_file} as safetensors ({type(err).__name__}: {err}); copy the "
                         "model directory again or retrain") from None
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(f"{where}: {w_file} does not match its config ({_key_summary(missing)} tensors missing, "
                         f"{_key_summary(unexpected)} unexpected); the directory mixes files of different models, "
                         "save the model again")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{where}: {w_file} does not match its config: {len(wrong)} tensors of another shape "
                         f"({'; '.join(wrong[:3])}); save the model again")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
