"""The `cuda` engine of abcc_fast.ops.soft_dtw: adapter over the CUDA kernels of csrc/soft_dtw/soft_dtw.cu.

Engine protocol: see `_CpuEngine` in soft_dtw.py. The kernels keep the wavefront on chip: the
forward stores no R at all (save=False) or, for training, float64 offsets [B, N+M-1] plus two
diagonals every 128 (checkpoints, <= 1/32 of a full R); the backward recomputes each segment
from its checkpoint. Univariate inputs compute the cost (x_i - y_j)^2 inside the kernels, so no
[B, N, M] tensor exists at all on that path.
"""
from __future__ import annotations

import torch

from ._backend import native_module


def _module():
    mod = native_module()
    if mod is None or not hasattr(mod, "has_cuda") or not mod.has_cuda() or not hasattr(mod, "sdtw_cuda_forward"):
        raise RuntimeError(
            "soft_dtw: the cuda backend needs abcc_fast._C built with CUDA (a CUDA build of torch and nvcc on "
            "PATH; reinstall with `pip install --no-build-isolation -e .`); use backend='triton' or 'cpu' meanwhile")
    return mod


class _CudaEngine:
    supports_seq = True

    def forward(self, D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save):
        # by keyword: the fields of _C.SoftDtwParams (csrc/soft_dtw/binding.cpp), checked on CPU by
        # tests/test_native_bindings.py against _C.op_args
        value, temporal, ckpt, ckpt_t, base = _module().sdtw_cuda_forward(
            D=D, x=x, y=y, n=n, m=m, gamma=float(gamma), bandwidth=float(bandwidth), omega=omega,
            want_temporal=bool(want_temporal), save=bool(save))
        state = (ckpt, ckpt_t, base) if save else None
        return value, (temporal if want_temporal else None), state

    def backward(self, D, x, y, n, m, gamma, bandwidth, omega, want_temporal, state, grad_value, grad_temporal,
                 need=(True, True)):  # computes both gradients whatever `need` says
        if state is None:
            raise RuntimeError("soft_dtw (cuda): backward needs the state of a forward run with save=True")
        ckpt, ckpt_t, base = state
        G, dx, dy = _module().sdtw_cuda_backward(
            D=D, x=x, y=y, n=n, m=m, gamma=float(gamma), bandwidth=float(bandwidth), omega=omega,
            want_temporal=bool(want_temporal), ckpt=ckpt, ckpt_t=ckpt_t, base=base, grad_value=grad_value,
            grad_temporal=grad_temporal)
        return (G,) if D is not None else (dx, dy)

    @staticmethod
    def state_dtypes(dtype):
        return dtype, dtype, torch.float64  # checkpoints, their tangents, float64 offsets

    @staticmethod
    def unpack_state(tensors, want_temporal, variant):
        return tuple(tensors)  # csrc/soft_dtw/binding.cpp checks sizes only, so flat views do


ENGINE = _CudaEngine()
