"""The training loop: AdamW, warm-up + cosine, gradient clipping, EMA, AMP on GPU, exact resume.

It reads top to bottom like nanoGPT's ``train.py``::

    for step in range(start, steps):
        lr = warm-up, then cosine to min_lr           (a function of the step alone)
        seed torch/numpy/python from (seed, step, rank)
        loss, logs = model.training_loss(batch, generator)     (inside DDP.forward, see distributed.py)
        backward, clip the gradient norm, AdamW step, EMA update
        every log_every: CSV (+ TensorBoard) row;  every eval_every: validation loss of the EMA
        weights, best model kept;  every checkpoint_every: atomic checkpoint

Determinism: the batch of step s is a pure function of (seed, s) -- epoch e = s // steps_per_epoch
draws its permutation from ``DistributedSampler(seed=seed).set_epoch(e)`` -- and every random number
the model draws comes from generators seeded by (seed, s, rank). Together with bit-exact
safetensors checkpoints of weights, EMA and optimizer moments, resuming after a kill gives the
same parameters, bit for bit on CPU, as a run that was never interrupted.

Budgets are steps: the same seed gives the same numbers on a busy or an idle machine. The wall
clock is measured and reported beside the steps (``wall_time_s``, ``s_per_step``, the ``elapsed_s``
column of log.csv), never used to schedule. ``max_time_s`` is only a safety cap: when it runs out
the run ends early with a warning and is marked ``capped`` (``stopped_by == "time_cap"``); the
learning rates of the steps it did run are those of the full step budget.

The model contract (``abcc_fast.model.ABCC`` and any stand-in)::

    loss, logs = model.training_loss(batch, generator=None)   # collated samples; generator: CPU
    model.save_pretrained(dir); type(model).from_pretrained(dir)
    optional: model.training_dataset(dataset, split, part, seed) -> torch Dataset of samples

The synthetic ground truth (``solvent``, ``sei``, ``extent``) never reaches ``training_loss``: the
collate function drops it.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, default_collate

from .._atomic import atomic_directory, write_text
from .checkpoint import (checkpoint_root, dataset_fingerprint, divergence_message, latest_checkpoint,
                         restore_checkpoint, save_checkpoint)
from .distributed import DistInfo, barrier, init_distributed, mean_over_ranks, wrap_for_training

SYNTHETIC_TRUTH = ("solvent", "sei", "extent")  # never train on them
TRAINING_DATA_FILE = "training_data.json"       # vocabularies + grid beside the saved model
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
        presets = {"tiny": cls.tiny, "cpu": cls.cpu_default, "cpu_default": cls.cpu_default,
                   "gpu": cls.gpu_default, "gpu_default": cls.gpu_default}
        if name not in presets:
            raise ValueError(f"unknown training preset {name!r}; choose one of tiny, cpu, gpu")
        return presets[name](**overrides)

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


# --------------------------------------------------------------------------------------------
# the pieces
# --------------------------------------------------------------------------------------------
def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``lr`` down to ``lr * min_lr_ratio``;
    a function of the step alone (never of the wall clock).

    lr(s) = lr * (s + 1) / warmup                                   s < warmup
    lr(s) = min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2          p = (s - warmup) / (steps - warmup),
    clipped to [0, 1].
    """
    warmup = int(cfg.warmup_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, int(cfg.steps) - warmup))
    min_lr = cfg.lr * cfg.min_lr_ratio
    return min_lr + 0.5 * (cfg.lr - min_lr) * (1.0 + math.cos(math.pi * p))


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices/embeddings only (nanoGPT's rule: ndim >= 2)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta; buffers are copied."""
    for e, p in zip(ema_model.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema_model.buffers(), model.buffers()):
        e.copy_(b)


def ema_decay_at(step: int, cfg: TrainConfig) -> float:
    return min(cfg.ema_decay, (1.0 + step) / (10.0 + step))


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & 0x7FFFFFFFFFFFFFFF


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def collate(samples: list) -> dict:
    """Default collation, without the synthetic ground truth (never a training input)."""
    batch = default_collate(samples)
    for k in SYNTHETIC_TRUTH:
        batch.pop(k, None)
    return batch


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _training_set(model: nn.Module, dataset, split: str, part: str, seed: int):
    hook = getattr(model, "training_dataset", None)
    if callable(hook):
        return hook(dataset, split, part, seed)
    return dataset.split(split, part)


def training_data_info(dataset, split: str) -> dict:
    """What ``abcc predict`` needs beside the weights: grid, T, vocabularies, the split trained on."""
    m = dataset.manifest
    mean, std = dataset.norm_stats(split)
    return {
        "wavenumber": [float(x) for x in dataset.wavenumber.tolist()],
        "T": int(dataset.T),
        "components": list(m.get("components") or []),
        "electrodes": list(m.get("electrodes") or []),
        "systems": [s.get("name", str(i)) if isinstance(s, dict) else str(s)
                    for i, s in enumerate(m.get("systems") or [])],
        "marker_windows": m.get("marker_windows") or {},
        "split": split,
        "normalization": {"mean": mean, "std": std},
        "dataset": m.get("name"),
    }


def save_model(model: nn.Module, path, info: Optional[dict] = None) -> Path:
    """``model.save_pretrained`` into ``path`` atomically, plus ``training_data.json``."""
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp)
        if info is not None:
            (Path(tmp) / TRAINING_DATA_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
    return Path(path)


class _Log:
    """CSV log (+ TensorBoard when installed), rank 0 only. Columns fixed at the first row."""

    BASE = ["step", "kind", "loss", "lr", "grad_norm", "elapsed_s"]

    def __init__(self, path: Path, start_step: int, tensorboard: bool, enabled: bool):
        self.path, self.enabled, self.columns, self.tb = path, enabled, None, None
        if not enabled:
            return
        if path.exists() and start_step > 0:  # resume: keep the rows up to the checkpoint
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            kept = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= start_step]
            if rows:
                self.columns = list(rows[0].keys())
                buf = [",".join(self.columns)] + [",".join(r.get(c, "") or "" for c in self.columns) for r in kept]
                write_text(path, "\n".join(buf) + "\n")
        elif path.exists():
            path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(path.parent / "tb"))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        if self.columns is None:
            self.columns = self.BASE + sorted(k for k in row if k not in self.BASE)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(self.columns)
            w.writerow(["" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                        for c in self.columns])
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step",):
                    self.tb.add_scalar(f"{row['kind']}/{k}", v, int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@torch.no_grad()
def validation_loss(model: nn.Module, val_set, cfg: TrainConfig, device: torch.device) -> Optional[float]:
    """Mean ``training_loss`` of ``model`` over the first ``val_batches`` batches of ``val_set``,
    with fixed generators (the same numbers at every evaluation, so values compare)."""
    if val_set is None or len(val_set) == 0:
        return None
    B = int(cfg.batch_size)
    n_batches = math.ceil(len(val_set) / B)
    if cfg.val_batches:
        n_batches = min(n_batches, int(cfg.val_batches))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for k in range(n_batches):
            idx = range(k * B, min(len(val_set), (k + 1) * B))
            batch = _to_device(collate([val_set[i] for i in idx]), device)
            gen = torch.Generator().manual_seed(_mix(cfg.seed, 999_983, k))
            with _autocast(device, cfg):
                loss, _ = model.training_loss(batch, generator=gen)
            total += float(loss) * len(idx)
            count += len(idx)
    finally:
        model.train(was_training)
    return total / max(count, 1)


def _autocast(device: torch.device, cfg: TrainConfig):
    enabled = bool(cfg.amp) and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _steps_per_epoch(n_per_rank: int, batch_size: int) -> int:
    return max(1, n_per_rank // batch_size)


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
def train(model: nn.Module, dataset, *, split: str = "random", config: Optional[TrainConfig] = None,
          out_dir, resume: bool = True, progress: bool = True, dist_info: Optional[DistInfo] = None) -> TrainResult:
    """Train ``model`` on the training part of ``split`` of ``dataset``; write the run to ``out_dir``.

    out_dir layout::

        checkpoints/step_NNNNNNN/, checkpoints/LATEST     latest checkpoint (atomic, see checkpoint.py)
        model/                                            final EMA weights (save_pretrained + training_data.json)
        best/                                             EMA weights at the best validation loss
        log.csv (+ tb/)                                   training/validation rows
        train_config.json, train_result.json

    resume: continue from ``checkpoints/LATEST`` when there is one (exact: same parameters as an
    uninterrupted run); False starts afresh and deletes the old checkpoints. Under ``torchrun``
    every rank calls this; rank 0 writes. Returns a :class:`TrainResult`.

    >>> cfg = TrainConfig.tiny(steps=10)
    >>> result = train(ABCC(ABCCConfig.from_dataset(ds, "random", "tiny")), ds, config=cfg, out_dir="run")  # doctest: +SKIP
    """
    cfg = (config or TrainConfig.cpu_default()).validate()
    info = dist_info or init_distributed(cfg.device)
    device = info.device
    out = Path(out_dir)
    t_start = time.perf_counter()

    # ---- data --------------------------------------------------------------------------
    train_set = _training_set(model, dataset, split, "train", cfg.seed)
    val_set = _training_set(model, dataset, split, "val", cfg.seed)
    if len(train_set) == 0:
        raise ValueError(f"split {split!r} has no training samples in this dataset; check --split / --data")
    sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    B = min(int(cfg.batch_size), len(sampler))
    steps_per_epoch = _steps_per_epoch(len(sampler), B)

    # ---- model, EMA, optimizer ------------------------------------------------------------
    model.to(device)
    model.train()
    ema_model = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = build_optimizer(model, cfg)
    start_step, best_val, elapsed_before, resumed_from = 0, None, 0.0, None

    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and checkpoint_root(out).exists():
            shutil.rmtree(checkpoint_root(out))
    barrier(info)
    ckpt = latest_checkpoint(out) if resume else None
    data_sha = dataset_fingerprint(dataset)
    if ckpt is not None:
        st = restore_checkpoint(ckpt, model, ema_model, optimizer, split=split, train_config=cfg.to_json(),
                                dataset_sha256=data_sha)
        start_step = int(st["step"])
        best_val = st.get("best_val_loss")
        elapsed_before = float(st.get("elapsed_s", 0.0))
        resumed_from = start_step
    if info.is_main:
        write_text(out / "train_config.json", json.dumps(
            {"train": cfg.to_json(), "split": split, "world_size": info.world_size,
             "model": _model_config(model)}, indent=1) + "\n")

    wrapped = wrap_for_training(model, info, cfg.find_unused_parameters)
    log = _Log(out / "log.csv", start_step, cfg.tensorboard, info.is_main)
    data_info = training_data_info(dataset, split)

    def state_json(step_now: int) -> dict:
        return {"split": split, "dataset_sha256": data_sha, "train_config": cfg.to_json(),
                "model_config": _model_config(model),
                "best_val_loss": best_val, "elapsed_s": elapsed_before + time.perf_counter() - t_start,
                "world_size": info.world_size, "seed": cfg.seed, "steps_per_epoch": steps_per_epoch}

    def checkpoint(step_now: int) -> None:
        if info.is_main:
            save_checkpoint(out, step=step_now, model_state=model.state_dict(), ema_state=ema_model.state_dict(),
                            optimizer_state=optimizer.state_dict(), state=state_json(step_now),
                            keep=cfg.keep_checkpoints)
        barrier(info)

    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(cfg.steps), initial=start_step, desc=f"train {split}", unit="step", dynamic_ncols=True)

    step = start_step
    stopped_by = "steps"
    window_loss, window_n, last_train_loss, final_val = 0.0, 0, float("nan"), None
    try:
        while step < cfg.steps and stopped_by == "steps":
            epoch = step // steps_per_epoch
            sampler.set_epoch(epoch)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            order = list(sampler)
            batches = [order[k * B:(k + 1) * B] for k in range(step % steps_per_epoch, steps_per_epoch)]
            g = torch.Generator().manual_seed(_mix(cfg.seed, epoch, info.rank))
            loader = DataLoader(train_set, batch_sampler=batches, collate_fn=collate, num_workers=cfg.num_workers,
                                generator=g, pin_memory=device.type == "cuda")
            for batch in loader:
                t_step = time.perf_counter()
                lr = learning_rate(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                # every random number of this step is a function of (seed, step, rank): exact resume
                step_seed = _mix(cfg.seed, step, info.rank)
                seed_everything(step_seed)
                generator = torch.Generator().manual_seed(step_seed)  # CPU: the model moves its draws

                batch = _to_device(batch, device)
                with _autocast(device, cfg):
                    loss, logs = wrapped(batch, generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(divergence_message(float(loss), step, out))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip and cfg.grad_clip > 0:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                else:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))
                optimizer.step()
                ema_update(ema_model, model, ema_decay_at(step, cfg))
                step += 1

                window_loss += float(loss.detach())
                window_n += 1
                if step % cfg.log_every == 0 or step == cfg.steps:
                    last_train_loss = mean_over_ranks(window_loss / window_n, info)
                    row = {"step": step, "kind": "train", "loss": last_train_loss, "lr": lr, "grad_norm": grad_norm,
                           "elapsed_s": elapsed_before + time.perf_counter() - t_start}
                    row.update({k: float(v) for k, v in (logs or {}).items() if k not in row})
                    log.write(row)
                    window_loss, window_n = 0.0, 0
                    if bar is not None:
                        bar.set_postfix(loss=f"{last_train_loss:.4g}", lr=f"{lr:.2e}")
                if bar is not None:
                    bar.update(1)

                if cfg.max_time_s and step < cfg.steps and _over_time_cap(cfg, info, device, elapsed_before,
                                                                          t_start, t_step):
                    stopped_by = "time_cap"
                    _warn_capped(cfg, step, elapsed_before + time.perf_counter() - t_start)

                last = step >= cfg.steps or stopped_by == "time_cap"
                if (cfg.eval_every and step % cfg.eval_every == 0) or last:
                    if info.is_main:
                        val = validation_loss(ema_model, val_set, cfg, device)
                        final_val = val
                        if val is not None:
                            log.write({"step": step, "kind": "val", "loss": val, "lr": lr, "grad_norm": None,
                                       "elapsed_s": elapsed_before + time.perf_counter() - t_start})
                            if best_val is None or val < best_val:
                                best_val = val
                                save_model(ema_model, out / "best", data_info)
                    barrier(info)
                if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or last:
                    checkpoint(step)
                if last:
                    break
    except KeyboardInterrupt:
        if step > start_step:
            checkpoint(step)  # an interrupt keeps the work done; resume continues exactly from here
        raise
    finally:
        if bar is not None:
            bar.close()
        log.close()

    if info.is_main:
        save_model(ema_model, out / "model", data_info)
    barrier(info)
    wall = time.perf_counter() - t_start
    result = TrainResult(run_dir=out, model_dir=out / "model",
                         best_dir=(out / "best") if (out / "best").exists() else None,
                         log_path=out / "log.csv", steps_done=step, stopped_by=stopped_by,
                         train_loss=last_train_loss, best_val_loss=best_val, final_val_loss=final_val,
                         wall_time_s=wall, total_time_s=elapsed_before + wall, resumed_from=resumed_from,
                         steps_budget=int(cfg.steps), model=ema_model)
    if info.is_main:
        write_text(out / "train_result.json", json.dumps(result.to_json(), indent=1) + "\n")
    return result


def _over_time_cap(cfg: TrainConfig, info: DistInfo, device: torch.device, elapsed_before: float,
                   t_start: float, t_step: float) -> bool:
    """Would the next step end past ``max_time_s``? Rank 0 decides, every rank follows."""
    now = time.perf_counter()
    over = elapsed_before + (now - t_start) + (now - t_step) >= cfg.max_time_s
    if info.distributed:
        flag = torch.tensor([1.0 if over else 0.0], device=device if info.backend == "nccl" else "cpu")
        torch.distributed.broadcast(flag, src=0)
        over = bool(flag.item() > 0)
    return over


def _warn_capped(cfg: TrainConfig, step: int, elapsed_s: float) -> None:
    warnings.warn(
        f"the wall-clock cap max_time_s={cfg.max_time_s:g} s ended this run after {step} of its {cfg.steps} steps "
        f"({elapsed_s:.0f} s), before the end of its learning-rate schedule (the schedule follows the steps, not the "
        "clock): its scores do not compare with full runs, and it is marked capped. For comparable numbers rerun "
        "without the cap, or with fewer --steps", RuntimeWarning, stacklevel=3)


def _model_config(model: nn.Module) -> Optional[dict]:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    if dataclasses.is_dataclass(cfg):
        try:
            return json.loads(json.dumps(asdict(cfg), default=str))
        except (TypeError, ValueError):
            return None
    return cfg if isinstance(cfg, dict) else None
