"""Pretrained ABCC models shipped inside the package (docs/pretrained.md): where they are, by name.

Each packaged model is a folder ``abcc_fast/pretrained/<name>/`` in the saved-model format of every
abcc_fast model (``model.safetensors`` + ``config.json``, abcc_fast/model/_io.py), plus
``training_data.json`` (grid, T, vocabularies: what ``abcc predict`` needs), ``card.json`` (the
model card: data, command, OpIRBench test scores beside the references and the simulator oracle,
intended use and limits) and ``log.csv`` (the training curve). They are written by
``python -m abcc_fast.apps.pretrained_build`` (``make pretrained``), one model per OpIRBench split:

    opirsim          trained on the ``random`` split (all ten OpIRSim systems): the default model
    opirsim-system   trained on the ``system`` split (systems 2 and 5 never seen): scored on them

This module is a leaf of the layers (docs/architecture.md): it maps names to folders and reads
cards, imports nothing of abcc_fast and loads no model, so ``model`` and ``train`` can use it.
``ABCC.from_pretrained("opirsim")`` is the loader: it resolves a packaged name through
:func:`resolve` when no file or folder of that name exists; no network, no pickle.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Union

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_NAME = "opirsim"
SPLIT_MODELS = {"random": "opirsim", "system": "opirsim-system"}   # the name each split's model gets
CARD_NAME = "card.json"
LOG_NAME = "log.csv"
MAX_BYTES = 10 * 1024 * 1024   # a packaged model (all its files) must stay below this
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

BUILD_COMMAND = "python -m abcc_fast.apps.pretrained_build"   # what writes the folders (make pretrained)

__all__ = ["PACKAGE_DIR", "DEFAULT_NAME", "SPLIT_MODELS", "CARD_NAME", "LOG_NAME", "MAX_BYTES", "BUILD_COMMAND",
           "names", "path", "resolve", "card", "is_packaged_name"]


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("model.safetensors", "config.json", CARD_NAME))


def names() -> list[str]:
    """The packaged models present in this installation, sorted."""
    if not PACKAGE_DIR.is_dir():
        return []
    return sorted(p.name for p in PACKAGE_DIR.iterdir() if p.is_dir() and _NAME_RE.match(p.name) and _complete(p))


def is_packaged_name(value) -> bool:
    """True when ``value`` is a plain name (no separator) that is not an existing path."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        return False
    return not os.path.exists(value)


def _listing() -> str:
    have = names()
    return ", ".join(have) if have else ("none: this installation ships no weights; build them with "
                                         f"`{BUILD_COMMAND}` (make pretrained)")


def path(name: str) -> Path:
    """The folder of the packaged model ``name``; ``FileNotFoundError`` listing the packaged names
    when there is none."""
    folder = PACKAGE_DIR / str(name)
    if not (isinstance(name, str) and _NAME_RE.match(name) and folder.is_dir() and _complete(folder)):
        raise FileNotFoundError(f"{name!r} is neither an existing model directory nor a packaged pretrained model; "
                                f"packaged models: {_listing()}")
    return folder


def resolve(name_or_path: Union[str, os.PathLike]) -> Union[str, os.PathLike, Path]:
    """A path unchanged when it exists or looks like a path; a plain name that exists nowhere: the
    packaged model's folder (``FileNotFoundError`` listing the packaged names when unknown)."""
    if is_packaged_name(name_or_path):
        return path(name_or_path)
    return name_or_path


def card(name_or_path: Union[str, os.PathLike]) -> dict:
    """The model card (``card.json``) of a packaged name or of a model folder."""
    folder = Path(resolve(name_or_path))
    f = folder / CARD_NAME
    if not f.is_file():
        raise FileNotFoundError(f"{folder} has no {CARD_NAME}; it was not written by {BUILD_COMMAND}")
    try:
        out = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{f} is not valid JSON ({err}); rebuild it with "
                         f"{BUILD_COMMAND}") from None
    if not isinstance(out, dict):
        raise ValueError(f"{f} does not hold a JSON object; rebuild it with {BUILD_COMMAND}")
    return out

