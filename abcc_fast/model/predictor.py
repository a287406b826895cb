"""A saved ABCC as an OpIRBench predictor (``load_predictor`` is the loader opirbench and train use)."""
from __future__ import annotations

from typing import Callable

import torch

from .abcc import ABCC


class ABCCPredictor:
    """OpIRBench predictor around a loaded ABCC: ``predictor(batch) -> {"frames", "solvent", "sei"}``."""

    name = "abcc"
    needs_frame0 = False

    def __init__(self, model: ABCC, path: str = "", steps: int = 1):
        self.model = model.eval()
        self.path = path
        self.steps = int(steps)            # predict(steps=...): 1 = one jump per frame from r = 0
        self.config = {"model": "abcc", **model.config.to_dict()}
        if self.steps != 1:
            self.config["predict_steps"] = self.steps

    def __call__(self, batch: dict) -> dict:
        kw = {"steps": self.steps} if self.steps != 1 else {}
        return self.model.predict(batch["static"], batch["voltage"], batch["composition"], batch["electrode"],
                                  wavenumber=batch.get("wavenumber"), time_s=batch.get("time_s"),
                                  return_streams=True, **kw)


def load_predictor(path) -> Callable[[dict], dict]:
    """OpIRBench's model loader: a saved ABCC directory -> predictor (on the GPU when there is one)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return ABCCPredictor(ABCC.from_pretrained(path, map_location=device), str(path))
