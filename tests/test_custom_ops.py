"""The torch.library layer of abcc_fast.ops (abcc_fast/ops/_library.py) and the engine registry.

- Every custom op `abcc::*` passes `torch.library.opcheck` on CPU (float32 and float64 where the
  engine takes them, inputs that require grad).
- A small module using each public op compiles with `torch.compile(fullgraph=True)` (so: no graph
  break), calls the custom op, and matches eager outputs and gradients.
- Forward-mode AD keeps its tangent around compiled code; a custom op never sees a dual tensor.
- What the registry claims an engine can do (backward, jvp, second order, dtypes) holds.

torch.compile backends: `aot_eager` (Dynamo + AOTAutograd, no code generation) for most cases and
`inductor` for one soft-DTW case each way, because inductor's C++ code generation takes 2-10 s
per graph on the 2-core CI machine. Without a GPU the fused kernels of two-stream attention and
MeanFlow run on CPU tensors under TRITON_INTERPRET=1 (set by conftest).

opcheck compares every output of an eager and a traced call. The soft-DTW forward's state
outputs hold uninitialised memory in the cells a pair never visits (past its lengths, outside the
band), so for ragged lengths or a band opcheck runs only the checks that compare no values
(schema, autograd registration, fake tensor); those cases are compared value by value (outputs
and gradients) in the compiled-versus-eager tests below.
"""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import abcc_fast.ops as ops
from abcc_fast.ops import _library, _registry
from conftest import triton_available

sdtw = importlib.import_module("abcc_fast.ops.soft_dtw")
tsa = importlib.import_module("abcc_fast.ops.two_stream_attention")
mf = importlib.import_module("abcc_fast.ops.meanflow")

HAS_CPU = ops.backends()["cpu"].available
needs_cpu = pytest.mark.skipif(not HAS_CPU, reason="abcc_fast._C not built")
needs_triton = pytest.mark.skipif(not triton_available() or not ops.backends()["triton"].available,
                                  reason="triton backend unavailable")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NO_VALUE_CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    yield
    torch._dynamo.reset()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# opcheck
# ---------------------------------------------------------------------------------------------
def _sdtw_args(univariate, dtype, temporal, variant, engine="cpu", lengths=None, bandwidth=-1.0, grad=True,
               device="cpu"):
    B, N, M = 3, 6, 5
    g = _gen(1)
    kind = {True: "sequences", False: "cost"}.get(univariate, univariate)  # or "features": d = 3
    n = torch.full((B,), N, dtype=torch.int64) if lengths is None else torch.tensor(lengths[0])
    m = torch.full((B,), M, dtype=torch.int64) if lengths is None else torch.tensor(lengths[1])
    if kind != "cost":
        feat = (3,) if kind == "features" else ()
        x = torch.randn(B, N, *feat, generator=g, dtype=dtype).to(device).requires_grad_(grad)
        y = torch.randn(B, M, *feat, generator=g, dtype=dtype).to(device).requires_grad_(grad)
        D = None
    else:
        x = y = None
        D = torch.rand(B, N, M, generator=g, dtype=dtype).to(device).requires_grad_(grad)
    omega = sdtw.default_omega(n, m, N, M, dtype, device) if temporal else None
    return (D, x, y, n.to(device), m.to(device), 0.5, bandwidth, omega, temporal, grad, engine, variant)


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("univariate", ["sequences", "features", "cost"])
@pytest.mark.parametrize("temporal", [False, True], ids=["value", "dilate"])
@pytest.mark.parametrize("variant", [1, 2], ids=["pairs", "lanes"])
def test_opcheck_soft_dtw_forward(dtype, univariate, temporal, variant):
    torch.library.opcheck(torch.ops.abcc.soft_dtw_forward, _sdtw_args(univariate, dtype, temporal, variant))


@needs_cpu
@pytest.mark.parametrize("univariate", [True, False], ids=["sequences", "cost"])
def test_opcheck_soft_dtw_forward_without_grad_and_ragged(univariate):
    torch.library.opcheck(torch.ops.abcc.soft_dtw_forward,
                          _sdtw_args(univariate, torch.float32, False, 0, grad=False))
    ragged = _sdtw_args(univariate, torch.float64, True, 0, lengths=([6, 3, 5], [5, 5, 2]), bandwidth=1.5)
    torch.library.opcheck(torch.ops.abcc.soft_dtw_forward, ragged, test_utils=NO_VALUE_CHECKS)


def _sdtw_backward_args(univariate, dtype, temporal, engine="cpu", variant=0, device="cpu"):
    args = _sdtw_args(univariate, dtype, temporal, variant, engine=engine, grad=False, device=device)
    D, x, y, n, m, gamma, bw, omega, tmp, _, eng, var = args
    out = torch.ops.abcc.soft_dtw_forward(*args[:9], True, eng, var)
    B = (D if D is not None else x).shape[0]
    gv = torch.linspace(0.5, 1.5, B, dtype=dtype, device=device)
    gt = torch.linspace(1.0, 2.0, B, dtype=dtype, device=device) if temporal else None
    return (D, x, y, n, m, gamma, bw, omega, tmp, *out[2:], gv, gt, eng, var)


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("univariate", ["sequences", "features", "cost"])
@pytest.mark.parametrize("temporal", [False, True], ids=["value", "dilate"])
def test_opcheck_soft_dtw_backward(dtype, univariate, temporal):
    torch.library.opcheck(torch.ops.abcc.soft_dtw_backward, _sdtw_backward_args(univariate, dtype, temporal))


@needs_triton
@pytest.mark.parametrize("univariate", [True, False], ids=["sequences", "cost"])
def test_opcheck_soft_dtw_triton_engine(univariate):
    torch.library.opcheck(torch.ops.abcc.soft_dtw_forward,
                          _sdtw_args(univariate, torch.float32, True, -1, engine="triton", device=DEVICE))
    torch.library.opcheck(torch.ops.abcc.soft_dtw_backward,
                          _sdtw_backward_args(univariate, torch.float32, True, engine="triton", variant=-1,
                                              device=DEVICE))


def _attention_inputs(grad=True, seed=2, Na=5, Nb=3, D=32):
    g = _gen(seed)
    return [torch.randn(1, 2, n, D, generator=g).to(DEVICE).requires_grad_(grad) for n in (Na, Na, Na, Nb, Nb, Nb)]


@needs_triton
@pytest.mark.parametrize("masked", [False, True])
def test_opcheck_two_stream_attention(masked):
    prim = _attention_inputs()
    keep = torch.tensor([[1, 1, 0, 1, 1, 1, 0, 1]], dtype=torch.int8, device=DEVICE) if masked else None
    scale = 32 ** -0.5
    torch.library.opcheck(torch.ops.abcc.two_stream_attention_forward, (*prim, keep, scale, "triton"))
    tangents = [t.detach() for t in _attention_inputs(grad=False, seed=3)]
    torch.library.opcheck(torch.ops.abcc.two_stream_attention_forward_jvp, (*prim, *tangents, keep, scale, "triton"))
    plain = [p.detach() for p in prim]
    oa, ob, lse = torch.ops.abcc.two_stream_attention_forward(*plain, keep, scale, "triton")
    doa, dob = torch.randn_like(oa), torch.randn_like(ob)
    torch.library.opcheck(torch.ops.abcc.two_stream_attention_backward,
                          (*plain, oa, ob, lse, doa, dob, keep, scale, "triton"))


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_meanflow(dtype):
    g = _gen(4)
    B, T, W = 3, 4, 8
    mk = lambda *s, grad=False: torch.randn(*s, generator=g, dtype=dtype).to(DEVICE).requires_grad_(grad)  # noqa: E731
    r, tau = torch.rand(B, generator=g, dtype=dtype).to(DEVICE), torch.rand(B, generator=g, dtype=dtype).to(DEVICE)
    torch.library.opcheck(torch.ops.abcc.meanflow_target, (mk(B, W, grad=True), mk(B, W), mk(B, W), r, tau, 1e-3, 1.0,
                                                           "triton"))
    taus = torch.linspace(0, 1, T, dtype=dtype).to(DEVICE).expand(B, T)
    for x0_sei in (None, mk(B, W, grad=True)):
        torch.library.opcheck(torch.ops.abcc.meanflow_integrate,
                              (mk(B, W, grad=True), x0_sei, mk(B, T, W, grad=True), mk(B, T, W, grad=True), r * 0, taus,
                               True, "triton"))


# ---------------------------------------------------------------------------------------------
# torch.compile(fullgraph=True): no graph break, the custom op in the graph, eager == compiled
# ---------------------------------------------------------------------------------------------
def _recording(backend: str, seen: set):
    inner = torch._dynamo.lookup_backend(backend)

    def compiler(gm, example_inputs):
        seen.update(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return inner(gm, example_inputs)

    return compiler


def _check_compiled(module, args, expect_op, backend="aot_eager", rtol=1e-5, atol=1e-6):
    seen: set = set()
    compiled = torch.compile(module, backend=_recording(backend, seen), fullgraph=True)
    params = [p for p in module.parameters()]
    out_c = compiled(*args)
    grads_c = torch.autograd.grad(out_c, params)
    out_e = module(*args)
    grads_e = torch.autograd.grad(out_e, params)
    assert any(expect_op in s for s in seen), f"{expect_op} not in the compiled graph: {sorted(seen)}"
    torch.testing.assert_close(out_c, out_e, rtol=rtol, atol=atol)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, rtol=rtol * 10, atol=atol * 10)
    return out_c


class _Loss(torch.nn.Module):
    """A projection, then one of the ops as the loss (what a model using it compiles to)."""

    def __init__(self, fn, d=3):
        super().__init__()
        self.fn = fn
        self.proj = torch.nn.Linear(d, d, dtype=torch.float64)

    def forward(self, x, y):
        return self.fn(self.proj(x), y)


def _pair(B=4, N=9, M=7, d=3, seed=5):
    g = _gen(seed)
    return torch.randn(B, N, d, generator=g, dtype=torch.float64), torch.randn(B, M, d, generator=g, dtype=torch.float64)


_SOFT_DTW_LOSSES = {
    "soft_dtw_ragged_band": lambda h, y: ops.soft_dtw(h[..., 0], y[..., 0], 0.3, bandwidth=1.0,
                                                       lengths_x=torch.tensor([9, 5, 8, 9]),
                                                       lengths_y=[7, 7, 4, 6]).sum(),
    "soft_dtw_multivariate_normalized": lambda h, y: ops.soft_dtw(h, y, 0.3, normalize=True).sum(),
    "soft_dtw_cost": lambda h, y: ops.soft_dtw_cost(torch.cdist(h, y) ** 2, 0.3).sum(),
    "soft_dtw_alignment": lambda h, y: (ops.soft_dtw_alignment(h, y, 0.3) * torch.cdist(h, y)).sum(),
    "dilate": lambda h, y: ops.dilate(h[..., 0], y[..., 0], 0.5, 0.3,
                                      lengths=(torch.tensor([9, 6, 9, 7]), torch.tensor([7, 6, 3, 7])))[0],
}


@needs_cpu
@pytest.mark.parametrize("case", list(_SOFT_DTW_LOSSES))
def test_compiled_soft_dtw_family_matches_eager(case):
    x, y = _pair()
    expect = "abcc.soft_dtw_forward"
    _check_compiled(_Loss(_SOFT_DTW_LOSSES[case]), (x, y), expect)


@needs_cpu
@pytest.mark.parametrize("univariate", [True, False], ids=["sequences", "cost"])
def test_compiled_soft_dtw_with_inductor(univariate):
    x, y = _pair(seed=6)
    fn = (lambda h, y: ops.soft_dtw(h[..., 0], y[..., 0], 0.3).sum()) if univariate else \
        (lambda h, y: ops.soft_dtw(h, y, 0.3).sum())
    _check_compiled(_Loss(fn), (x, y), "abcc.soft_dtw_forward", backend="inductor")


@needs_cpu
def test_compiled_checks_raise_at_run_time():
    """Under torch.compile the data-dependent checks are graph assertions (RuntimeError, the same
    text without the counts): a NaN or a length out of range still stops the call."""
    fn = torch.compile(lambda x, y, n: ops.soft_dtw(x, y, 0.3, lengths_x=n), backend="aot_eager", fullgraph=True)
    x, y = torch.randn(2, 6), torch.randn(2, 5)
    fn(x, y, torch.tensor([6, 4]))
    with pytest.raises(RuntimeError, match="x contains NaN or Inf"):
        fn(torch.tensor([[0.0, float("nan"), 1, 2, 3, 4]] * 2), y, torch.tensor([6, 4]))
    with pytest.raises(RuntimeError, match=r"lengths_x must lie in \[1, 6\]"):
        fn(x, y, torch.tensor([7, 4]))


class _Attention(torch.nn.Module):
    def __init__(self, dim=64, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv_a, self.qkv_b = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, 3 * dim)

    def _split(self, x):
        B, N, _ = x.shape
        return x.view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, xa, xb, mask=None):
        qa, ka, va = self._split(self.qkv_a(xa))
        qb, kb, vb = self._split(self.qkv_b(xb))
        oa, ob = ops.two_stream_attention(qa, ka, va, qb, kb, vb, key_padding_mask=mask, backend="triton")
        return (oa.pow(2).sum() + ob.sin().sum())


@needs_triton
def test_compiled_two_stream_attention_matches_eager():
    torch.manual_seed(0)
    model = _Attention().to(DEVICE)
    xa, xb = torch.randn(2, 7, 64, device=DEVICE), torch.randn(2, 5, 64, device=DEVICE)
    mask = torch.ones(2, 12, dtype=torch.bool, device=DEVICE)
    mask[1, 3] = mask[0, 9] = False
    tsa.launch_counts.clear()
    _check_compiled(model, (xa, xb, mask), "abcc.two_stream_attention_forward", rtol=1e-4, atol=1e-5)
    assert tsa.launch_counts[("triton", "backward")] >= 1


class _Flow(torch.nn.Module):
    def __init__(self, W=8):
        super().__init__()
        self.lin = torch.nn.Linear(W, W)

    def forward(self, x0, v, du, r, tau, taus):
        u = self.lin(x0)
        loss, _, _ = ops.meanflow_target(u, v, du, r, tau, backend="triton")
        us = u[:, None, :] * taus[None, :, None]
        frames, _, sei = ops.meanflow_integrate(x0, us, -us, r, taus, backend="triton")
        return loss + frames.pow(2).mean() + sei.mean()


@needs_triton
def test_compiled_meanflow_matches_eager():
    g = _gen(7)
    x0, v, du = (torch.randn(3, 8, generator=g).to(DEVICE) for _ in range(3))
    r, tau = torch.rand(3, generator=g).to(DEVICE), torch.rand(3, generator=g).to(DEVICE)
    taus = torch.linspace(0, 1, 4, device=DEVICE)
    out = _check_compiled(_Flow().to(DEVICE), (x0, v, du, r * 0, tau, taus), "abcc.meanflow_target")
    assert torch.isfinite(out)


# ---------------------------------------------------------------------------------------------
# routes: eager Function, the op under a dispatch mode, forward AD around compiled code
# ---------------------------------------------------------------------------------------------
class _RecordOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@needs_cpu
def test_eager_calls_take_the_function_and_dispatch_modes_see_the_op():
    x = torch.randn(2, 6, requires_grad=True)
    y = torch.randn(2, 5)
    eager = ops.soft_dtw(x, y, 0.3)
    assert type(eager.grad_fn).__name__.startswith("_SoftDTWFunction")  # no dispatcher round trip
    mode = _RecordOps()
    with mode:
        traced = ops.soft_dtw(x, y, 0.3)
    assert any("abcc.soft_dtw_forward" in s for s in mode.seen)
    torch.testing.assert_close(traced, eager)
    (gx_e,) = torch.autograd.grad(eager.sum(), x)
    (gx_t,) = torch.autograd.grad(traced.sum(), x)
    torch.testing.assert_close(gx_t, gx_e)


@needs_triton
def test_forward_ad_around_compiled_code_keeps_the_tangent():
    """A function compiled without forward AD, then called on dual tensors, and a compiled function
    that opens the dual level itself: both recompile onto the eager route (a custom op reached
    with dual inputs would return no tangent), one fused launch each."""
    xs = _attention_inputs(grad=False, seed=8)
    ts = [t.detach() for t in _attention_inputs(grad=False, seed=9)]

    def f(*a):
        oa, ob = ops.two_stream_attention(*a, backend="triton")
        return oa.sin(), ob

    ref = torch.func.jvp(lambda *a: (lambda o: (o[0].sin(), o[1]))(tsa.two_stream_attention_reference(*a)),
                         tuple(x.double() for x in xs), tuple(t.double() for t in ts))[1]
    compiled = torch.compile(f, backend="aot_eager")
    compiled(*xs)
    tsa.launch_counts.clear()
    with fwAD.dual_level():
        out = compiled(*[fwAD.make_dual(x, t) for x, t in zip(xs, ts)])
        tangent = fwAD.unpack_dual(out[0]).tangent
    assert tangent is not None and (tangent.double() - ref[0]).abs().max() < 1e-4
    assert tsa.launch_counts[("triton", "forward_jvp")] == 1

    def g(*a):
        with fwAD.dual_level():
            o = f(*[fwAD.make_dual(x, t) for x, t in zip(a, ts)])
            return fwAD.unpack_dual(o[1]).tangent

    tsa.launch_counts.clear()
    tangent_b = torch.compile(g, backend="aot_eager")(*xs)
    assert (tangent_b.double() - ref[1]).abs().max() < 1e-4
    assert tsa.launch_counts[("triton", "forward_jvp")] == 1


@needs_cpu
def test_forward_ad_through_a_native_soft_dtw_raises_instead_of_dropping_the_tangent():
    x, y, t = torch.randn(2, 6), torch.randn(2, 5), torch.randn(2, 6)
    with pytest.raises(RuntimeError, match="setup_context"):  # functorch: an old-style Function
        torch.func.jvp(lambda a: ops.soft_dtw(a, y, 0.3, backend="cpu"), (x,), (t,))
    with fwAD.dual_level(), pytest.raises(NotImplementedError, match="jvp"):
        ops.soft_dtw(fwAD.make_dual(x, t), y, 0.3, backend="cpu")
    compiled = torch.compile(lambda a: ops.soft_dtw(a, y, 0.3, backend="cpu"), backend="aot_eager")
    with fwAD.dual_level(), pytest.raises(NotImplementedError, match="jvp"):
        compiled(fwAD.make_dual(x, t))
    assert _library.route(x) == "eager" and not _library.forward_ad_active()


# ---------------------------------------------------------------------------------------------
# the registry: backends() unchanged, every declared custom op exists, every claim holds
# ---------------------------------------------------------------------------------------------
def test_registry_feeds_backends_and_the_report():
    assert tuple(ops.backends()) == ops.BACKENDS
    report = ops.backends_report()
    for op in _registry.ops():
        assert f"  {op}" in report
        for name, spec in _registry.engines(op).items():
            assert name in ops.BACKENDS and spec.op == op
            for qual in spec.library:
                ns, op_name = qual.split("::")
                assert hasattr(getattr(torch.ops, ns), op_name), qual
    assert set(_registry.ops()) >= {"soft_dtw", "soft_dtw_cost", "soft_dtw_alignment", "dilate",
                                    "two_stream_attention", "meanflow_target", "meanflow_integrate"}
    assert _registry.implemented("soft_dtw")[:2] == ("reference", "cpu")
    with pytest.raises(KeyError, match="no engines declared"):
        _registry.engines("nonsense")


def _claim_fn(op, backend, dtype):
    """(fn of one tensor -> tensor, a CPU input) calling `op` on `backend`."""
    g = _gen(11)
    y = torch.randn(2, 5, generator=g, dtype=dtype)
    x = torch.randn(2, 6, generator=g, dtype=dtype)
    if op == "soft_dtw":
        return (lambda a: ops.soft_dtw(a, y, 0.5, backend=backend)), x
    if op == "soft_dtw_cost":
        return (lambda a: ops.soft_dtw_cost((a[:, :, None] - y[:, None]) ** 2, 0.5, backend=backend)), x
    if op == "soft_dtw_alignment":
        return (lambda a: ops.soft_dtw_alignment(a, y, 0.5, backend=backend)), x
    if op == "dilate":
        return (lambda a: ops.dilate(a, y, 0.5, 0.5, reduction="none", backend=backend)[0]), x
    if op == "two_stream_attention":
        xs = [torch.randn(1, 1, 4, 32, generator=g, dtype=dtype) for _ in range(6)]
        return (lambda a: torch.cat(ops.two_stream_attention(a, *xs[1:], backend=backend), 2)), xs[0]
    u = torch.randn(3, 4, generator=g, dtype=dtype)
    if op == "meanflow_target":  # p = 0: a constant weight, so the stop-gradient does not matter
        return (lambda a: ops.meanflow_target(a, u, u, 0.0, 0.5, p=0.0, reduction="none", backend=backend)[0]), \
            u.clone()
    taus = torch.tensor([0.0, 0.5, 1.0])
    frames = torch.ones(1, 3, 1, dtype=dtype)
    return (lambda a: ops.meanflow_integrate(a, (a * a)[:, None] * frames, u[:, None] * frames, 0.0, taus,
                                             backend=backend)[0]), u.clone()


def _runnable_here():
    out = []
    for op in _registry.ops():
        for name, spec in _registry.engines(op).items():
            runs = name == "reference" or (name == "cpu" and HAS_CPU) or \
                (name == "triton" and triton_available() and ops.backends()["triton"].available)
            if runs and name in _registry.implemented(op):
                out.append(pytest.param(op, name, id=f"{op}-{name}"))
    return out


@pytest.mark.parametrize("op, backend", _runnable_here())
def test_registry_claims_hold(op, backend):
    spec = _registry.spec(op, backend)
    for dtype in spec.dtypes:  # every dtype it says it takes runs, and gives that dtype's family back
        fn, x = _claim_fn(op, backend, dtype)
        assert torch.isfinite(fn(x)).all(), dtype
    # derivatives against central differences: in float64 where the engine computes in it,
    # else (a float32 kernel) with a coarse step and tolerance
    dt = torch.float64 if torch.float64 in spec.dtypes else torch.float32
    exact = dt == torch.float64 and backend in ("reference", "cpu")
    eps, tol = (1e-6, 1e-6) if exact else (1e-2, 2e-2)
    fn, x = _claim_fn(op, backend, dt)
    t = torch.randn(x.shape, generator=_gen(12), dtype=dt)
    fd = (fn(x + eps * t) - fn(x - eps * t)) / (2 * eps)
    if spec.backward:
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(xg), xg, torch.ones_like(fd))
        assert abs(float((grad * t).sum()) - float(fd.sum())) < tol * (1 + float(fd.abs().sum()))
    if spec.jvp:
        _, tangent = torch.func.jvp(fn, (x,), (t,))
        torch.testing.assert_close(tangent, fd, rtol=tol, atol=tol)
    if spec.double_backward:
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(xg).sum(), xg, create_graph=True)
        (second,) = torch.autograd.grad(grad.pow(2).sum(), xg, allow_unused=True)  # None: grad constant in x
        assert second is None or torch.isfinite(second).all()
