"""soft-DTW's one Function pair for every native engine and both inputs (a cost matrix D, or
sequences x, y whose cost the kernel computes): the custom ops abcc::soft_dtw_forward /
abcc::soft_dtw_backward and, for eager calls, the autograd.Function _SoftDTWFunction over the same
implementation and formula (routes: ops/_library.py). The engines and everything else of the op
live in soft_dtw.py, which hands its engine lookup over with `use_engines` (importing it here
would make a cycle).
"""
from __future__ import annotations

import torch

from . import _library

_ENGINE_LOOKUP: list = []


def use_engines(lookup) -> None:
    """lookup(name) -> the engine object (soft_dtw._engine)."""
    _ENGINE_LOOKUP[:] = [lookup]


def _engine(name: str):
    return _ENGINE_LOOKUP[0](name)


_FORWARD_SCHEMA = ("(Tensor? D, Tensor? x, Tensor? y, Tensor n, Tensor m, float gamma, float bandwidth, "
                   "Tensor? omega, bool want_temporal, bool save, str engine, int variant) "
                   "-> (Tensor, Tensor, Tensor, Tensor, Tensor)")
_BACKWARD_SCHEMA = ("(Tensor? D, Tensor? x, Tensor? y, Tensor n, Tensor m, float gamma, float bandwidth, "
                    "Tensor? omega, bool want_temporal, Tensor s0, Tensor s1, Tensor s2, Tensor grad_value, "
                    "Tensor? grad_temporal, str engine, int variant, bool need_x=True, bool need_y=True) "
                    "-> (Tensor, Tensor, Tensor)")


def forward_impl(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save, engine_name, variant):
    """(value [B], temporal [B] (zeros without want_temporal), the state's three tensors, [0]
    where absent). variant: the engine's layout code (-1: the engine has none)."""
    engine = _engine(engine_name)
    if variant < 0:
        value, temporal, state = engine.forward(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save)
    else:
        value, temporal, state = engine.forward(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save,
                                                code=variant)
    if temporal is None:
        temporal = torch.zeros_like(value)
    if state is None or state[0] is None or state[1] is None or state[2] is None:
        ref = D if D is not None else x
        parts = state[:3] if state is not None else (None, None, None)
        state = tuple(ref.new_empty(0, dtype=dt) if t is None else t
                      for t, dt in zip(parts, engine.state_dtypes(ref.dtype)))
    return value, temporal, state[0], state[1], state[2]


def forward_op_impl(*args):
    """The custom op's kernel: the state flattened (its sizes are the engine's business, see the
    fake), which the engines accept (they check sizes, not shapes)."""
    value, temporal, *state = forward_impl(*args)
    return (value, temporal) + tuple(t.reshape(-1) for t in state)


def _forward_fake(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save, engine_name, variant):
    # The state's sizes are the engine's business (the cpu engine's rows depend on the lengths'
    # values: lane groups are padded only when every pair has the full length): unbacked sizes.
    ref = D if D is not None else x
    B = ref.shape[0]
    ctx = torch.library.get_ctx()
    present = (save, save and want_temporal, save)
    flat = tuple(ref.new_empty(ctx.new_dynamic_size() if on else 0, dtype=dt)
                 for on, dt in zip(present, _engine(engine_name).state_dtypes(ref.dtype)))
    return (ref.new_empty(B), ref.new_empty(B)) + flat


def backward_impl(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, s0, s1, s2, grad_value, grad_temporal,
                  engine_name, variant, need_x=True, need_y=True):
    """(G, dx, dy): G = dL/dD for a cost matrix, else dL/dx, dL/dy; the ones that do not apply or
    are not needed (need_x, need_y: an engine may skip their work) are [0]."""
    engine = _engine(engine_name)
    state = engine.unpack_state((s0, s1, s2), want_temporal, variant)
    grads = engine.backward(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, state, grad_value, grad_temporal,
                            need=(need_x, need_y))
    if D is not None:
        return grads[0], D.new_empty(0), D.new_empty(0)
    return x.new_empty(0), grads[0] if need_x else x.new_empty(0), grads[1] if need_y else y.new_empty(0)


def _backward_fake(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, s0, s1, s2, grad_value, grad_temporal,
                   engine_name, variant, need_x=True, need_y=True):
    if D is not None:
        return D.new_empty(D.shape), D.new_empty(0), D.new_empty(0)
    return x.new_empty(0), x.new_empty(x.shape if need_x else 0), y.new_empty(y.shape if need_y else 0)


def _setup_context(ctx, inputs, output):
    D, x, y, n, m, gamma, bandwidth, omega, want_temporal, _save, engine_name, variant = inputs
    state = output[2:]
    ctx.mark_non_differentiable(*state)
    ctx.set_materialize_grads(False)  # else autograd allocates zero gradients as large as the state
    ctx.args = (gamma, bandwidth, want_temporal, engine_name, variant)
    ctx.save_for_backward(D, x, y, n, m, omega, *state)


def _backward_with(backward_fn):
    """The autograd formula, given how to run the backward kernel: the custom op (traced by
    AOTAutograd under torch.compile) or its implementation (the eager Function)."""

    def backward(ctx, grad_value, grad_temporal, *_state_grads):
        D, x, y, n, m, omega, s0, s1, s2 = ctx.saved_tensors
        gamma, bandwidth, want_temporal, engine_name, variant = ctx.args
        ref = D if D is not None else x
        gv = grad_value.contiguous() if grad_value is not None else ref.new_zeros(ref.shape[0])
        gt = grad_temporal.contiguous() if (want_temporal and grad_temporal is not None) else None
        need_x, need_y = bool(ctx.needs_input_grad[1]), bool(ctx.needs_input_grad[2])
        G, dx, dy = backward_fn(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, s0, s1, s2, gv, gt,
                                engine_name, variant, need_x, need_y)
        if D is not None:
            return (G, None, None) + (None,) * 9
        return (None, dx if need_x else None, dy if need_y else None) + (None,) * 9

    return backward


_forward_op = torch.library.custom_op(_library.qualname("soft_dtw_forward"), forward_op_impl, mutates_args=(),
                                      schema=_FORWARD_SCHEMA)
_forward_op.register_fake(_forward_fake)
_backward_op = torch.library.custom_op(_library.qualname("soft_dtw_backward"), backward_impl, mutates_args=(),
                                       schema=_BACKWARD_SCHEMA)
_backward_op.register_fake(_backward_fake)
_forward_op.register_autograd(_backward_with(torch.ops.abcc.soft_dtw_backward), setup_context=_setup_context)


class _SoftDTWFunction(torch.autograd.Function):
    """The eager route: the custom op's implementation and autograd formula, without the
    dispatcher. First-order only (no double backward), like the op. Old-style forward(ctx, ...):
    a Function with a separate setup_context binds its arguments with inspect.signature on every
    call (~50 us of CPU time here)."""

    @staticmethod
    def forward(ctx, *args):
        out = forward_impl(*args)
        if args[9]:  # save: a backward may follow
            _setup_context(ctx, args, out)
        return out

    backward = staticmethod(torch.autograd.function.once_differentiable(_backward_with(backward_impl)))


_forward_eagerly = _library.run_eagerly(_SoftDTWFunction.apply)


def native(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, engine_name, variant):
    """(value, temporal) of a native engine on D [B, N, M] or x [B, N], y [B, M]; differentiable."""
    save = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad if D is None else D.requires_grad)
    args = (D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save, engine_name, variant)
    how = _library.route(D, x, y, omega)
    if how == "library":
        out = torch.ops.abcc.soft_dtw_forward(*args)
    elif how == "forward_ad":
        out = _forward_eagerly(*args)
    else:
        out = _SoftDTWFunction.apply(*args)
    return out[0], out[1]
