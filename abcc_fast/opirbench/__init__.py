"""OpIRBench: splits come from the dataset manifest; metrics, protocol, leaderboard.

    from abcc_fast.opirbench import evaluate, Persistence
    result = evaluate(Persistence(), dataset, "random")      # EvalResult; .metrics["mae"], ...
    write_leaderboard([result, ...], dataset, "out/", "random")

`abcc bench --model persistence|frame0|PATH --split random|system|loso` does all of it from the shell.
"""
from .leaderboard import PROTOCOL_VERSION, manifest_sha256, write_leaderboard
from .metrics import (ALL_METRICS, METRIC_DEFINITIONS, METRIC_KEYS, METRICS_VERSION, MetricContext, band_centroids,
                      score_batch)
from .oracle import SimulatorOracle, training_knowledge
from .protocol import (REFERENCES, EvalResult, Frame0, NoModelLoader, Persistence, auto_threads, evaluate,
                       load_predictor, register_model_loader)

__all__ = ["evaluate", "EvalResult", "Persistence", "Frame0", "SimulatorOracle", "training_knowledge", "REFERENCES",
           "load_predictor", "NoModelLoader", "register_model_loader", "auto_threads", "ALL_METRICS", "METRIC_KEYS",
           "METRIC_DEFINITIONS", "METRICS_VERSION", "MetricContext", "score_batch", "band_centroids",
           "write_leaderboard", "manifest_sha256", "PROTOCOL_VERSION"]
