"""Two-stream (MM-DiT joint) attention with a fused forward-mode derivative.

Two token streams a (Na tokens) and b (Nb tokens) with their own projections attend jointly:
every query of either stream sees the keys of both streams under one softmax,

    K = [ka; kb], V = [va; vb]                          (per batch and head, never materialised)
    S = s Q K^T  (s = scale, default 1/sqrt(D)),  P = softmax(S + mask),  O = P V
    (oa, ob) = (O[:Na], O[Na:])  for Q = [qa; qb].

Forward-mode AD: with tangents Q', K', V'

    S' = s (Q' K^T + Q K'^T),   O' = P V' + (P * S') V - rowsum(P * S') O,

computed by the fused backends in the *same* launch as the primal (extra accumulators, one row
sum, no extra exponentials). `torch.func.jvp` and `torch.autograd.forward_ad` route through that
launch: when an input carries a tangent, the op unpacks it, runs the fused kernel once and returns
dual outputs. The primal still has its ordinary (flash-style, LSE-based) backward in the same step,
which is the MeanFlow pattern (gradient of the primal, stop-gradient on the tangent).

Key padding: `key_padding_mask` is either a bool tensor [B, Na + Nb] (True = the key takes part;
the first Na columns are stream a's keys) or a pair (mask_a [B, Na], mask_b [B, Nb]). It masks
keys for every query of both streams and every head. A query row whose keys are all masked gets
output 0, tangent 0 and zero gradients (never NaN).

Backends: `reference` (plain PyTorch on the concatenated streams, any device and dtype; its
derivatives, forward and reverse, come from PyTorch's autograd), `triton` (forward, forward+JVP,
backward) and `cuda` (forward and forward+JVP in CUDA C++; its backward is the Triton one).
Automatic choice: CUDA tensors -> triton > reference; CPU tensors -> reference (the Triton kernels
run on CPU tensors only under TRITON_INTERPRET=1, when asked for explicitly). The CUDA kernel
computes on CUDA cores, not tensor cores, so it is never chosen automatically and ABCC_BACKEND=cuda
runs Triton for this op; `backend="cuda"` in the call still reaches it (with a one-time
RuntimeWarning), as a second fused implementation for cross-checks.

Limits of the fused backends (beyond them automatic choice falls back to the reference; an explicit
backend="triton"/"cuda" raises):
  - D in {32, 64, 128}; dtypes float32, bfloat16, float16 (fp32 accumulation); Na, Nb >= 1, any size.
  - The tangent outputs are not differentiable (the MeanFlow target stop-gradients them): a
    backward through a tangent gives no gradient to what the tangent depends on; nested forward AD
    (jvp of jvp) raises.

torch.compile: the fused backends are the custom ops `abcc::two_stream_attention_forward`,
`..._forward_jvp` and `..._backward` (ops/_library.py), so a compiled primal + backward has no
graph break. While forward-mode AD is active the op runs eagerly instead (a graph break under
torch.compile), because a custom op cannot carry a JVP rule and Dynamo can trace an
`autograd.Function`'s forward and silently drop its forward-mode rule; eager keeps the tangent.
"""
from __future__ import annotations

import collections
import math
import os
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.autograd.forward_ad as fwAD

from . import _library, _registry
from ._backend import native_module, resolve, status

__all__ = ["two_stream_attention", "two_stream_attention_reference"]

_OP = "two_stream_attention"
_FUSED_LIMITS = {"head_dim": (32, 64, 128), "max_batch_x_heads": 65535}  # one grid row per (batch, head)
_LIBRARY_OPS = ("abcc::two_stream_attention_forward", "abcc::two_stream_attention_forward_jvp",
                "abcc::two_stream_attention_backward")
_registry.declare(
    _OP,
    _registry.EngineSpec(_OP, "reference", devices=("cpu", "cuda"), jvp=True, double_backward=True,
                         compute="float32, or float64 for float64 inputs", note="builds the concatenation"),
    _registry.EngineSpec(_OP, "triton", devices=("cuda",), dtypes=(torch.float32, torch.bfloat16, torch.float16),
                         compute="float32 accumulation", jvp=True, limits=_FUSED_LIMITS, library=_LIBRARY_OPS,
                         note="primal and tangent in one launch"),
    _registry.EngineSpec(_OP, "cuda", devices=("cuda",), dtypes=(torch.float32, torch.bfloat16, torch.float16),
                         compute="float32 accumulation on CUDA cores", jvp=True, limits=_FUSED_LIMITS, auto=False,
                         library=_LIBRARY_OPS, note="backward: the Triton kernel"))
_IMPLEMENTED = tuple(_registry.engines(_OP))
_FUSED_D = _registry.spec(_OP, "triton").limits["head_dim"]
_FUSED_DTYPES = _registry.spec(_OP, "triton").dtypes
_MAX_BH = _registry.spec(_OP, "triton").limits["max_batch_x_heads"]

KeyPaddingMask = Optional[Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]]

# Kernel launches per (backend, kind): kind in {"forward", "forward_jvp", "backward"}, plus
# ("<backend>", "jvp_fallback") when a tangent had to be computed in a second launch after the
# primal (the op could not see the tangents up front). Diagnostics for tests and benchmarks.
launch_counts: collections.Counter = collections.Counter()

# Tile sizes for the Triton kernels; None = abcc_fast.kernels.two_stream_attention.default_blocks.
# Tests set small tiles to exercise multi-block loops and ragged edges under the interpreter.
_triton_blocks: Optional[dict] = None


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _check_inputs(tensors: Sequence[torch.Tensor]) -> Tuple[int, int, int, int, int]:
    names = ("qa", "ka", "va", "qb", "kb", "vb")
    for name, t in zip(names, tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_OP}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{_OP}: {name} must be [B, H, N, D], got shape {tuple(t.shape)}; "
                             "reshape [B, N, H, D] inputs with .transpose(1, 2)")
        if not t.is_floating_point():
            raise TypeError(f"{_OP}: {name} must be floating point, got {t.dtype}; convert with .float()")
    qa, ka, va, qb, kb, vb = tensors
    B, H, Na, D = qa.shape
    Nb = qb.shape[2]
    for name, t, n in zip(names, tensors, (Na, Na, Na, Nb, Nb, Nb)):
        if tuple(t.shape) != (B, H, n, D):
            raise ValueError(f"{_OP}: {name} has shape {tuple(t.shape)} but {(B, H, n, D)} was expected "
                             f"(qa is {tuple(qa.shape)}, qb is {tuple(qb.shape)}; the streams share B, H, D "
                             "and each stream's q, k, v share N)")
        if t.dtype != qa.dtype:
            raise TypeError(f"{_OP}: all inputs must have one dtype; qa is {qa.dtype} but {name} is {t.dtype}")
        if t.device != qa.device:
            raise ValueError(f"{_OP}: all inputs must be on one device; qa is on {qa.device} but {name} on {t.device}")
    if Na == 0 or Nb == 0:
        raise ValueError(f"{_OP}: each stream needs at least one token, got Na={Na}, Nb={Nb}; "
                         "for a single stream call torch.nn.functional.scaled_dot_product_attention")
    if D == 0:
        raise ValueError(f"{_OP}: head dimension D must be >= 1, got 0")
    return B, H, Na, Nb, D


def _keep_mask(key_padding_mask: KeyPaddingMask, B: int, Na: int, Nb: int, device) -> Optional[torch.Tensor]:
    """The keep-mask as bool [B, Na + Nb] on `device`, or None when nothing is masked."""
    if key_padding_mask is None:
        return None
    if isinstance(key_padding_mask, (tuple, list)):
        if len(key_padding_mask) != 2:
            raise ValueError(f"{_OP}: key_padding_mask as a sequence must be (mask_a [B, Na], mask_b [B, Nb]), "
                             f"got {len(key_padding_mask)} items")
        parts = []
        for name, m, n in (("mask_a", key_padding_mask[0], Na), ("mask_b", key_padding_mask[1], Nb)):
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or tuple(m.shape) != (B, n):
                got = (tuple(m.shape), m.dtype) if isinstance(m, torch.Tensor) else type(m).__name__
                raise ValueError(f"{_OP}: key_padding_mask {name} must be a bool tensor [B, N] = {(B, n)} "
                                 f"(True = keep the key), got {got}")
            parts.append(m.to(device))
        return torch.cat(parts, dim=1)
    m = key_padding_mask
    if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or tuple(m.shape) != (B, Na + Nb):
        got = (tuple(m.shape), m.dtype) if isinstance(m, torch.Tensor) else type(m).__name__
        raise ValueError(f"{_OP}: key_padding_mask must be a bool tensor [B, Na + Nb] = {(B, Na + Nb)} "
                         f"(True = keep; stream a's keys first) or a pair ([B, Na], [B, Nb]); got {got}")
    return m.to(device)


def _check_scale(scale: Optional[float], D: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(D)
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"{_OP}: scale must be finite, got {scale}")
    return scale


# ---------------------------------------------------------------------------------------------
# reference: plain PyTorch on the concatenated streams
# ---------------------------------------------------------------------------------------------
def _reference(qa, ka, va, qb, kb, vb, keep: Optional[torch.Tensor], scale: float):
    Na = qa.shape[2]
    dtype = qa.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    q = torch.cat([qa, qb], dim=2).to(compute)  # [B, H, Na + Nb, D]
    k = torch.cat([ka, kb], dim=2).to(compute)
    v = torch.cat([va, vb], dim=2).to(compute)
    s = scale * (q @ k.transpose(-1, -2))  # [B, H, N, N]
    if keep is not None:
        keep4 = keep[:, None, None, :]
        s = s.masked_fill(~keep4, float("-inf"))
    # Softmax by hand so that rows with no kept key give 0 (torch.softmax gives NaN there). The
    # shift m cancels exactly, so it is detached (no derivative through the max).
    m = s.detach().amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m)
    l = p.sum(dim=-1, keepdim=True)
    o = (p @ v) / torch.where(l > 0, l, torch.ones_like(l))
    o = o.to(dtype)
    return o[:, :, :Na], o[:, :, Na:]


def two_stream_attention_reference(qa, ka, va, qb, kb, vb, *, scale: Optional[float] = None,
                                   key_padding_mask: KeyPaddingMask = None):
    """The plain-PyTorch twin of `two_stream_attention` (builds the concatenation; O(N^2) memory)."""
    B, H, Na, Nb, D = _check_inputs((qa, ka, va, qb, kb, vb))
    keep = _keep_mask(key_padding_mask, B, Na, Nb, qa.device)
    return _reference(qa, ka, va, qb, kb, vb, keep, _check_scale(scale, D))


# ---------------------------------------------------------------------------------------------
# fused engines
# ---------------------------------------------------------------------------------------------
def _triton_forward(prim, tangents, keep, scale):
    from abcc_fast.kernels import two_stream_attention as K  # Triton kernels: imports triton, only on this path
    blocks = None
    if _triton_blocks is not None:
        blocks = dict(K.default_blocks(prim[0].shape[-1], tangents is not None), **_triton_blocks)
    return K.forward(*prim, tangents=tangents, keep=keep, scale=scale, blocks=blocks)


def _triton_backward(prim, oa, ob, lse, doa, dob, keep, scale):
    from abcc_fast.kernels import two_stream_attention as K  # Triton kernels: imports triton, only on this path
    blocks = None
    if _triton_blocks is not None:
        blocks = dict(K.default_blocks(prim[0].shape[-1], False, backward=True), **_triton_blocks)
    return K.backward(*prim, oa, ob, lse, doa, dob, keep=keep, scale=scale, blocks=blocks)


def _cuda_forward(prim, tangents, keep, scale):
    mod = native_module()
    tqa, tka, tva, tqb, tkb, tvb = tangents if tangents is not None else (None,) * 6
    qa, ka, va, qb, kb, vb = prim
    # by keyword: the fields of _C.TwoStreamAttentionParams (csrc/two_stream_attention/binding.cpp;
    # checked against _C.op_args)
    outs = mod.two_stream_attention_cuda_forward(qa=qa, ka=ka, va=va, qb=qb, kb=kb, vb=vb, tqa=tqa, tka=tka,
                                                 tva=tva, tqb=tqb, tkb=tkb, tvb=tvb, keep=keep, scale=float(scale))
    oa, ob, lse = outs[0], outs[1], outs[2]
    if tangents is None:
        return oa, ob, lse, None, None
    return oa, ob, lse, outs[3], outs[4]


def _engine_forward(engine: str, prim, tangents, keep, scale):
    launch_counts[(engine, "forward_jvp" if tangents is not None else "forward")] += 1
    if engine == "triton":
        return _triton_forward(prim, tangents, keep, scale)
    return _cuda_forward(prim, tangents, keep, scale)


def _engine_backward(engine: str, prim, oa, ob, lse, doa, dob, keep, scale):
    # The CUDA backend reuses the Triton backward (same LSE layout: fp32 [B, H, Na + Nb], natural log).
    launch_counts[(engine, "backward")] += 1
    doa = doa.contiguous() if doa is not None else torch.zeros_like(oa)
    dob = dob.contiguous() if dob is not None else torch.zeros_like(ob)
    return _triton_backward(prim, oa, ob, lse, doa, dob, keep, scale)


# ---------------------------------------------------------------------------------------------
# custom ops abcc::two_stream_attention_{forward,forward_jvp,backward} and, for eager calls, the
# autograd Functions over the same implementations and formulas (routes: ops/_library.py). The
# Functions add what a custom op cannot carry: the forward-mode rules. The dispatch reaches
# forward_jvp only through them (forward AD runs eagerly: Dynamo does not guard on whether an
# input carries a tangent, so a compiled graph cannot safely choose between the two forwards);
# as an op it is the fused primal + tangent for compiled code that passes tangents explicitly.
# ---------------------------------------------------------------------------------------------
_PRIMS = "Tensor qa, Tensor ka, Tensor va, Tensor qb, Tensor kb, Tensor vb"
_TANGENTS = "Tensor tqa, Tensor tka, Tensor tva, Tensor tqb, Tensor tkb, Tensor tvb"


def _forward_impl(qa, ka, va, qb, kb, vb, keep, scale, engine):
    """(oa, ob, lse): lse fp32 [B, H, Na + Nb] for the backward (keep: int8 [B, Na + Nb] or None)."""
    return _engine_forward(engine, (qa, ka, va, qb, kb, vb), None, keep, scale)[:3]


def _forward_jvp_impl(qa, ka, va, qb, kb, vb, tqa, tka, tva, tqb, tkb, tvb, keep, scale, engine):
    """(oa, ob, lse, toa, tob) from one fused launch."""
    return _engine_forward(engine, (qa, ka, va, qb, kb, vb), (tqa, tka, tva, tqb, tkb, tvb), keep, scale)


def _backward_impl(qa, ka, va, qb, kb, vb, oa, ob, lse, doa, dob, keep, scale, engine):
    return tuple(_engine_backward(engine, (qa, ka, va, qb, kb, vb), oa, ob, lse, doa, dob, keep, scale))


def _primal_fake(qa, qb):
    B, H, Na, _ = qa.shape
    lse = qa.new_empty((B, H, Na + qb.shape[2]), dtype=torch.float32)
    return qa.new_empty(qa.shape), qb.new_empty(qb.shape), lse


def _forward_fake(qa, ka, va, qb, kb, vb, keep, scale, engine):
    return _primal_fake(qa, qb)


def _forward_jvp_fake(qa, ka, va, qb, kb, vb, tqa, tka, tva, tqb, tkb, tvb, keep, scale, engine):
    return _primal_fake(qa, qb) + (qa.new_empty(qa.shape), qb.new_empty(qb.shape))


def _backward_fake(qa, ka, va, qb, kb, vb, oa, ob, lse, doa, dob, keep, scale, engine):
    return tuple(t.new_empty(t.shape) for t in (qa, ka, va, qb, kb, vb))


def _setup(ctx, inputs, output):
    """For both forwards: the primal inputs are the first six, keep/scale/engine the last three."""
    prim, (keep, scale, engine) = inputs[:6], inputs[-3:]
    oa, ob, lse = output[:3]
    ctx.mark_non_differentiable(lse, *output[3:])  # the tangents are not differentiable
    ctx.set_materialize_grads(False)  # no zero gradients for lse and the tangents; _backward takes None
    ctx.scale, ctx.engine, ctx.n_inputs = scale, engine, len(inputs)
    ctx.save_for_backward(*prim, oa, ob, lse, keep)


def _backward(ctx, doa, dob, *_):
    qa, ka, va, qb, kb, vb, oa, ob, lse, keep = ctx.saved_tensors
    doa = doa.contiguous() if doa is not None else torch.zeros_like(oa)
    dob = dob.contiguous() if dob is not None else torch.zeros_like(ob)
    grads = _library.call("two_stream_attention_backward", _backward_impl, qa, ka, va, qb, kb, vb, oa, ob, lse,
                          doa, dob, keep, ctx.scale, ctx.engine)
    return tuple(grads) + (None,) * (ctx.n_inputs - 6)


def _define(name, impl, fake, schema, differentiable=True):
    op = torch.library.custom_op(_library.qualname(name), impl, mutates_args=(), schema=schema)
    op.register_fake(fake)
    if differentiable:
        op.register_autograd(_backward, setup_context=_setup)
    return getattr(torch.ops.abcc, name)


_forward_op = _define("two_stream_attention_forward", _forward_impl, _forward_fake,
                      f"({_PRIMS}, Tensor? keep, float scale, str engine) -> (Tensor, Tensor, Tensor)")
_forward_jvp_op = _define("two_stream_attention_forward_jvp", _forward_jvp_impl, _forward_jvp_fake,
                          f"({_PRIMS}, {_TANGENTS}, Tensor? keep, float scale, str engine) "
                          "-> (Tensor, Tensor, Tensor, Tensor, Tensor)")
_define("two_stream_attention_backward", _backward_impl, _backward_fake,
        f"({_PRIMS}, Tensor oa, Tensor ob, Tensor lse, Tensor doa, Tensor dob, Tensor? keep, float scale, "
        "str engine) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", differentiable=False)


class _JointAttention(torch.autograd.Function):
    """Primal (oa, ob, lse) with the flash-style backward; `jvp` is the fallback for tangents the
    op could not see before the call (a second, fused launch)."""

    @staticmethod
    def forward(qa, ka, va, qb, kb, vb, keep, scale, engine):
        return _forward_impl(qa, ka, va, qb, kb, vb, keep, scale, engine)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup(ctx, inputs, output)
        ctx.save_for_forward(*inputs[:6], inputs[6])

    backward = staticmethod(_backward)

    @staticmethod
    def jvp(ctx, tqa, tka, tva, tqb, tkb, tvb, _tkeep, _tscale, _tengine):
        saved = ctx.saved_tensors
        prim = tuple(t.contiguous() for t in saved[:6])
        keep = saved[6]
        tangents = tuple((t if t is not None else torch.zeros_like(p)).contiguous()
                         for t, p in zip((tqa, tka, tva, tqb, tkb, tvb), prim))
        launch_counts[(ctx.engine, "jvp_fallback")] += 1
        _, _, _, toa, tob = _engine_forward(ctx.engine, prim, tangents, keep, ctx.scale)
        return toa, tob, None


class _JointAttentionWithTangent(torch.autograd.Function):
    """Primal and tangent from one fused launch. Differentiable in the primal inputs only."""

    @staticmethod
    def forward(qa, ka, va, qb, kb, vb, tqa, tka, tva, tqb, tkb, tvb, keep, scale, engine):
        return _forward_jvp_impl(qa, ka, va, qb, kb, vb, tqa, tka, tva, tqb, tkb, tvb, keep, scale, engine)

    setup_context = staticmethod(_setup)
    backward = staticmethod(_backward)

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError(
            f"{_OP}: nested forward-mode AD (a jvp of a jvp) is not supported by the fused backends; "
            "use backend='reference'")


def _explicit(backend: Optional[str]) -> bool:
    chosen = backend if backend is not None else (os.environ.get("ABCC_BACKEND") or None)
    return chosen not in (None, "auto")


_CUDA_KERNEL_WARNING = (
    f"{_OP}: backend='cuda' runs the CUDA C++ attention kernel, which computes on CUDA cores, not tensor "
    "cores (estimated tens of times slower than backend='triton'); it is kept as a second fused "
    "implementation for cross-checks. Use backend='triton' (or the automatic choice) for speed.")
_warned_cuda_kernel = False


def _choose_backend(device: torch.device, backend: Optional[str]) -> str:
    """Automatic choice on CUDA tensors: triton, else the reference. The CUDA C++ kernel is never
    chosen automatically, and ABCC_BACKEND=cuda (a request for native GPU kernels everywhere) gets
    the Triton kernels for this op; only backend="cuda" in the call reaches it, with a warning."""
    global _warned_cuda_kernel
    if backend is None and os.environ.get("ABCC_BACKEND") == "cuda":
        backend = "triton"
    if not _explicit(backend):
        if device.type == "cuda" and status()["triton"].available:
            return resolve(_OP, device, "triton", _IMPLEMENTED)
        return resolve(_OP, device, "auto", ("reference", "triton"))
    name = resolve(_OP, device, backend, _IMPLEMENTED)
    if name == "cuda" and not _warned_cuda_kernel:
        _warned_cuda_kernel = True
        warnings.warn(_CUDA_KERNEL_WARNING, RuntimeWarning, stacklevel=5)  # the caller of two_stream_attention
    return name


def _plan(device: torch.device, backend: Optional[str]):
    """(engine, whether the choice was explicit): a constant under torch.compile (_library.constant)."""
    return _choose_backend(device, backend), _explicit(backend)


def _split_tangents(tensors):
    """(primals, tangents or None): the forward-mode tangents the inputs carry at the current level
    (torch.autograd.forward_ad dual tensors, or the duals torch.func.jvp builds)."""
    primals, tangents, any_t = [], [], False
    for t in tensors:
        p, tan = fwAD.unpack_dual(t)
        primals.append(p)
        tangents.append(tan)
        any_t = any_t or tan is not None
    if not any_t:
        return tuple(tensors), None
    tangents = [(tan if tan is not None else torch.zeros_like(p)) for p, tan in zip(primals, tangents)]
    return tuple(primals), tuple(tangents)


def _fused_forward_ad(engine: str, tensors, keep8: Optional[torch.Tensor], scale: float):
    """Forward AD active: the tangents the inputs carry are unpacked here and re-attached to the
    outputs, so that primal and tangent come from one launch. Runs under torch.compiler.disable:
    Dynamo may trace an autograd.Function's forward and drop its forward-mode rule without an
    error (see ops/_library.py)."""
    primals, tangents = _split_tangents(tensors)
    primals = tuple(p.contiguous() for p in primals)
    if tangents is None:
        oa, ob, _ = _JointAttention.apply(*primals, keep8, scale, engine)
        return oa, ob
    tangents = tuple(t.to(p.dtype).contiguous() for t, p in zip(tangents, primals))
    oa, ob, _, toa, tob = _JointAttentionWithTangent.apply(*primals, *tangents, keep8, scale, engine)
    return fwAD.make_dual(oa, toa), fwAD.make_dual(ob, tob)


_fused_forward_ad_eagerly = _library.run_eagerly(_fused_forward_ad)


def _fused(engine: str, tensors, keep: Optional[torch.Tensor], scale: float):
    keep8 = keep.to(torch.int8).contiguous() if keep is not None else None
    how = _library.route(*tensors)
    if how == "forward_ad":
        return _fused_forward_ad_eagerly(engine, tensors, keep8, scale)
    prims = tuple(t.contiguous() for t in tensors)
    if how == "library":
        oa, ob, _ = _forward_op(*prims, keep8, scale, engine)
    else:
        oa, ob, _ = _JointAttention.apply(*prims, keep8, scale, engine)
    return oa, ob


# ---------------------------------------------------------------------------------------------
# the op
# ---------------------------------------------------------------------------------------------
def two_stream_attention(qa: torch.Tensor, ka: torch.Tensor, va: torch.Tensor,
                         qb: torch.Tensor, kb: torch.Tensor, vb: torch.Tensor, *,
                         scale: Optional[float] = None, key_padding_mask: KeyPaddingMask = None,
                         backend: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Joint attention of two token streams, without building their concatenation.

    Args:
        qa, ka, va: stream a, [B, H, Na, D].
        qb, kb, vb: stream b, [B, H, Nb, D] (same B, H, D and dtype as stream a).
        scale: softmax scale s in S = s Q K^T; default 1/sqrt(D).
        key_padding_mask: bool [B, Na + Nb] (True = keep; stream a's keys first) or a pair
            (mask_a [B, Na], mask_b [B, Nb]). Rows with no kept key output 0.
        backend: "reference", "triton", "cuda", "auto" or None (ABCC_BACKEND, then automatic).

    Returns:
        (oa [B, H, Na, D], ob [B, H, Nb, D]) in the input dtype (fp32 accumulation).

    Differentiable in reverse mode and in forward mode; under `torch.func.jvp` or
    `torch.autograd.forward_ad` the fused backends compute the tangent in the primal's launch.

    >>> qa = ka = va = torch.randn(2, 4, 10, 32); qb = kb = vb = torch.randn(2, 4, 7, 32)
    >>> oa, ob = two_stream_attention(qa, ka, va, qb, kb, vb)
    >>> oa.shape, ob.shape
    (torch.Size([2, 4, 10, 32]), torch.Size([2, 4, 7, 32]))
    """
    tensors = (qa, ka, va, qb, kb, vb)
    B, H, Na, Nb, D = _check_inputs(tensors)
    keep = _keep_mask(key_padding_mask, B, Na, Nb, qa.device)
    scale = _check_scale(scale, D)
    engine, explicit = _library.constant(_plan, qa.device, backend)
    if engine != "reference" and not explicit and (
            D not in _FUSED_D or qa.dtype not in _FUSED_DTYPES or B * H > _MAX_BH):
        engine = "reference"  # automatic choice falls back where the fused kernels do not apply
    if engine == "reference":
        return _reference(qa, ka, va, qb, kb, vb, keep, scale)
    if D not in _FUSED_D:
        raise ValueError(f"{_OP}: the {engine} backend needs head dimension D in {_FUSED_D}, got D={D}; "
                         "pad the head dimension or use backend='reference'")
    if qa.dtype not in _FUSED_DTYPES:
        raise TypeError(f"{_OP}: the {engine} backend takes {[str(d) for d in _FUSED_DTYPES]}, got {qa.dtype}; "
                        "convert the inputs or use backend='reference' (float64)")
    if B * H > _MAX_BH:
        raise ValueError(f"{_OP}: the {engine} backend launches one grid row per (batch, head) and CUDA allows "
                         f"{_MAX_BH}, got B*H={B * H}; split the batch or use backend='reference'")
    if B * H == 0:  # nothing to launch
        return _reference(qa, ka, va, qb, kb, vb, keep, scale)
    return _fused(engine, tensors, keep, scale)
