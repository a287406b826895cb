"""Triton kernels for the MeanFlow helpers (policy and autograd live in abcc_fast.ops.meanflow).

target:    one program per sample row: u_tgt = v + (tau - r) du_dr written block by block while
           the squared error is accumulated; then e = sum / W, w = (e + c)^-p.
integrate: one program per (sample, frame, W-block): y = y_r + (tau - r) u_y, z = z_r + (tau - r) u_z,
           z = max(z, 0) if projected, x = y + z.
All arithmetic in fp32 on contiguous fp32 tensors; element offsets in int64 (B * T * W may exceed
2^31 at large batches).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import on_device


@triton.jit
def _target_kernel(u_ptr, v_ptr, d_ptr, r_ptr, tau_ptr, tgt_ptr, err_ptr, w_ptr, W, c, p,
                   BLOCK: tl.constexpr, N_BLOCKS: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)  # int64 offsets: B * W may exceed 2^31
    dt = tl.load(tau_ptr + row) - tl.load(r_ptr + row)
    base = row * W
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(N_BLOCKS):  # constexpr trip count (W is fixed per model; no runtime-range loop)
        offs = i * BLOCK + tl.arange(0, BLOCK)
        m = offs < W
        u = tl.load(u_ptr + base + offs, mask=m, other=0.0)
        v = tl.load(v_ptr + base + offs, mask=m, other=0.0)
        d = tl.load(d_ptr + base + offs, mask=m, other=0.0)
        tgt = v + dt * d
        tl.store(tgt_ptr + base + offs, tgt, mask=m)
        diff = tl.where(m, u - tgt, 0.0)
        acc += diff * diff
    err = tl.sum(acc, axis=0) / W
    # w = (e + c)^-p = exp(-p log(e + c)); e + c > 0 because c > 0
    w = tl.exp(-p * tl.log(err + c))
    tl.store(err_ptr + row, err)
    tl.store(w_ptr + row, w)


@triton.jit
def _integrate_kernel(y0_ptr, z0_ptr, uy_ptr, uz_ptr, r_ptr, tau_ptr, x_ptr, y_ptr, z_ptr, T, W,
                      HAS_Z0: tl.constexpr, PROJECT: tl.constexpr, BLOCK: tl.constexpr):
    bt = tl.program_id(0).to(tl.int64)  # b * T + k; int64 offsets: B * T * W may exceed 2^31
    wb = tl.program_id(1)
    b = bt // T
    offs = wb * BLOCK + tl.arange(0, BLOCK)
    m = offs < W
    dt = tl.load(tau_ptr + bt) - tl.load(r_ptr + b)
    y0 = tl.load(y0_ptr + b * W + offs, mask=m, other=0.0)
    uy = tl.load(uy_ptr + bt * W + offs, mask=m, other=0.0)
    uz = tl.load(uz_ptr + bt * W + offs, mask=m, other=0.0)
    y = y0 + dt * uy
    z = dt * uz
    if HAS_Z0:
        z += tl.load(z0_ptr + b * W + offs, mask=m, other=0.0)
    if PROJECT:
        z = tl.maximum(z, 0.0)
    tl.store(y_ptr + bt * W + offs, y, mask=m)
    tl.store(z_ptr + bt * W + offs, z, mask=m)
    tl.store(x_ptr + bt * W + offs, y + z, mask=m)


def _block(W: int) -> int:
    return min(1024, max(16, triton.next_power_of_2(W)))


def target(u_pred, v, du_dr, r, tau, *, c: float, p: float):
    """fp32 contiguous u_pred, v, du_dr [B, W], r, tau [B] -> (u_tgt [B, W], err [B], weight [B])."""
    B, W = u_pred.shape
    u_tgt = torch.empty_like(u_pred)
    err = torch.empty(B, device=u_pred.device, dtype=torch.float32)
    weight = torch.empty_like(err)
    if B == 0:
        return u_tgt, err, weight
    with on_device(u_pred):
        _target_kernel[(B,)](u_pred, v, du_dr, r, tau, u_tgt, err, weight, W, float(c), float(p),
                             BLOCK=_block(W), N_BLOCKS=triton.cdiv(W, _block(W)))
    return u_tgt, err, weight


def integrate(x0_solvent, x0_sei, u_solvent, u_sei, r, taus, *, project: bool):
    """fp32 contiguous inputs -> (frames, solvent, sei) [B, T, W]."""
    B, T, W = u_solvent.shape
    frames = torch.empty_like(u_solvent)
    solvent = torch.empty_like(u_solvent)
    sei = torch.empty_like(u_solvent)
    if B * T == 0 or W == 0:
        return frames, solvent, sei
    block = min(256, _block(W))
    grid = (B * T, triton.cdiv(W, block))
    z0 = x0_sei if x0_sei is not None else x0_solvent  # unused pointer when HAS_Z0 is False
    with on_device(u_solvent):
        _integrate_kernel[grid](x0_solvent, z0, u_solvent, u_sei, r, taus, frames, solvent, sei, T, W,
                                HAS_Z0=x0_sei is not None, PROJECT=bool(project), BLOCK=block)
    return frames, solvent, sei
