"""ABCC (docs/model.md): the two-stream chemical-flow model, its config and the OpIRBench loader."""
from .abcc import ABCC
from .config import ABCCConfig
from .predictor import ABCCPredictor, load_predictor

__all__ = ["ABCC", "ABCCConfig", "ABCCPredictor", "load_predictor"]
