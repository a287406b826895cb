"""Triton kernels of two-stream (MM-DiT joint) attention: forward, forward + JVP, backward.

No policy here (validation, dispatch and autograd live in `abcc_fast.ops.two_stream_attention`);
these are the @triton.jit functions and thin launch helpers on contiguous tensors.

Layout. Stream a: q/k/v [B, H, Na, D]; stream b: [B, H, Nb, D]; all contiguous, one dtype
(fp32, bf16 or fp16); D in {32, 64, 128} (a power of two >= 16, the tile width). Every query of
either stream attends over the keys of a then b with one online softmax, so the concatenation
[ka; kb] is never built. One launch covers both query streams: grid axis 0 runs over the query
blocks of a followed by those of b, axis 1 over B*H.

Key padding: an optional int8 tensor [B, Na + Nb] (1 = keep). Rows whose keys are all masked give
O = 0, O' = 0, LSE = +inf (so the backward's P = exp(S - LSE) is 0 there, and so are gradients).

Tangent, with P = softmax(S), S = s Q K^T:
    S' = s (Q' K^T + Q K'^T),   O' = P V' + (P * S') V - rowsum(P * S') O.
Online form: m, l, acc = sum p V, acc_t = sum p V' + (p s') V (the two tangent accumulators, one
per term, merged into one: they are rescaled by the same factor and only their sum is used) and
r = sum p s', all rescaled by exp(m_old - m_new); epilogue O = acc / l, O' = (acc_t - r O) / l.
No exponential beyond the primal's. Scores are kept in log2 units (exp2), the LSE is stored in
natural units, fp32, [B, H, Na + Nb].
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from . import on_device

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def _fix_interpreter_index() -> None:
    """Triton 3.6's interpreter turns a scalar tensor into a Python int with int(ndarray), which
    NumPy >= 2.3 refuses for its 1-element (not 0-d) arrays, so `range(0, n, BLOCK)` over a
    runtime n fails under TRITON_INTERPRET=1. Re-patch `__index__` through `.item()`. Idempotent,
    interpreter only (compiled kernels never see it)."""
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return
    try:
        from triton.runtime import interpreter as _interp
    except ImportError:  # pragma: no cover
        return
    original = getattr(_interp, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_abcc_index_fix", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._abcc_index_fix = True
    _interp._patch_lang_tensor = patched


_fix_interpreter_index()


# ---------------------------------------------------------------------------------------------
# forward (+ tangent)
# ---------------------------------------------------------------------------------------------
@triton.jit
def _dot(a, b, acc, PREC: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b (+ acc) in fp32. UPCAST: the interpreter's tl.dot misreads bfloat16 operands (Triton
    3.6), so under TRITON_INTERPRET=1 bf16 operands are widened first; compiled kernels never do."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc, input_precision=PREC)

@triton.jit
def _fwd_key_loop(acc, acc_t, l_i, m_i, r_i, q, tq,
                  k_base, v_base, tk_base, tv_base, keep_base, n_keys, scale, qk_scale,
                  D: tl.constexpr, BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr,
                  TANGENT: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):
    """Fold the keys of one stream into the online-softmax state of a query block."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    for start in range(0, n_keys, BLOCK_N):
        kidx = start + offs_n
        kvalid = kidx < n_keys
        kv_off = kidx[:, None] * D + offs_d[None, :]
        k = tl.load(k_base + kv_off, mask=kvalid[:, None], other=0.0)  # [BLOCK_N, D]
        v = tl.load(v_base + kv_off, mask=kvalid[:, None], other=0.0)
        keep = kvalid
        if HAS_MASK:
            flag = tl.load(keep_base + kidx, mask=kvalid, other=0)
            keep = keep & (flag != 0)
        s = _dot(q, tl.trans(k), None, PREC, UPCAST)  # [BLOCK_M, BLOCK_N], raw q.k
        s2 = tl.where(keep[None, :], s * qk_scale, float("-inf"))  # log2 units
        m_new = tl.maximum(m_i, tl.max(s2, 1))
        # A row with no kept key so far keeps m = -inf; shift by 0 then, so that exp2 gives 0, not NaN.
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_use)
        p = tl.exp2(s2 - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = _dot(p.to(v.dtype), v, acc, PREC, UPCAST)
        if TANGENT:
            tk = tl.load(tk_base + kv_off, mask=kvalid[:, None], other=0.0)
            tv = tl.load(tv_base + kv_off, mask=kvalid[:, None], other=0.0)
            sp = _dot(tq, tl.trans(k), None, PREC, UPCAST)
            sp = _dot(q, tl.trans(tk), sp, PREC, UPCAST) * scale  # S' (natural units)
            psp = tl.where(keep[None, :], p * sp, 0.0)
            r_i = r_i * alpha + tl.sum(psp, 1)
            acc_t = acc_t * alpha[:, None]
            acc_t = _dot(p.to(v.dtype), tv, acc_t, PREC, UPCAST)
            acc_t = _dot(psp.to(v.dtype), v, acc_t, PREC, UPCAST)
        m_i = m_new
    return acc, acc_t, l_i, m_i, r_i


@triton.jit(do_not_specialize=["Na", "Nb", "H"])
def two_stream_attention_fwd_kernel(
        Qa, Ka, Va, Qb, Kb, Vb, TQa, TKa, TVa, TQb, TKb, TVb,
        Oa, Ob, TOa, TOb, LSE, KEEP,
        Na, Nb, H, scale, qk_scale,
        D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        HAS_MASK: tl.constexpr, TANGENT: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    n_blocks_a = tl.cdiv(Na, BLOCK_M)
    if pid_m < n_blocks_a:
        start_m = pid_m * BLOCK_M
        n_q = Na
        row0 = Na * 0  # a tensor like the else branch's (if/else must agree on types)
        q_base = Qa + bh * Na * D
        tq_base = TQa + bh * Na * D
        o_base = Oa + bh * Na * D
        to_base = TOa + bh * Na * D
    else:
        start_m = (pid_m - n_blocks_a) * BLOCK_M
        n_q = Nb
        row0 = Na
        q_base = Qb + bh * Nb * D
        tq_base = TQb + bh * Nb * D
        o_base = Ob + bh * Nb * D
        to_base = TOb + bh * Nb * D
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    qvalid = offs_m < n_q
    q_off = offs_m[:, None] * D + offs_d[None, :]
    q = tl.load(q_base + q_off, mask=qvalid[:, None], other=0.0)
    if TANGENT:
        tq = tl.load(tq_base + q_off, mask=qvalid[:, None], other=0.0)
    else:
        tq = q
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    r_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    acc_t = tl.zeros([BLOCK_M, D], tl.float32)
    keep_base = KEEP + b * (Na + Nb)
    acc, acc_t, l_i, m_i, r_i = _fwd_key_loop(
        acc, acc_t, l_i, m_i, r_i, q, tq, Ka + bh * Na * D, Va + bh * Na * D, TKa + bh * Na * D,
        TVa + bh * Na * D, keep_base, Na, scale, qk_scale, D, BLOCK_N, HAS_MASK, TANGENT, PREC, UPCAST)
    acc, acc_t, l_i, m_i, r_i = _fwd_key_loop(
        acc, acc_t, l_i, m_i, r_i, q, tq, Kb + bh * Nb * D, Vb + bh * Nb * D, TKb + bh * Nb * D,
        TVb + bh * Nb * D, keep_base + Na, Nb, scale, qk_scale, D, BLOCK_N, HAS_MASK, TANGENT, PREC, UPCAST)
    empty = l_i == 0.0
    inv_l = 1.0 / tl.where(empty, 1.0, l_i)
    o = acc * inv_l[:, None]  # rows without keys: acc = 0, so O = 0
    tl.store(o_base + q_off, o.to(Oa.dtype.element_ty), mask=qvalid[:, None])
    if TANGENT:
        to = (acc_t - r_i[:, None] * o) * inv_l[:, None]
        tl.store(to_base + q_off, to.to(TOa.dtype.element_ty), mask=qvalid[:, None])
    lse = tl.where(empty, float("inf"), (m_i + tl.log2(tl.where(empty, 1.0, l_i))) * 0.6931471805599453)
    tl.store(LSE + bh * (Na + Nb) + row0 + offs_m, lse, mask=qvalid)


# ---------------------------------------------------------------------------------------------
# backward (flash-style, from the saved LSE): dQ over key blocks, dK/dV over query blocks
# ---------------------------------------------------------------------------------------------
@triton.jit
def _dq_key_loop(dq, q, do, lse2, delta, k_base, v_base, keep_base, n_keys, qk_scale,
                 D: tl.constexpr, BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr, PREC: tl.constexpr,
                 UPCAST: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    for start in range(0, n_keys, BLOCK_N):
        kidx = start + offs_n
        kvalid = kidx < n_keys
        kv_off = kidx[:, None] * D + offs_d[None, :]
        k = tl.load(k_base + kv_off, mask=kvalid[:, None], other=0.0)
        v = tl.load(v_base + kv_off, mask=kvalid[:, None], other=0.0)
        keep = kvalid
        if HAS_MASK:
            flag = tl.load(keep_base + kidx, mask=kvalid, other=0)
            keep = keep & (flag != 0)
        s2 = tl.where(keep[None, :], _dot(q, tl.trans(k), None, PREC, UPCAST) * qk_scale, float("-inf"))
        p = tl.exp2(s2 - lse2[:, None])  # LSE = +inf on empty rows: P = 0
        dp = _dot(do, tl.trans(v), None, PREC, UPCAST)
        ds = p * (dp - delta[:, None])
        dq = _dot(ds.to(k.dtype), k, dq, PREC, UPCAST)
    return dq


@triton.jit(do_not_specialize=["Na", "Nb", "H"])
def two_stream_attention_bwd_dq_kernel(
        Qa, Ka, Va, Qb, Kb, Vb, DOa, DOb, DQa, DQb, LSE, DELTA, KEEP,
        Na, Nb, H, scale, qk_scale,
        D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        HAS_MASK: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    n_blocks_a = tl.cdiv(Na, BLOCK_M)
    if pid_m < n_blocks_a:
        start_m = pid_m * BLOCK_M
        n_q = Na
        row0 = Na * 0  # a tensor like the else branch's (if/else must agree on types)
        q_base = Qa + bh * Na * D
        do_base = DOa + bh * Na * D
        dq_base = DQa + bh * Na * D
    else:
        start_m = (pid_m - n_blocks_a) * BLOCK_M
        n_q = Nb
        row0 = Na
        q_base = Qb + bh * Nb * D
        do_base = DOb + bh * Nb * D
        dq_base = DQb + bh * Nb * D
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    qvalid = offs_m < n_q
    q_off = offs_m[:, None] * D + offs_d[None, :]
    q = tl.load(q_base + q_off, mask=qvalid[:, None], other=0.0)
    do = tl.load(do_base + q_off, mask=qvalid[:, None], other=0.0)
    lse2 = tl.load(LSE + bh * (Na + Nb) + row0 + offs_m, mask=qvalid, other=float("inf")) * 1.4426950408889634
    delta = tl.load(DELTA + bh * (Na + Nb) + row0 + offs_m, mask=qvalid, other=0.0)
    dq = tl.zeros([BLOCK_M, D], tl.float32)
    keep_base = KEEP + b * (Na + Nb)
    dq = _dq_key_loop(dq, q, do, lse2, delta, Ka + bh * Na * D, Va + bh * Na * D, keep_base, Na, qk_scale,
                      D, BLOCK_N, HAS_MASK, PREC, UPCAST)
    dq = _dq_key_loop(dq, q, do, lse2, delta, Kb + bh * Nb * D, Vb + bh * Nb * D, keep_base + Na, Nb, qk_scale,
                      D, BLOCK_N, HAS_MASK, PREC, UPCAST)
    tl.store(dq_base + q_off, (dq * scale).to(DQa.dtype.element_ty), mask=qvalid[:, None])


@triton.jit
def _dkdv_query_loop(dk, dv, k, v, keep, q_base, do_base, lse_base, delta_base, n_q, qk_scale,
                     D: tl.constexpr, BLOCK_M: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    for start in range(0, n_q, BLOCK_M):
        qidx = start + offs_m
        qvalid = qidx < n_q
        q_off = qidx[:, None] * D + offs_d[None, :]
        q = tl.load(q_base + q_off, mask=qvalid[:, None], other=0.0)  # [BLOCK_M, D]
        do = tl.load(do_base + q_off, mask=qvalid[:, None], other=0.0)
        lse2 = tl.load(lse_base + qidx, mask=qvalid, other=float("inf")) * 1.4426950408889634
        delta = tl.load(delta_base + qidx, mask=qvalid, other=0.0)
        s2 = tl.where(keep[:, None], _dot(k, tl.trans(q), None, PREC, UPCAST) * qk_scale, float("-inf"))
        pt = tl.exp2(s2 - lse2[None, :])  # [BLOCK_N, BLOCK_M] = P^T
        dv = _dot(pt.to(do.dtype), do, dv, PREC, UPCAST)
        dpt = _dot(v, tl.trans(do), None, PREC, UPCAST)
        dst = pt * (dpt - delta[None, :])
        dk = _dot(dst.to(q.dtype), q, dk, PREC, UPCAST)
    return dk, dv


@triton.jit(do_not_specialize=["Na", "Nb", "H"])
def two_stream_attention_bwd_dkdv_kernel(
        Qa, Ka, Va, Qb, Kb, Vb, DOa, DOb, DKa, DVa, DKb, DVb, LSE, DELTA, KEEP,
        Na, Nb, H, scale, qk_scale,
        D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        HAS_MASK: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    n_blocks_a = tl.cdiv(Na, BLOCK_N)
    if pid_n < n_blocks_a:
        start_n = pid_n * BLOCK_N
        n_k = Na
        col0 = Na * 0
        k_base = Ka + bh * Na * D
        v_base = Va + bh * Na * D
        dk_base = DKa + bh * Na * D
        dv_base = DVa + bh * Na * D
    else:
        start_n = (pid_n - n_blocks_a) * BLOCK_N
        n_k = Nb
        col0 = Na
        k_base = Kb + bh * Nb * D
        v_base = Vb + bh * Nb * D
        dk_base = DKb + bh * Nb * D
        dv_base = DVb + bh * Nb * D
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    kvalid = offs_n < n_k
    kv_off = offs_n[:, None] * D + offs_d[None, :]
    k = tl.load(k_base + kv_off, mask=kvalid[:, None], other=0.0)
    v = tl.load(v_base + kv_off, mask=kvalid[:, None], other=0.0)
    keep = kvalid
    if HAS_MASK:
        flag = tl.load(KEEP + b * (Na + Nb) + col0 + offs_n, mask=kvalid, other=0)
        keep = keep & (flag != 0)
    dk = tl.zeros([BLOCK_N, D], tl.float32)
    dv = tl.zeros([BLOCK_N, D], tl.float32)
    row_base = bh * (Na + Nb)
    dk, dv = _dkdv_query_loop(dk, dv, k, v, keep, Qa + bh * Na * D, DOa + bh * Na * D, LSE + row_base,
                              DELTA + row_base, Na, qk_scale, D, BLOCK_M, PREC, UPCAST)
    dk, dv = _dkdv_query_loop(dk, dv, k, v, keep, Qb + bh * Nb * D, DOb + bh * Nb * D, LSE + row_base + Na,
                              DELTA + row_base + Na, Nb, qk_scale, D, BLOCK_M, PREC, UPCAST)
    tl.store(dk_base + kv_off, (dk * scale).to(DKa.dtype.element_ty), mask=kvalid[:, None])
    tl.store(dv_base + kv_off, dv.to(DVa.dtype.element_ty), mask=kvalid[:, None])


# ---------------------------------------------------------------------------------------------
# launch helpers
# ---------------------------------------------------------------------------------------------
def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs: exact fp32 products (TF32 would cost ~1e-3 relative error); 16-bit inputs
    # ignore the setting and use the tensor cores.
    return "ieee" if dtype == torch.float32 else "tf32"


def _upcast(dtype: torch.dtype) -> bool:
    return dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def default_blocks(D: int, tangent: bool, backward: bool = False) -> dict:
    """Tile sizes and warps for an H100, chosen from sm_90 register reports of ahead-of-time builds
    (bf16): no spills at D <= 64 (the forward+JVP: 128x64 tiles on 8 warps, 251 registers);
    at D = 128 the forward+JVP and the backward spill 72-250 bytes per thread. Not yet timed on a GPU."""
    if backward:
        return dict(block_m=64, block_n=64, num_warps=8 if D >= 128 else 4, num_stages=2)
    if tangent:
        if D <= 64:
            return dict(block_m=128, block_n=64, num_warps=8, num_stages=2)
        return dict(block_m=64, block_n=32, num_warps=8, num_stages=2)
    return dict(block_m=128 if D <= 64 else 64, block_n=64, num_warps=8 if D >= 128 else 4, num_stages=3)


def _launch_opts(blocks: dict) -> dict:
    if torch.cuda.is_available():
        return dict(num_warps=blocks["num_warps"], num_stages=blocks["num_stages"])
    return {}


def forward(qa, ka, va, qb, kb, vb, tangents=None, keep=None, scale=1.0, blocks=None):
    """Primal (and, with `tangents` = (tqa, tka, tva, tqb, tkb, tvb), tangent) in one launch.

    All tensors contiguous [B, H, N*, D] of one dtype; `keep` int8 [B, Na + Nb] or None.
    Returns (oa, ob, lse [B, H, Na + Nb] fp32, toa or None, tob or None).
    """
    B, H, Na, D = qa.shape
    Nb = qb.shape[2]
    has_t = tangents is not None
    blocks = blocks or default_blocks(D, has_t)
    bm, bn = blocks["block_m"], blocks["block_n"]
    oa, ob = torch.empty_like(qa), torch.empty_like(qb)
    lse = torch.empty((B, H, Na + Nb), device=qa.device, dtype=torch.float32)
    if has_t:
        tqa, tka, tva, tqb, tkb, tvb = tangents
        toa, tob = torch.empty_like(qa), torch.empty_like(qb)
    else:
        tqa, tka, tva, tqb, tkb, tvb = qa, ka, va, qb, kb, vb
        toa, tob = oa, ob
    keep_t = keep if keep is not None else lse  # dummy pointer, never read
    grid = (triton.cdiv(Na, bm) + triton.cdiv(Nb, bm), B * H)
    with on_device(qa):
        two_stream_attention_fwd_kernel[grid](
            qa, ka, va, qb, kb, vb, tqa, tka, tva, tqb, tkb, tvb, oa, ob, toa, tob, lse, keep_t,
            Na, Nb, H, float(scale), float(scale) * LOG2E,
            D=D, BLOCK_M=bm, BLOCK_N=bn, HAS_MASK=keep is not None, TANGENT=has_t,
            PREC=_precision(qa.dtype), UPCAST=_upcast(qa.dtype), **_launch_opts(blocks))
    return oa, ob, lse, (toa if has_t else None), (tob if has_t else None)


def backward(qa, ka, va, qb, kb, vb, oa, ob, lse, doa, dob, keep=None, scale=1.0, blocks=None):
    """Gradients (dqa, dka, dva, dqb, dkb, dvb) of the primal from the saved LSE (two launches)."""
    B, H, Na, D = qa.shape
    Nb = qb.shape[2]
    blocks = blocks or default_blocks(D, False, backward=True)
    bm, bn = blocks["block_m"], blocks["block_n"]
    # D_i = rowsum(dO * O): the softmax-backward correction, one fp32 value per query row.
    delta = torch.cat([(doa.float() * oa.float()).sum(-1), (dob.float() * ob.float()).sum(-1)], dim=2).contiguous()
    dqa, dka, dva = torch.empty_like(qa), torch.empty_like(ka), torch.empty_like(va)
    dqb, dkb, dvb = torch.empty_like(qb), torch.empty_like(kb), torch.empty_like(vb)
    keep_t = keep if keep is not None else lse
    common = dict(D=D, BLOCK_M=bm, BLOCK_N=bn, HAS_MASK=keep is not None, PREC=_precision(qa.dtype),
                  UPCAST=_upcast(qa.dtype), **_launch_opts(blocks))
    grid_q = (triton.cdiv(Na, bm) + triton.cdiv(Nb, bm), B * H)
    grid_k = (triton.cdiv(Na, bn) + triton.cdiv(Nb, bn), B * H)
    with on_device(qa):
        two_stream_attention_bwd_dq_kernel[grid_q](
            qa, ka, va, qb, kb, vb, doa, dob, dqa, dqb, lse, delta, keep_t,
            Na, Nb, H, float(scale), float(scale) * LOG2E, **common)
        two_stream_attention_bwd_dkdv_kernel[grid_k](
            qa, ka, va, qb, kb, vb, doa, dob, dka, dva, dkb, dvb, lse, delta, keep_t,
            Na, Nb, H, float(scale), float(scale) * LOG2E, **common)
    return dqa, dka, dva, dqb, dkb, dvb
