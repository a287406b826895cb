"""Triton kernels and their launch helpers (policy, validation and autograd live in abcc_fast.ops)."""
import contextlib

import torch


def on_device(t: torch.Tensor):
    """Context making `t`'s CUDA device current for a launch: Triton launches on the current device,
    so tensors on cuda:1 under a current cuda:0 would otherwise be read with the wrong device's
    context. A no-op for CPU tensors (the interpreter)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
