"""One on-disk format for every model of abcc_fast (ABCC and the OpIRBench baselines):
``DIR/model.safetensors`` (the state dict) + ``DIR/config.json`` ({"model_type", "config"}),
written atomically (a temporary sibling directory swapped into place), read without pickle."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .._atomic import atomic_directory

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_model_dir(module: nn.Module, path, model_type: str, config: dict) -> Path:
    """Write ``module``'s weights and ``config`` under ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "model_type": model_type})
        meta = {"model_type": model_type, "config": config}
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


def load_weights(model: nn.Module, path, where: str, map_location="cpu") -> nn.Module:
    """Load ``path/model.safetensors`` into ``model`` (strict: every key must match), move it to
    ``map_location`` and put it in eval mode."""
    w_file = Path(path) / WEIGHTS_NAME
    device = torch.device(map_location) if isinstance(map_location, str) else map_location
    state = load_file(str(w_file), device=str(device) if device is not None else "cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{where}: {w_file} does not match the config: missing {missing}, unexpected {unexpected}")
    return model.to(device).eval()
