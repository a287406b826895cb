"""Training: the trainer, checkpoints, distributed (DDP) training, prediction from files and saved
models as OpIRBench predictors (``load_predictor``) or stream predictors (``StreamsPredictor``).

    from abcc_fast.train import TrainConfig, train
    result = train(model, dataset, split="random", config=TrainConfig.cpu_default(), out_dir="run")
    result.model_dir          # final EMA weights: ABCC.from_pretrained(result.model_dir)

Shell (abcc_fast/apps/train_cli.py): ``abcc train``, ``abcc predict``, ``abcc demo``; multi-GPU: ``torchrun ... -m abcc_fast.cli train``.
"""
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .distributed import DistInfo, LossModule, init_distributed
from .predict import StreamsPredictor, load_model, load_predictor, predict_to_dir
from .trainer import TrainConfig, TrainResult, learning_rate, train

__all__ = ["TrainConfig", "TrainResult", "train", "learning_rate", "save_checkpoint", "load_checkpoint",
           "latest_checkpoint", "DistInfo", "LossModule", "init_distributed", "load_model", "load_predictor",
           "StreamsPredictor", "predict_to_dir"]
