"""Data-parallel training under ``torchrun`` (DDP): NCCL on GPUs, gloo on CPU.

Launch::

    torchrun --nproc_per_node 4 -m abcc_fast.cli train --preset gpu --out runs/gpu4

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` reads them
(a plain ``python``/``abcc`` launch is a world of one and needs no process group). Each rank
draws its own share of every epoch (``DistributedSampler``); rank 0 alone logs, writes
checkpoints and the final model; every rank ends a step with the same parameters because DDP
averages the gradients during ``backward``.

The ``torch.func.jvp`` caveat (MeanFlow)
----------------------------------------
DDP synchronises gradients only for work that runs *inside the wrapped module's forward*: its
``forward`` prepares the reducer (which buckets to expect in this backward) and only then runs
the module. A training loss that calls the network directly -- ``model.module.network(...)`` or a
``torch.func.jvp(model.module.forward, ...)`` -- runs outside that bookkeeping: the gradients are
still produced locally, but ranks silently drift apart (or DDP raises about unfinished
reductions). So the trainer wraps a :class:`LossModule` whose ``forward`` *is*
``model.training_loss(batch, generator)``; the whole objective -- the gradient-carrying primal
u_theta and the stop-gradient JVP target alike -- happens inside ``DDP.forward``. The model routes
its network evaluation through its own ``forward`` so that ``torch.func.jvp`` sees a pure function
of the inputs; the JVP target is detached, so its tangent pass contributes no gradient to sync.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, its ``device``, ``is_main`` = rank 0."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_with_torchrun() -> bool:
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: Optional[str] = None, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (env RANK/WORLD_SIZE), else a world of one.

    device: "cpu", "cuda" or None (CUDA when available). Backend: NCCL for CUDA, gloo for CPU.
    """
    want_cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if not launched_with_torchrun():
        if dist.is_available() and dist.is_initialized():  # a caller already set up the group
            rank, world = dist.get_rank(), dist.get_world_size()
            local = int(os.environ.get("LOCAL_RANK", rank))
            dev = torch.device("cuda", local % max(1, torch.cuda.device_count())) if want_cuda else torch.device("cpu")
            return DistInfo(rank, world, local, dev, dist.get_backend())
        dev = torch.device(device) if device is not None else torch.device("cuda" if want_cuda else "cpu")
        return DistInfo(device=dev)
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if want_cuda:
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu (gloo)")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank, world, local, dev, backend)


def cleanup() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def mean_over_ranks(value: float, info: DistInfo) -> float:
    """Average a Python float over ranks (for logging; a world of one returns it unchanged)."""
    if not info.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64,
                     device=info.device if info.backend == "nccl" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


class LossModule(nn.Module):
    """``forward(batch, generator) = model.training_loss(batch, generator=generator)``.

    Wrapping *this* in DDP puts the whole objective (including any ``torch.func.jvp``) inside
    ``DDP.forward``, which is what makes the gradient sync see it (module docstring).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict, generator: Optional[torch.Generator] = None):
        return self.model.training_loss(batch, generator=generator)


def wrap_for_training(model: nn.Module, info: DistInfo, find_unused_parameters: bool = False) -> nn.Module:
    """The module the trainer calls: ``LossModule(model)``, DDP-wrapped in a multi-process world.
    A model whose ``has_unused_parameters`` is true (parameters that some configurations leave
    without a gradient) gets DDP's unused-parameter search whatever ``find_unused_parameters`` says."""
    loss_module = LossModule(model)
    if not info.distributed:
        return loss_module
    ids = [info.device.index] if info.device.type == "cuda" else None
    find = bool(find_unused_parameters or getattr(model, "has_unused_parameters", False))
    return DDP(loss_module, device_ids=ids, find_unused_parameters=find)
