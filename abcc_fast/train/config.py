"""Training configuration and result: ``TrainConfig`` (optimisation and bookkeeping of one run, its
presets) and ``TrainResult`` (what ``train`` did). See ``trainer`` for the loop."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..presets import config_preset

CPU_DEFAULT_STEPS = 6000                         # TrainConfig.cpu_default's step budget (the demo's)


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of one training run (JSON-serialisable via ``asdict``).

    ``steps`` is the budget, and the learning-rate schedule is a function of the step alone.
    ``max_time_s`` is an optional wall-clock safety cap: it can only end a run early (with a
    warning; the result is marked ``capped``), it never changes the schedule.
    """

    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.05        # cosine floor: min_lr = lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.05        # decoupled (AdamW); not applied to norms/biases (ndim < 2)
    betas: tuple = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0            # max global gradient norm; 0 disables
    ema_decay: float = 0.999          # ramped in as min(decay, (1 + s) / (10 + s))
    amp: bool = True                  # bf16 autocast on CUDA; ignored on CPU
    seed: int = 0
    log_every: int = 10
    eval_every: int = 250             # validation loss (EMA weights); 0: only at the end
    val_batches: int = 8              # batches of the validation part per evaluation; 0: all
    checkpoint_every: int = 250       # 0: only at the end
    keep_checkpoints: int = 1
    max_time_s: Optional[float] = None
    num_workers: int = 0
    device: Optional[str] = None      # None: CUDA when available
    find_unused_parameters: bool = False
    tensorboard: bool = True          # when the tensorboard package is installed
    preset: str = "custom"

    @classmethod
    def tiny(cls, **overrides) -> "TrainConfig":
        """Seconds on a CPU: tests and ``abcc demo --quick``."""
        base = dict(steps=20, batch_size=4, lr=3e-3, warmup_steps=2, ema_decay=0.9, log_every=1, eval_every=10,
                    val_batches=2, checkpoint_every=10, preset="tiny")
        return cls(**{**base, **overrides})

    @classmethod
    def cpu_default(cls, **overrides) -> "TrainConfig":
        """The demo's budget on 2 CPU cores: ``CPU_DEFAULT_STEPS`` steps of batch 8 per model.

        A step budget, not a time budget: the same seed gives the same model on a busy or an idle
        machine. The constant is sized so that ``abcc demo`` (two models, one per split, plus
        scoring) stays within ~15 minutes on 2 quiet cores; change ``CPU_DEFAULT_STEPS`` (or pass
        ``steps=``) when the model's step cost changes. EMA 0.99 averages over the last ~100 steps,
        a small share of the run. No wall-clock cap by default (``max_time_s=None``)."""
        base = dict(steps=CPU_DEFAULT_STEPS, batch_size=8, lr=2e-3, warmup_steps=50, ema_decay=0.99,
                    log_every=10, eval_every=200, val_batches=4, checkpoint_every=200, preset="cpu_default")
        return cls(**{**base, **overrides})

    @classmethod
    def gpu_default(cls, **overrides) -> "TrainConfig":
        """One GPU (or per rank under torchrun): bf16 autocast, larger batch, longer schedule."""
        base = dict(steps=30000, batch_size=64, lr=5e-4, warmup_steps=1000, ema_decay=0.9999, log_every=50,
                    eval_every=1000, val_batches=16, checkpoint_every=1000, num_workers=4, preset="gpu_default")
        return cls(**{**base, **overrides})

    @classmethod
    def preset_named(cls, name: str, **overrides) -> "TrainConfig":
        """The preset ``name`` (tiny, cpu, gpu, or the config spelling cpu_default, gpu_default)."""
        return getattr(cls, config_preset(name, "training preset"))(**overrides)

    def validate(self) -> "TrainConfig":
        if int(self.steps) < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ValueError(f"max_time_s must be > 0 or None, got {self.max_time_s}")
        return self

    def to_json(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)


@dataclass
class TrainResult:
    """What :func:`train` did. ``model`` is the EMA copy (the one to evaluate and ship)."""

    run_dir: Path
    model_dir: Path                   # final EMA weights, loadable with from_pretrained / abcc predict
    best_dir: Optional[Path]          # EMA weights at the best validation loss (None without validation)
    log_path: Path
    steps_done: int
    stopped_by: str                   # "steps" | "time_cap" (max_time_s ended the run early)
    train_loss: float                 # mean training loss of the last logging window
    best_val_loss: Optional[float]
    final_val_loss: Optional[float]
    wall_time_s: float                # this invocation
    total_time_s: float               # including the time before a resume
    resumed_from: Optional[int]
    steps_budget: Optional[int] = None  # TrainConfig.steps
    model: Any = field(default=None, repr=False)

    @property
    def capped(self) -> bool:
        """True when the wall-clock cap ended the run before its step budget."""
        return self.stopped_by == "time_cap"

    @property
    def s_per_step(self) -> Optional[float]:
        """Wall-clock seconds per step over the whole run (evaluation and checkpoints included)."""
        return self.total_time_s / self.steps_done if self.steps_done else None

    def to_json(self) -> dict:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k != "model"}
        d["capped"] = self.capped
        d["s_per_step"] = self.s_per_step
        return d


