"""The `triton` engine of abcc_fast.ops.soft_dtw: adapter over abcc_fast.kernels.soft_dtw.

Engine protocol: see `_CpuEngine` in soft_dtw.py. The kernels compute in float32 (float64 inputs
are rounded to float32 and the results cast back). Univariate inputs compute the cost
(x_i - y_j)^2 inside the kernels; their backward writes G = dL/dD [B, N, M] and reduces it to
dL/dx = 2 (x * G 1 - G y), dL/dy = 2 (y * G^T 1 - G^T x) (the saved relative R is [B, N, M]
anyway, so G costs no more memory than the state the backward already holds).
"""
from __future__ import annotations

import torch

from ..kernels import soft_dtw as _k


def _f32(t):
    return None if t is None else t.to(torch.float32).contiguous()


class _TritonEngine:
    supports_seq = True

    def forward(self, D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save):
        ref = D if D is not None else x
        value, temporal, state = _k.sdtw_forward(
            _f32(D), _f32(x), _f32(y), n.contiguous(), m.contiguous(), float(gamma), float(bandwidth),
            _f32(omega), bool(want_temporal), bool(save))
        value = value.to(ref.dtype)
        if temporal is not None:
            temporal = temporal.to(ref.dtype)
        return value, temporal, state

    def backward(self, D, x, y, n, m, gamma, bandwidth, omega, want_temporal, state, grad_value, grad_temporal,
                 need=(True, True)):  # computes both gradients whatever `need` says
        if state is None:
            raise RuntimeError("soft_dtw (triton): backward needs the state of a forward run with save=True")
        xf, yf = _f32(x), _f32(y)
        G = _k.sdtw_backward(
            _f32(D), xf, yf, n.contiguous(), m.contiguous(), float(gamma), float(bandwidth), _f32(omega),
            bool(want_temporal), state, grad_value, grad_temporal)
        if D is not None:
            return (G.to(D.dtype),)
        # cost (x_i - y_j)^2: dL/dx_i = 2 sum_j G_ij (x_i - y_j), dL/dy_j = -2 sum_i G_ij (x_i - y_j)
        dx = 2.0 * (xf * G.sum(2) - torch.bmm(G, yf.unsqueeze(2)).squeeze(2))
        dy = 2.0 * (yf * G.sum(1) - torch.bmm(G.transpose(1, 2), xf.unsqueeze(2)).squeeze(2))
        return dx.to(x.dtype), dy.to(y.dtype)

    @staticmethod
    def state_dtypes(dtype):
        return torch.float32, torch.float32, torch.float64  # relative R, its tangent, float64 base

    @staticmethod
    def unpack_state(tensors, want_temporal, variant):
        r, rt, base = tensors  # the kernels index flat buffers
        return r, (rt if want_temporal and rt.numel() else None), base


ENGINE = _TritonEngine()
