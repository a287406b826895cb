"""MeanFlow helpers: the fused target/loss and the fused all-frames integration (docs/model.md).

Notation (forward-in-time chemical flow): tau in [0, 1] is normalised protocol
progress, x_r the spectrum at r, v_r = dx/dtau at r, and u(x_r, r, tau) the *average* velocity over
[r, tau], so that x_tau = x_r + (tau - r) u. The MeanFlow identity in this form is

    u(x_r, r, tau) = v_r + (tau - r) d/dr u(x_r, r, tau),
    d/dr u = v . grad_x u + du/dr            (a JVP with tangent (v, 1, 0) on (x, r, tau)).

``meanflow_target(u_pred, v, du_dr, r, tau)`` -- target, adaptive weight and loss in one pass::

    u_tgt   = v + (tau - r) * du_dr                      (du_dr is treated as a constant)
    e_b     = mean_w (u_pred - u_tgt)^2                   per sample b (mean over the W channels)
    w_b     = 1 / (e_b + c)^p                             adaptive weight, stop-gradient (MeanFlow)
    loss_b  = w_b * e_b,   loss = mean_b loss_b           (reduction="mean"; "none" gives loss_b)

  d loss_b / d u_pred = w_b * 2 (u_pred - u_tgt) / W; no gradient flows to v, du_dr, r or tau
  (the target is stop-gradiented). The mean over W (not the sum of the MeanFlow paper) keeps c
  and the loss scale independent of the grid size.

``meanflow_integrate(x0_solvent, u_solvent, u_sei, r, taus)`` -- every frame from one state, the
two streams summed and the SEI projection applied, in one pass::

    y_k = y_r + (tau_k - r) u_solvent_k                  solvent stream  (y_r = x0_solvent)
    z_k = z_r + (tau_k - r) u_sei_k                      SEI stream      (z_r = x0_sei, default 0)
    z_k <- max(z_k, 0)                                   projection (project=True): SEI >= 0
    x_k = y_k + z_k                                      frames

  Gradients (reverse mode) flow to x0_solvent, x0_sei, u_solvent and u_sei (through the projection
  where z_k > 0); r and taus are conditions and get none.

Backends: ``reference`` (plain PyTorch, any device/dtype), ``triton`` (one row-reduction kernel
for the target, one elementwise kernel for the integration) and ``cuda`` (the same in CUDA C++,
``csrc/meanflow/meanflow.cu``). Automatic choice: CUDA tensors -> cuda > triton > reference, CPU
tensors -> reference. Fused backends compute in fp32 (inputs of other dtypes are cast and the
outputs cast back); their backward passes are short elementwise PyTorch expressions of saved
tensors, identical for all backends. Under torch.compile the fused backends are the custom ops
``abcc::meanflow_target`` and ``abcc::meanflow_integrate`` (ops/_library.py): no graph break.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _library, _registry
from ._backend import native_module, resolve

__all__ = ["meanflow_target", "meanflow_integrate", "meanflow_target_reference",
           "meanflow_integrate_reference"]


def _declare(op: str) -> None:
    # 'cuda' needs the kernel in the built extension (one built before the MeanFlow kernels landed
    # reports the backend as not implemented instead of failing at call time)
    _registry.declare(
        op,
        _registry.EngineSpec(op, "reference", devices=("cpu", "cuda"), jvp=True, double_backward=True,
                             compute="the input dtype"),
        _registry.EngineSpec(op, "triton", devices=("cuda",), compute="float32", library=(f"abcc::{op}",),
                             note="backward: PyTorch expressions of saved tensors"),
        _registry.EngineSpec(op, "cuda", devices=("cuda",), compute="float32", needs=(f"{op}_cuda",),
                             library=(f"abcc::{op}",), note="backward: PyTorch expressions of saved tensors"))


_declare("meanflow_target")
_declare("meanflow_integrate")


def _resolve(op: str, device, backend) -> str:
    return resolve(op, device, backend, _registry.implemented(op))


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _as_rows(name: str, op: str, t, B: int, like: torch.Tensor) -> torch.Tensor:
    """A per-sample scalar (python number, [] or [B]) as a [B] tensor on like's device (fp32+)."""
    if not isinstance(t, torch.Tensor):
        t = torch.tensor(float(t))
    if t.dim() == 0:
        t = t.expand(B)
    if t.dim() != 1 or t.shape[0] != B:
        raise ValueError(f"{op}: {name} must be a scalar or a [B] = [{B}] tensor, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t.to(device=like.device)


def _check_finite_params(op: str, c: float, p: float) -> None:
    if not (c > 0):
        raise ValueError(f"{op}: c must be > 0 (it keeps the adaptive weight finite), got {c}")
    if not (p >= 0):
        raise ValueError(f"{op}: p must be >= 0, got {p}")


def _check_target(u_pred, v, du_dr, r, tau, c, p, reduction):
    op = "meanflow_target"
    for name, t in (("u_pred", u_pred), ("v", v), ("du_dr", du_dr)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor [B, W], got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{op}: {name} must be [B, W], got shape {tuple(t.shape)}; "
                             "flatten extra leading dims into B")
        if not t.is_floating_point():
            raise TypeError(f"{op}: {name} must be floating point, got {t.dtype}")
        if t.shape != u_pred.shape:
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)} but u_pred has {tuple(u_pred.shape)}")
        if t.device != u_pred.device:
            raise ValueError(f"{op}: {name} is on {t.device} but u_pred on {u_pred.device}")
    B, W = u_pred.shape
    if W == 0:
        raise ValueError(f"{op}: W must be >= 1, got u_pred of shape {tuple(u_pred.shape)}")
    _check_finite_params(op, float(c), float(p))
    if reduction not in ("mean", "none"):
        raise ValueError(f"{op}: reduction must be 'mean' or 'none', got {reduction!r}")
    return _as_rows("r", op, r, B, u_pred), _as_rows("tau", op, tau, B, u_pred)


def _check_integrate(x0_solvent, u_solvent, u_sei, r, taus, x0_sei):
    op = "meanflow_integrate"
    for name, t, nd in (("x0_solvent", x0_solvent, 2), ("u_solvent", u_solvent, 3), ("u_sei", u_sei, 3)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != nd:
            want = "[B, W]" if nd == 2 else "[B, T, W]"
            raise ValueError(f"{op}: {name} must be {want}, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{op}: {name} must be floating point, got {t.dtype}")
        if t.device != x0_solvent.device:
            raise ValueError(f"{op}: {name} is on {t.device} but x0_solvent on {x0_solvent.device}")
    B, W = x0_solvent.shape
    if u_solvent.shape[0] != B or u_solvent.shape[2] != W:
        raise ValueError(f"{op}: u_solvent has shape {tuple(u_solvent.shape)}, expected [B, T, W] with "
                         f"B={B}, W={W} from x0_solvent {tuple(x0_solvent.shape)}")
    if u_sei.shape != u_solvent.shape:
        raise ValueError(f"{op}: u_sei has shape {tuple(u_sei.shape)} but u_solvent has {tuple(u_solvent.shape)}")
    T = u_solvent.shape[1]
    if x0_sei is not None:
        if not isinstance(x0_sei, torch.Tensor) or x0_sei.shape != x0_solvent.shape:
            got = tuple(x0_sei.shape) if isinstance(x0_sei, torch.Tensor) else type(x0_sei).__name__
            raise ValueError(f"{op}: x0_sei must be None or a tensor shaped like x0_solvent "
                             f"{tuple(x0_solvent.shape)}, got {got}")
    r = _as_rows("r", op, r, B, x0_solvent)
    if not isinstance(taus, torch.Tensor):
        taus = torch.as_tensor(taus, dtype=torch.float32)
    if taus.dim() == 1:
        taus = taus.to(x0_solvent.device).unsqueeze(0).expand(B, -1)
    if taus.dim() != 2 or tuple(taus.shape) != (B, T):
        raise ValueError(f"{op}: taus must be [T] or [B, T] = [{B}, {T}], got shape {tuple(taus.shape)}")
    return r, taus.to(device=x0_solvent.device, dtype=r.dtype if r.is_floating_point() else torch.float32)


# ---------------------------------------------------------------------------------------------
# reference twins (plain PyTorch; autograd does the backward)
# ---------------------------------------------------------------------------------------------
def meanflow_target_reference(u_pred, v, du_dr, r, tau, *, c: float = 1e-3, p: float = 1.0,
                              reduction: str = "mean"):
    """Plain-PyTorch twin of :func:`meanflow_target` (same arguments and returns)."""
    r, tau = _check_target(u_pred, v, du_dr, r, tau, c, p, reduction)
    u_tgt = (v + (tau - r).to(v.dtype)[:, None] * du_dr).detach()
    err = (u_pred - u_tgt).pow(2).mean(dim=1)                     # [B]
    weight = (err.detach() + c).pow(-p)                           # [B] stop-gradient
    loss = weight * err
    return (loss.mean() if reduction == "mean" else loss), u_tgt, weight


def meanflow_integrate_reference(x0_solvent, u_solvent, u_sei, r, taus, *, x0_sei=None, project: bool = True):
    """Plain-PyTorch twin of :func:`meanflow_integrate` (same arguments and returns)."""
    r, taus = _check_integrate(x0_solvent, u_solvent, u_sei, r, taus, x0_sei)
    dt = (taus - r[:, None]).to(u_solvent.dtype)[:, :, None]     # [B, T, 1]
    solvent = x0_solvent[:, None, :] + dt * u_solvent
    sei = dt * u_sei if x0_sei is None else x0_sei[:, None, :] + dt * u_sei
    if project:
        sei = sei.clamp_min(0.0)
    return solvent + sei, solvent, sei


# ---------------------------------------------------------------------------------------------
# fused engines
# ---------------------------------------------------------------------------------------------
def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def _target_engine(engine, u_pred, v, du_dr, r, tau, c, p):
    """(u_tgt [B, W], err [B], weight [B]) in fp32 from the fused kernel."""
    args = (_f32(u_pred), _f32(v), _f32(du_dr), _f32(r), _f32(tau))
    if engine == "triton":
        from abcc_fast.kernels import meanflow as K  # Triton kernels: imports triton, only on this path
        return K.target(*args, c=float(c), p=float(p))
    # by keyword: the fields of _C.MeanflowParams (csrc/meanflow/binding.cpp; checked against _C.op_args)
    outs = native_module().meanflow_target_cuda(u_pred=args[0], v=args[1], du_dr=args[2], r=args[3], tau=args[4],
                                                c=float(c), p=float(p))
    return outs[0], outs[1], outs[2]


def _integrate_engine(engine, x0_solvent, x0_sei, u_solvent, u_sei, r, taus, project):
    """(frames, solvent, sei) [B, T, W] fp32 from the fused kernel."""
    args = (_f32(x0_solvent), None if x0_sei is None else _f32(x0_sei), _f32(u_solvent), _f32(u_sei),
            _f32(r), _f32(taus))
    if engine == "triton":
        from abcc_fast.kernels import meanflow as K  # Triton kernels: imports triton, only on this path
        return K.integrate(*args, project=bool(project))
    outs = native_module().meanflow_integrate_cuda(x0_solvent=args[0], x0_sei=args[1], u_solvent=args[2],
                                                   u_sei=args[3], r=args[4], taus=args[5], project=bool(project))
    return outs[0], outs[1], outs[2]


# ---------------------------------------------------------------------------------------------
# the fused engines as custom ops (abcc::meanflow_target, abcc::meanflow_integrate) and, for eager
# calls, as autograd Functions over the same implementation and formulas (see ops/_library.py).
# Both return float32, the kernels' dtype; the public functions cast to the input dtype, so the
# backward formulas get float32 gradients, as they always did.
# ---------------------------------------------------------------------------------------------
def _target_impl(u_pred, v, du_dr, r, tau, c, p, engine):
    """(loss_b [B], u_tgt [B, W], weight [B]) in float32."""
    u_tgt, err, weight = _target_engine(engine, u_pred, v, du_dr, r, tau, c, p)
    return weight * err, u_tgt, weight


def _target_fake(u_pred, v, du_dr, r, tau, c, p, engine):
    B, W = u_pred.shape
    f32 = torch.float32
    return u_pred.new_empty(B, dtype=f32), u_pred.new_empty((B, W), dtype=f32), u_pred.new_empty(B, dtype=f32)


def _target_setup(ctx, inputs, output):
    _, u_tgt, weight = output
    ctx.mark_non_differentiable(u_tgt, weight)
    ctx.save_for_backward(inputs[0], u_tgt, weight)


def _target_backward(ctx, g_loss, g_tgt, g_weight):
    u_pred, u_tgt, weight = ctx.saved_tensors
    W = u_pred.shape[1]
    scale = (g_loss.float() * weight * (2.0 / W))[:, None]
    g = scale * (u_pred.float() - u_tgt)
    return g.to(u_pred.dtype), None, None, None, None, None, None, None


def _integrate_impl(x0_solvent, x0_sei, u_solvent, u_sei, r, taus, project, engine):
    """(frames, solvent, sei) [B, T, W] in float32."""
    frames, solvent, sei = _integrate_engine(engine, x0_solvent, x0_sei, u_solvent, u_sei, r, taus, project)
    return frames, solvent, sei


def _integrate_fake(x0_solvent, x0_sei, u_solvent, u_sei, r, taus, project, engine):
    return tuple(u_solvent.new_empty(u_solvent.shape, dtype=torch.float32) for _ in range(3))


def _integrate_setup(ctx, inputs, output):
    x0_solvent, x0_sei, u_solvent, u_sei, r, taus, project, _ = inputs
    ctx.save_for_backward(output[2], r, taus)
    ctx.project = project
    ctx.has_x0_sei = x0_sei is not None
    ctx.dtypes = (x0_solvent.dtype, u_solvent.dtype, u_sei.dtype, x0_sei.dtype if x0_sei is not None else None)


def _integrate_backward(ctx, g_frames, g_solvent, g_sei):
    sei, r, taus = ctx.saved_tensors
    dt = (taus.float() - r.float()[:, None])[:, :, None]     # [B, T, 1]

    def f(g):
        return torch.zeros_like(sei) if g is None else g.float()
    gy = f(g_frames) + f(g_solvent)
    gz = f(g_frames) + f(g_sei)
    if ctx.project:
        gz = gz * (sei > 0)
    dx0, du_dt, du_ds, dx0s = ctx.dtypes
    g_x0 = gy.sum(1).to(dx0)
    g_us = (dt * gy).to(du_dt)
    g_uz = (dt * gz).to(du_ds)
    g_x0s = gz.sum(1).to(dx0s) if ctx.has_x0_sei else None
    return g_x0, g_x0s, g_us, g_uz, None, None, None, None


def _custom_op(name, impl, fake, setup, backward, schema):
    op = torch.library.custom_op(_library.qualname(name), impl, mutates_args=(), schema=schema)
    op.register_fake(fake)
    op.register_autograd(backward, setup_context=setup)
    return getattr(torch.ops.abcc, name)


_target_op = _custom_op(
    "meanflow_target", _target_impl, _target_fake, _target_setup, _target_backward,
    "(Tensor u_pred, Tensor v, Tensor du_dr, Tensor r, Tensor tau, float c, float p, str engine) "
    "-> (Tensor, Tensor, Tensor)")
_integrate_op = _custom_op(
    "meanflow_integrate", _integrate_impl, _integrate_fake, _integrate_setup, _integrate_backward,
    "(Tensor x0_solvent, Tensor? x0_sei, Tensor u_solvent, Tensor u_sei, Tensor r, Tensor taus, bool project, "
    "str engine) -> (Tensor, Tensor, Tensor)")


class _TargetFn(torch.autograd.Function):
    """Eager twin of abcc::meanflow_target."""

    @staticmethod
    def forward(ctx, *args):  # old style: see soft_dtw._SoftDTWFunction
        out = _target_impl(*args)
        _target_setup(ctx, args, out)
        return out

    backward = staticmethod(_target_backward)


class _IntegrateFn(torch.autograd.Function):
    """Eager twin of abcc::meanflow_integrate."""

    @staticmethod
    def forward(ctx, *args):  # old style: see soft_dtw._SoftDTWFunction
        out = _integrate_impl(*args)
        _integrate_setup(ctx, args, out)
        return out

    backward = staticmethod(_integrate_backward)


_target_eagerly = _library.run_eagerly(_TargetFn.apply)
_integrate_eagerly = _library.run_eagerly(_IntegrateFn.apply)


def _fused(op, function, eagerly, args, tensors):
    how = _library.route(*tensors)
    if how == "library":
        return op(*args)
    if how == "forward_ad":
        return eagerly(*args)
    return function.apply(*args)


# ---------------------------------------------------------------------------------------------
# public ops
# ---------------------------------------------------------------------------------------------
def meanflow_target(u_pred: torch.Tensor, v: torch.Tensor, du_dr: torch.Tensor, r, tau, *,
                    c: float = 1e-3, p: float = 1.0, reduction: str = "mean",
                    backend: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MeanFlow target, adaptive weight and loss in one pass (equations in the module docstring).

    Args:
      u_pred: [B, W] the network's average velocity u_theta(x_r, r, tau) (carries the gradient).
      v:      [B, W] instantaneous velocity dx/dtau at r (data).
      du_dr:  [B, W] total derivative d/dr u (the JVP with tangent (v, 1, 0)); treated as a constant.
              Rows with r == tau may hold anything finite (they are multiplied by tau - r = 0).
      r, tau: [B] (or scalars) interval ends in normalised protocol time.
      c, p:   adaptive weight w = 1 / (e + c)^p with e the per-sample mean squared error.
      reduction: "mean" -> scalar loss; "none" -> per-sample [B] weighted losses.
    Returns:
      (loss, u_tgt [B, W], weight [B]); u_tgt and weight are detached.

    >>> u = torch.zeros(2, 4, requires_grad=True)
    >>> loss, tgt, w = meanflow_target(u, torch.ones(2, 4), torch.zeros(2, 4), 0.0, 0.5)
    >>> round(float(loss), 4), tuple(tgt.shape)
    (0.999, (2, 4))
    """
    r_rows, tau_rows = _check_target(u_pred, v, du_dr, r, tau, c, p, reduction)
    engine = _library.constant(_resolve, "meanflow_target", u_pred.device, backend)
    if engine == "reference":
        return meanflow_target_reference(u_pred, v, du_dr, r_rows, tau_rows, c=c, p=p, reduction=reduction)
    out = _fused(_target_op, _TargetFn, _target_eagerly, (u_pred, v, du_dr, r_rows, tau_rows, float(c), float(p),
                                                          engine), (u_pred, v, du_dr, r_rows, tau_rows))
    loss_rows, u_tgt, weight = (t.to(u_pred.dtype) for t in out)
    return (loss_rows.mean() if reduction == "mean" else loss_rows), u_tgt, weight


def meanflow_integrate(x0_solvent: torch.Tensor, u_solvent: torch.Tensor, u_sei: torch.Tensor, r, taus, *,
                       x0_sei: Optional[torch.Tensor] = None, project: bool = True,
                       backend: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All frames from one state: the jump per stream, the stream sum and the SEI projection.

    Args:
      x0_solvent: [B, W] solvent stream at r (at r = 0: the static spectrum).
      u_solvent, u_sei: [B, T, W] average velocities of the two streams over [r, taus[:, k]].
      r:    [B] (or a scalar) start time; taus: [T] or [B, T] target times (tau >= r expected).
      x0_sei: [B, W] SEI stream at r (None: 0, as at r = 0).
      project: clamp the SEI stream at 0 (the SEI stream is non-negative).
    Returns:
      (frames, solvent, sei), each [B, T, W], frames = solvent + sei.

    >>> x0 = torch.ones(1, 3); u = torch.ones(1, 2, 3)
    >>> f, y, z = meanflow_integrate(x0, u, -u, 0.0, torch.tensor([0.0, 1.0]))
    >>> f[0, 1].tolist(), z.min().item()
    ([2.0, 2.0, 2.0], 0.0)
    """
    r_rows, tau_rows = _check_integrate(x0_solvent, u_solvent, u_sei, r, taus, x0_sei)
    engine = _library.constant(_resolve, "meanflow_integrate", x0_solvent.device, backend)
    if engine == "reference":
        return meanflow_integrate_reference(x0_solvent, u_solvent, u_sei, r_rows, tau_rows,
                                            x0_sei=x0_sei, project=project)
    out = _fused(_integrate_op, _IntegrateFn, _integrate_eagerly,
                 (x0_solvent, x0_sei, u_solvent, u_sei, r_rows, tau_rows, bool(project), engine),
                 (x0_solvent, x0_sei, u_solvent, u_sei, r_rows, tau_rows))
    return tuple(t.to(u_solvent.dtype) for t in out)
