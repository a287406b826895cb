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
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, default_collate
from tqdm.auto import tqdm

from ..analysis.sei_labels import SeiLabelled
from .._atomic import atomic_directory, write_text
from ..data.manifest import dataset_identity
from .config import CPU_DEFAULT_STEPS, TrainConfig, TrainResult  # noqa: F401
from .checkpoint import (checkpoint_root, dataset_fingerprint, divergence_message, latest_checkpoint,
                         restore_checkpoint, save_checkpoint)
from .distributed import DistInfo, barrier, init_distributed, mean_over_ranks, wrap_for_training

SYNTHETIC_TRUTH = ("solvent", "sei", "extent")  # never train on them
TRAINING_DATA_FILE = "training_data.json"       # vocabularies + grid beside the saved model
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


def _training_set(model: nn.Module, dataset, split: str, part: str, seed: int, labels: bool = True,
                  progress: bool = True):
    """The ``part`` of ``split`` the trainer draws from (the model's ``training_dataset`` hook when it has
    one); with ``labels`` and ``w_sei_label`` > 0 each item also carries ``sei_label`` [T, W], the
    template fit of its frames (``_labelled``)."""
    hook = getattr(model, "training_dataset", None)
    data = hook(dataset, split, part, seed) if callable(hook) else dataset.split(split, part)
    return _labelled(model, data, dataset, progress) if labels else data


def _labelled(model: nn.Module, data, dataset, progress: bool = True):
    """``data`` with the SEI labels added when the model's ``w_sei_label`` > 0 (``analysis.sei_labels``:
    computed once per dataset, about 0.03 s per sample, and cached); else ``data`` unchanged."""
    if getattr(getattr(model, "config", None), "w_sei_label", 0) <= 0:
        return data
    try:
        return SeiLabelled(data, dataset, progress=progress)
    except ValueError as e:
        raise ValueError(f"the SEI labels (w_sei_label > 0) cannot be fitted to this dataset: {e}. Train without "
                         "them with w_sei_label=0 (ABCCConfig; `abcc train --no-sei-labels`)") from e


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
            try:  # tensorboard is optional: the CSV log is written either way
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
    run = _Run(model, dataset, split, cfg, Path(out_dir), info)
    run.prepare(resume, progress)
    run.loop(progress)
    return run.finish()


class _Run:
    """One training run, step by step: ``prepare`` (data, EMA, optimizer, resume), ``loop`` (the steps
    with logging, validation and checkpoints), ``finish`` (final weights and TrainResult)."""

    def __init__(self, model: nn.Module, dataset, split: str, cfg: TrainConfig, out: Path, info: DistInfo):
        self.model, self.dataset, self.split, self.cfg, self.out, self.info = model, dataset, split, cfg, out, info
        self.device = info.device
        self.t_start = time.perf_counter()
        self.start_step, self.best_val, self.elapsed_before, self.resumed_from = 0, None, 0.0, None
        self.step, self.stopped_by = 0, "steps"
        self.last_train_loss, self.final_val = float("nan"), None

    # -- prepare ------------------------------------------------------------------------------
    def prepare(self, resume: bool, progress: bool = True) -> None:
        cfg, info, out, model = self.cfg, self.info, self.out, self.model
        self.train_set = _training_set(model, self.dataset, self.split, "train", cfg.seed, labels=False)
        self.val_set = _training_set(model, self.dataset, self.split, "val", cfg.seed, labels=False)
        if len(self.train_set) == 0:
            raise ValueError(f"split {self.split!r} has no training samples in this dataset; check --split / --data")
        self.sampler = DistributedSampler(self.train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=False)
        self.B = min(int(cfg.batch_size), len(self.sampler))
        self.steps_per_epoch = _steps_per_epoch(len(self.sampler), self.B)
        model.to(self.device)
        model.train()
        self.ema_model = copy.deepcopy(model).requires_grad_(False).eval()
        self.optimizer = build_optimizer(model, cfg)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not resume and checkpoint_root(out).exists():
                shutil.rmtree(checkpoint_root(out))
        barrier(info)
        self._restore(latest_checkpoint(out) if resume else None)
        # the SEI labels after the checkpoint's checks (a refused resume fits none); their one-off fit
        # (cached per dataset) is not training time
        self.train_set = _labelled(model, self.train_set, self.dataset, progress and info.is_main)
        self.val_set = _labelled(model, self.val_set, self.dataset, False)
        self.t_start = time.perf_counter()
        if info.is_main:
            write_text(out / "train_config.json", json.dumps(
                {"train": cfg.to_json(), "split": self.split, "world_size": info.world_size,
                 "model": _model_config(model)}, indent=1) + "\n")
        self.wrapped = wrap_for_training(model, info, cfg.find_unused_parameters)
        self.log = _Log(out / "log.csv", self.start_step, cfg.tensorboard, info.is_main)
        self.data_info = training_data_info(self.dataset, self.split)

    def _restore(self, ckpt) -> None:
        """Continue from checkpoint ``ckpt`` (None: start afresh)."""
        self.data_sha = dataset_fingerprint(self.dataset)
        self.data_identity = dataset_identity(self.dataset)
        if ckpt is None:
            return
        st = restore_checkpoint(ckpt, self.model, self.ema_model, self.optimizer, split=self.split,
                                train_config=self.cfg.to_json(), dataset_sha256=self.data_sha,
                                dataset_identity=self.data_identity)
        self.start_step = int(st["step"])
        self.best_val = st.get("best_val_loss")
        self.elapsed_before = float(st.get("elapsed_s", 0.0))
        self.resumed_from = self.start_step

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t_start

    def state_json(self, step_now: int) -> dict:
        return {"split": self.split, "dataset_sha256": self.data_sha, "dataset_identity": self.data_identity,
                "train_config": self.cfg.to_json(),
                "model_config": _model_config(self.model),
                "best_val_loss": self.best_val, "elapsed_s": self._elapsed(),
                "world_size": self.info.world_size, "seed": self.cfg.seed, "steps_per_epoch": self.steps_per_epoch}

    def checkpoint(self, step_now: int) -> None:
        if self.info.is_main:
            save_checkpoint(self.out, step=step_now, model_state=self.model.state_dict(),
                            ema_state=self.ema_model.state_dict(), optimizer_state=self.optimizer.state_dict(),
                            state=self.state_json(step_now), keep=self.cfg.keep_checkpoints)
        barrier(self.info)

    # -- the loop -----------------------------------------------------------------------------
    def loop(self, progress: bool) -> None:
        cfg, info = self.cfg, self.info
        self.bar = None
        if progress and info.is_main:
            self.bar = tqdm(total=int(cfg.steps), initial=self.start_step, desc=f"train {self.split}", unit="step",
                            dynamic_ncols=True)
        self.step = self.start_step
        self.window_loss, self.window_n = 0.0, 0
        try:
            while self.step < cfg.steps and self.stopped_by == "steps":
                for batch in self._epoch_loader():
                    if self._train_step(batch):
                        break
        except KeyboardInterrupt:
            if self.step > self.start_step:
                self.checkpoint(self.step)  # an interrupt keeps the work done; resume continues exactly from here
            raise
        finally:
            if self.bar is not None:
                self.bar.close()
            self.log.close()

    def _epoch_loader(self) -> DataLoader:
        """The batches left in the current epoch (a pure function of (seed, step))."""
        cfg, step, B, spe = self.cfg, self.step, self.B, self.steps_per_epoch
        epoch = step // spe
        self.sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        order = list(self.sampler)
        batches = [order[k * B:(k + 1) * B] for k in range(step % spe, spe)]
        g = torch.Generator().manual_seed(_mix(cfg.seed, epoch, self.info.rank))
        return DataLoader(self.train_set, batch_sampler=batches, collate_fn=collate, num_workers=cfg.num_workers,
                          generator=g, pin_memory=self.device.type == "cuda")

    def _train_step(self, batch: dict) -> bool:
        """One optimisation step, then logging, validation and checkpoints; True when the run is over."""
        cfg, info, step, model = self.cfg, self.info, self.step, self.model
        t_step = time.perf_counter()
        lr = learning_rate(step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # every random number of this step is a function of (seed, step, rank): exact resume
        step_seed = _mix(cfg.seed, step, info.rank)
        seed_everything(step_seed)
        generator = torch.Generator().manual_seed(step_seed)  # CPU: the model moves its draws

        batch = _to_device(batch, self.device)
        with _autocast(self.device, cfg):
            loss, logs = self.wrapped(batch, generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(divergence_message(float(loss), step, self.out))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip and cfg.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        else:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))
        self.optimizer.step()
        ema_update(self.ema_model, model, ema_decay_at(step, cfg))
        self.step = step = step + 1
        self._log_train(step, float(loss.detach()), lr, grad_norm, logs)

        if cfg.max_time_s and step < cfg.steps and _over_time_cap(cfg, info, self.device, self.elapsed_before,
                                                                  self.t_start, t_step):
            self.stopped_by = "time_cap"
            _warn_capped(cfg, step, self._elapsed())
        last = step >= cfg.steps or self.stopped_by == "time_cap"
        if (cfg.eval_every and step % cfg.eval_every == 0) or last:
            self._validate(step, lr)
        if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or last:
            self.checkpoint(step)
        return last

    def _log_train(self, step: int, loss: float, lr: float, grad_norm: float, logs) -> None:
        cfg = self.cfg
        self.window_loss += loss
        self.window_n += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            self.last_train_loss = mean_over_ranks(self.window_loss / self.window_n, self.info)
            row = {"step": step, "kind": "train", "loss": self.last_train_loss, "lr": lr, "grad_norm": grad_norm,
                   "elapsed_s": self._elapsed()}
            row.update({k: float(v) for k, v in (logs or {}).items() if k not in row})
            self.log.write(row)
            self.window_loss, self.window_n = 0.0, 0
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{self.last_train_loss:.4g}", lr=f"{lr:.2e}")
        if self.bar is not None:
            self.bar.update(1)

    def _validate(self, step: int, lr: float) -> None:
        """Validation loss of the EMA weights (rank 0); the best weights are kept in best/."""
        if self.info.is_main:
            val = validation_loss(self.ema_model, self.val_set, self.cfg, self.device)
            self.final_val = val
            if val is not None:
                self.log.write({"step": step, "kind": "val", "loss": val, "lr": lr, "grad_norm": None,
                                "elapsed_s": self._elapsed()})
                if self.best_val is None or val < self.best_val:
                    self.best_val = val
                    save_model(self.ema_model, self.out / "best", self.data_info)
        barrier(self.info)

    # -- finish -------------------------------------------------------------------------------
    def finish(self) -> TrainResult:
        out, info = self.out, self.info
        if info.is_main:
            save_model(self.ema_model, out / "model", self.data_info)
        barrier(info)
        wall = time.perf_counter() - self.t_start
        result = TrainResult(run_dir=out, model_dir=out / "model",
                             best_dir=(out / "best") if (out / "best").exists() else None,
                             log_path=out / "log.csv", steps_done=self.step, stopped_by=self.stopped_by,
                             train_loss=self.last_train_loss, best_val_loss=self.best_val,
                             final_val_loss=self.final_val, wall_time_s=wall,
                             total_time_s=self.elapsed_before + wall, resumed_from=self.resumed_from,
                             steps_budget=int(self.cfg.steps), model=self.ema_model)
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
