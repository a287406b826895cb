"""ABCC (docs/model.md): the two-stream chemical-flow model, its config and the OpIRBench loader."""
from .abcc import ABCC, ABCCPredictor, load_predictor
from .config import ABCCConfig

__all__ = ["ABCC", "ABCCConfig", "ABCCPredictor", "load_predictor"]
