"""OpIRBench baselines: the models ABCC is compared with, on the same inputs.

Every baseline gets what ABCC gets -- the static spectrum, the voltage profile (and the protocol
duration), the composition and the electrode -- is trained by the same trainer
(``abcc_fast.train.train``) and scored by ``abcc bench``. All predict all T frames (frame 0
included, although it is not scored) in z-units of the training split, and start from the
persistence prediction (zero-initialised output heads).

======================  ==========  =======================================================
name                    family      method
======================  ==========  =======================================================
``mlp``                 static      MLP: static spectrum + conditions -> all frames
``cnn``                 static      1-D residual CNN along wavenumber, one output channel per frame
``gru``                 sequence    GRU (or LSTM) rolled out frame by frame, voltage as input
``patchtst``            sequence    PatchTST-style transformer over frame patches + static patches
``dlinear``             sequence    DLinear: per-channel linear maps of the decomposed voltage
``convlstm``            video       ConvLSTM rollout over frames as a 1-D video
``simvp``               video       SimVP encoder - inception translator - decoder
``cfm``                 generative  conditional flow matching, multi-step Euler sampler
``meanflow_noise``      generative  plain MeanFlow from noise, one-step sampler
======================  ==========  =======================================================

::

    from abcc_fast.model.baselines import BASELINES, BaselineModel
    model = BASELINES["gru"].from_dataset(ds, "random", preset="cpu_default")
    loss, logs = model.training_loss(batch)
    model.save_pretrained("run/model"); model = BaselineModel.from_pretrained("run/model")

Shell: ``abcc train --model gru --preset cpu --out RUN``; ``abcc bench --model RUN/model``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import torch

from .base import CONFIG_NAME, BaselineConfig, BaselineModel
from .generative import CFMBaseline, CFMConfig, MeanFlowNoiseBaseline, MeanFlowNoiseConfig
from .sequence import (DLinearBaseline, DLinearConfig, GRUBaseline, GRUConfig, PatchTSTBaseline,
                       PatchTSTConfig)
from .static import CNNBaseline, CNNConfig, MLPBaseline, MLPConfig
from .video import ConvLSTMBaseline, ConvLSTMConfig, SimVPBaseline, SimVPConfig

BASELINES: dict[str, type] = {cls.model_type: cls for cls in (
    MLPBaseline, CNNBaseline, GRUBaseline, PatchTSTBaseline, DLinearBaseline, ConvLSTMBaseline, SimVPBaseline,
    CFMBaseline, MeanFlowNoiseBaseline)}


def get(name: str) -> type:
    """The baseline class called ``name`` (a key of BASELINES), with a message naming them all."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return BASELINES[name]


def saved_model_type(path) -> Optional[str]:
    """The ``model_type`` recorded in ``path/config.json`` (None when there is none to read)."""
    f = Path(path) / CONFIG_NAME
    if not f.is_file():
        return None
    try:
        meta = json.loads(f.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return None
    return meta.get("model_type") if isinstance(meta, dict) else None


class BaselinePredictor:
    """OpIRBench predictor around a loaded baseline: ``predictor(batch) -> {"frames"}``."""

    needs_frame0 = False

    def __init__(self, model: BaselineModel, path: str = ""):
        self.model = model.eval()
        self.path = path
        self.name = model.model_type
        self.config = {"model": model.model_type, **model.config.to_dict()}

    def __call__(self, batch: dict) -> dict:
        return self.model.predict(batch["static"], batch["voltage"], batch["composition"], batch["electrode"],
                                  wavenumber=batch.get("wavenumber"), time_s=batch.get("time_s"))


def load_predictor(path) -> Callable[[dict], dict]:
    """A saved baseline directory -> OpIRBench predictor (on the GPU when there is one)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return BaselinePredictor(BaselineModel.from_pretrained(path, map_location=device), str(path))


__all__ = ["BASELINES", "BaselineConfig", "BaselineModel", "BaselinePredictor", "get", "load_predictor",
           "saved_model_type", "MLPBaseline", "MLPConfig", "CNNBaseline", "CNNConfig", "GRUBaseline", "GRUConfig",
           "PatchTSTBaseline", "PatchTSTConfig", "DLinearBaseline", "DLinearConfig", "ConvLSTMBaseline",
           "ConvLSTMConfig", "SimVPBaseline", "SimVPConfig", "CFMBaseline", "CFMConfig", "MeanFlowNoiseBaseline",
           "MeanFlowNoiseConfig"]
