"""abcc_fast.nn: the loss modules against tslearn and pysdtw, against the ops, and their errors.

Peer comparisons run in float64 with a weighted sum as the loss (so each pair's gradient is
scaled differently) and require <= 1e-5 relative error (max |ours - theirs| / max |theirs|) in the
values and in both gradients. Both peers store the accumulated cost matrix R as float32 inside
their float64 modules (torch.Tensor(ndarray)), so the modules are compared at gamma >= 0.5 where
that rounding stays far below 1e-5; their float64 kernels themselves are compared at gamma = 0.1.
"""
import inspect
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence

from abcc_fast import ops
from abcc_fast.nn import DILATE, SoftDTW, SoftDTWDivergence
from abcc_fast.ops.soft_dtw import pairwise_sq_dist

pytestmark = pytest.mark.usefixtures("one_thread")

# (B, N, M, d, gamma, normalize)
CASES = [
    (3, 7, 9, 1, 1.0, False),
    (3, 7, 9, 1, 1.0, True),
    (4, 12, 8, 1, 0.5, False),
    (3, 9, 11, 3, 0.5, True),
    (2, 10, 10, 2, 1.0, False),
    (2, 16, 13, 4, 1.0, True),
]


def _ids(case):
    B, N, M, d, g, norm = case
    return f"B{B}-N{N}-M{M}-d{d}-g{g}-{'div' if norm else 'sdtw'}"


def _pair(B, N, M, d, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, d, generator=g, dtype=torch.float64)
    y = 0.8 * torch.randn(B, M, d, generator=g, dtype=torch.float64) + 0.1
    return x, y


def _run(loss_fn, x, y, seed=0):
    """Values [B] and the gradients of sum_b w_b value_b, with distinct weights w_b."""
    xg = x.clone().requires_grad_(True)
    yg = y.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba / tslearn deprecation chatter
        value = loss_fn(xg, yg)
    w = torch.linspace(0.5, 1.5, value.shape[0], dtype=value.dtype)
    (value * w).sum().backward()
    return value.detach(), xg.grad, yg.grad


def _rel(got, ref):
    got, ref = got.detach().double(), ref.detach().double()
    assert got.shape == ref.shape
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-300))


def _assert_same(ours, theirs, tol=1e-5, what=""):
    for name, a, b in zip(("value", "grad x", "grad y"), ours, theirs):
        err = _rel(a, b)
        assert err <= tol, f"{what} {name}: relative error {err:.3g} > {tol}"


# --------------------------------------------------------------------------------------------
# tslearn
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_tslearn(case):
    tsl = pytest.importorskip("tslearn.metrics")
    B, N, M, d, gamma, normalize = case
    x, y = _pair(B, N, M, d, seed=N + M + d)
    ours = _run(SoftDTW(gamma, normalize), x, y)
    theirs = _run(tsl.SoftDTWLossPyTorch(gamma, normalize), x, y)
    _assert_same(ours, theirs, what=f"tslearn {case}")


@pytest.mark.parametrize("radius", [1, 3])
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_tslearn_sakoe_chiba(radius, normalize):
    tsl = pytest.importorskip("tslearn.metrics")
    if "sakoe_chiba_radius" not in inspect.signature(tsl.SoftDTWLossPyTorch).parameters:
        pytest.skip("this tslearn's SoftDTWLossPyTorch has no Sakoe-Chiba band")
    x, y = _pair(3, 10, 10, 2, seed=radius)
    ours = _run(SoftDTW(1.0, normalize, bandwidth=radius), x, y)
    theirs = _run(tsl.SoftDTWLossPyTorch(1.0, normalize, global_constraint="sakoe_chiba",
                                         sakoe_chiba_radius=radius), x, y)
    _assert_same(ours, theirs, what=f"tslearn band {radius}")
    # the band changes the value: it is really applied on both sides
    free = _run(SoftDTW(1.0, normalize), x, y)[0]
    assert _rel(free, ours[0]) > 1e-3


@pytest.mark.parametrize("normalize", [False, True])
def test_matches_tslearn_dist_func(normalize):
    tsl = pytest.importorskip("tslearn.metrics")

    def l1(a, b):  # a non-default cost: sum_k |a_ik - b_jk|, [B, N, M]
        return (a[:, :, None, :] - b[:, None, :, :]).abs().sum(-1)

    x, y = _pair(2, 8, 11, 3, seed=7)
    ours = _run(SoftDTW(1.0, normalize, dist_func=l1), x, y)
    theirs = _run(tsl.SoftDTWLossPyTorch(1.0, normalize, dist_func=l1), x, y)
    _assert_same(ours, theirs, what="tslearn dist_func")


def test_matches_tslearn_kernel_small_gamma():
    """At gamma = 0.1 the modules differ by the peer's float32 storage of R (~1e-5); the peer's own
    float64 kernels agree with ours to ~1e-12."""
    mod = pytest.importorskip("tslearn.metrics.soft_dtw_loss_pytorch")
    fwd = getattr(mod, "_njit_soft_dtw_batch", None)
    bwd = getattr(mod, "_njit_soft_dtw_grad_batch", None)
    if fwd is None or bwd is None:
        pytest.skip("this tslearn version has no _njit_soft_dtw_batch / _njit_soft_dtw_grad_batch")
    x, y = _pair(3, 12, 9, 2, seed=3)
    D = pairwise_sq_dist(x, y).detach().requires_grad_(True)
    value = ops.soft_dtw_cost(D, 0.1)
    value.sum().backward()
    R = fwd(D.detach().numpy(), 0.1, np.ones(D.shape[1:], dtype=bool))
    E = bwd(D.detach().numpy(), R, 0.1)
    assert _rel(value, torch.from_numpy(R[:, -1, -1].copy())) < 1e-12
    assert _rel(D.grad, torch.from_numpy(E)) < 1e-10


# --------------------------------------------------------------------------------------------
# pysdtw
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [c for c in CASES if not c[5]], ids=_ids)
def test_matches_pysdtw(case):
    pysdtw = pytest.importorskip("pysdtw")
    B, N, M, d, gamma, _ = case
    x, y = _pair(B, N, M, d, seed=N * M + d)
    ours = _run(SoftDTW(gamma), x, y)
    theirs = _run(pysdtw.SoftDTW(gamma, use_cuda=False), x, y)
    _assert_same(ours, theirs, what=f"pysdtw {case}")


@pytest.mark.parametrize("bandwidth", [1, 2, 4])
def test_matches_pysdtw_bandwidth(bandwidth):
    pysdtw = pytest.importorskip("pysdtw")
    x, y = _pair(3, 12, 12, 1, seed=bandwidth)
    ours = _run(SoftDTW(1.0, bandwidth=bandwidth), x, y)
    theirs = _run(pysdtw.SoftDTW(1.0, use_cuda=False, bandwidth=bandwidth), x, y)
    _assert_same(ours, theirs, what=f"pysdtw bandwidth {bandwidth}")


def test_matches_pysdtw_packed_sequences():
    pysdtw = pytest.importorskip("pysdtw")
    x, y = _pair(4, 10, 12, 2, seed=11)
    lx, ly = torch.tensor([10, 7, 4, 9]), torch.tensor([12, 5, 12, 8])

    def packed(module):
        def fn(a, b):
            return module(pack_padded_sequence(a, lx, batch_first=True, enforce_sorted=False),
                          pack_padded_sequence(b, ly, batch_first=True, enforce_sorted=False))
        return fn

    ours = _run(packed(SoftDTW(1.0)), x, y)
    theirs = _run(packed(pysdtw.SoftDTW(1.0, use_cuda=False)), x, y)
    _assert_same(ours, theirs, what="pysdtw packed")
    # the same through explicit lengths, and padding gets no gradient
    by_len = _run(lambda a, b: SoftDTW(1.0)(a, b, lengths_x=lx, lengths_y=ly), x, y)
    _assert_same(by_len, ours, tol=1e-12, what="lengths vs packed")
    assert float(by_len[1][2, 4:].abs().max()) == 0.0 and float(by_len[2][1, 5:].abs().max()) == 0.0


# --------------------------------------------------------------------------------------------
# properties of the modules themselves
# --------------------------------------------------------------------------------------------
def test_softdtw_is_the_op_and_reductions():
    x, y = _pair(4, 9, 6, 2, seed=1)
    per_pair = ops.soft_dtw(x, y, 0.3)
    none = SoftDTW(0.3)(x, y)
    torch.testing.assert_close(none, per_pair, rtol=0, atol=0)
    torch.testing.assert_close(SoftDTW(0.3, reduction="mean")(x, y), per_pair.mean())
    torch.testing.assert_close(SoftDTW(0.3, reduction="sum")(x, y), per_pair.sum())
    # [B, N] is the univariate [B, N, 1]
    torch.testing.assert_close(SoftDTW(0.3)(x[..., 0], y[..., 0]), SoftDTW(0.3)(x[..., :1], y[..., :1]))


def test_divergence_module():
    x, y = _pair(3, 8, 10, 2, seed=2)
    div = SoftDTWDivergence(0.5)
    torch.testing.assert_close(div(x, y), SoftDTW(0.5, normalize=True)(x, y), rtol=0, atol=0)
    sxy, sxx, syy = (ops.soft_dtw(a, b, 0.5) for a, b in ((x, y), (x, x), (y, y)))
    torch.testing.assert_close(div(x, y), sxy - 0.5 * (sxx + syy))
    assert float(div(x, x).abs().max()) < 1e-10
    assert bool((div(x, y) > 0).all())
    assert "normalize" not in repr(div)


@pytest.mark.parametrize("normalize", [False, True])
def test_dist_func_path_equals_builtin_cost(normalize):
    def sq(a, b):
        return ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)

    x, y = _pair(3, 9, 7, 2, seed=4)
    lx, ly = [9, 6, 3], [7, 7, 2]
    got = _run(lambda a, b: SoftDTW(0.2, normalize, bandwidth=2, dist_func=sq)(a, b, lx, ly), x, y)
    want = _run(lambda a, b: SoftDTW(0.2, normalize, bandwidth=2)(a, b, lx, ly), x, y)
    _assert_same(got, want, tol=1e-10, what="dist_func")


def test_reference_and_native_backends_agree():
    x, y = _pair(2, 11, 8, 1, seed=5)
    for cls in (lambda b: SoftDTW(0.1, True, backend=b), lambda b: DILATE(0.3, 0.05, reduction="none", backend=b)):
        _assert_same(_run(cls("cpu"), x, y), _run(cls("reference"), x, y), tol=1e-9, what="backends")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("d", [1, 3])
def test_dilate_module_equals_op(reduction, d):
    x, y = _pair(4, 10, 10, d, seed=d)
    mod = DILATE(0.3, 0.05, reduction=reduction, return_components=True)

    def via(fn):
        xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        loss, shape, temporal = fn(xg, yg)
        (loss.sum() + 0.7 * temporal.sum()).backward()  # exercises both outputs' gradients
        return loss.detach(), shape.detach(), temporal.detach(), xg.grad, yg.grad

    got = via(mod)
    want = via(lambda a, b: ops.dilate(a, b, 0.3, 0.05, reduction=reduction))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    loss_only = DILATE(0.3, 0.05, reduction=reduction)(x, y)
    torch.testing.assert_close(loss_only, got[0], rtol=0, atol=0)


@pytest.mark.parametrize("N,M,d,gamma", [(20, 20, 1, 0.01), (16, 24, 1, 0.01), (12, 12, 3, 0.001), (30, 18, 2, 0.1)])
def test_dilate_gradients_finite(N, M, d, gamma):
    x, y = _pair(3, N, M, d, seed=N + M)
    x = (10 * x).requires_grad_(True)  # large costs relative to gamma: a stress for the softmin
    loss = DILATE(0.5, gamma)(x, y)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


@given(B=st.integers(1, 4), N=st.integers(1, 12), M=st.integers(1, 12), d=st.sampled_from([1, 2]),
       alpha=st.sampled_from([0.0, 0.5, 1.0]), gamma=st.sampled_from([0.01, 0.1, 1.0]),
       reduction=st.sampled_from(["mean", "sum", "none"]), ragged=st.booleans(), seed=st.integers(0, 2**16))
def test_property_modules_are_the_ops(B, N, M, d, alpha, gamma, reduction, ragged, seed):
    """Any shape, ragged or not: the modules give the ops' values and finite gradients."""
    x, y = _pair(B, N, M, d, seed)
    g = torch.Generator().manual_seed(seed)
    lx = torch.randint(1, N + 1, (B,), generator=g) if ragged else None
    ly = torch.randint(1, M + 1, (B,), generator=g) if ragged else None
    lengths = None if lx is None else (lx, ly)
    reduce = {"none": lambda t: t, "mean": torch.mean, "sum": torch.sum}[reduction]
    cases = [(lambda a, b: DILATE(alpha, gamma, reduction=reduction)(a, b, lengths),
              lambda a, b: ops.dilate(a, b, alpha, gamma, lengths=lengths, reduction=reduction)[0]),
             (lambda a, b: SoftDTW(gamma, True, reduction=reduction)(a, b, lx, ly),
              lambda a, b: reduce(ops.soft_dtw(a, b, gamma, lengths_x=lx, lengths_y=ly, normalize=True)))]
    for module_fn, op_fn in cases:
        got = _run(lambda a, b: module_fn(a, b).reshape(-1), x, y)
        want = _run(lambda a, b: op_fn(a, b).reshape(-1), x, y)
        for a, b in zip(got, want):
            assert bool(torch.isfinite(a).all())
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_precision_is_passed_to_the_ops(precision):
    x, y = (t.float() for t in _pair(2, 9, 7, 1, seed=13))
    for mod, op in ((SoftDTW(0.1, True, precision=precision),
                     lambda a, b: ops.soft_dtw(a, b, 0.1, normalize=True, precision=precision)),
                    (SoftDTW(0.1, dist_func=pairwise_sq_dist, precision=precision),
                     lambda a, b: ops.soft_dtw_cost(pairwise_sq_dist(a, b), 0.1, precision=precision)),
                    (DILATE(0.5, 0.1, reduction="none", precision=precision),
                     lambda a, b: ops.dilate(a, b, 0.5, 0.1, reduction="none", precision=precision)[0])):
        torch.testing.assert_close(mod(x, y), op(x, y), rtol=0, atol=0)
    out = SoftDTW(0.1, precision=precision)(x, y)
    assert out.dtype == torch.float32  # results come back in the inputs' dtype
    if precision == "float64":  # computed in float64, then rounded once
        torch.testing.assert_close(out, ops.soft_dtw(x.double(), y.double(), 0.1).float(), rtol=0, atol=0)


def test_dilate_legacy_batch_scale():
    B = 5
    x, y = _pair(B, 12, 12, 1, seed=9)
    new = _run(lambda a, b: DILATE(0.5, 0.01)(a, b).expand(1), x, y)
    old = _run(lambda a, b: DILATE(0.5, 0.01, legacy_batch_scale=True)(a, b).expand(1), x, y)
    torch.testing.assert_close(old[0], new[0], rtol=0, atol=0)
    torch.testing.assert_close(old[1], B * new[1])
    torch.testing.assert_close(old[2], B * new[2])


def test_dilate_omega_buffer_and_lengths():
    x, y = _pair(3, 8, 8, 1, seed=10)
    omega = torch.rand(8, 8, dtype=torch.float64)
    mod = DILATE(0.2, 0.1, omega=omega.float(), reduction="none")
    assert mod.to(torch.float64).omega.dtype == torch.float64
    torch.testing.assert_close(mod(x, y), ops.dilate(x, y, 0.2, 0.1, omega=omega, reduction="none")[0])
    lengths = torch.tensor([8, 5, 3])
    got = DILATE(0.2, 0.1, reduction="none")(x, y, lengths)
    packed = DILATE(0.2, 0.1, reduction="none")(
        pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False),
        pack_padded_sequence(y, lengths, batch_first=True, enforce_sorted=False))
    torch.testing.assert_close(got, ops.dilate(x, y, 0.2, 0.1, lengths=lengths, reduction="none")[0])
    torch.testing.assert_close(packed, got)


def test_dilate_original_call_shape():
    """The original call dilate_loss(outputs, targets, alpha, gamma, device) on [B, N, 1]."""
    outputs, targets = _pair(4, 20, 20, 1, seed=12)
    loss, shape, temporal = DILATE(0.5, 0.01, "cpu", return_components=True)(outputs, targets)
    assert loss.dim() == shape.dim() == temporal.dim() == 0
    torch.testing.assert_close(loss, 0.5 * shape + 0.5 * temporal)


# --------------------------------------------------------------------------------------------
# errors say what and how to fix
# --------------------------------------------------------------------------------------------
def test_errors():
    x, y = _pair(2, 6, 6, 1, seed=0)
    with pytest.raises(ValueError, match="gamma"):
        SoftDTW(0.0)
    with pytest.raises(ValueError, match="reduction"):
        SoftDTW(1.0, reduction="avg")
    with pytest.raises(ValueError, match="precision"):
        DILATE(precision="double")
    with pytest.raises(TypeError, match="dist_func=..."):
        SoftDTW(1.0, lambda a, b: a)  # pysdtw's positional order
    with pytest.raises(ValueError, match="dist_func=..."):
        SoftDTW(1.0, False, lambda a, b: a)  # tslearn's positional order
    with pytest.raises(ValueError, match="bandwidth"):
        SoftDTW(1.0, bandwidth=-1)
    assert SoftDTW(1.0, bandwidth=np.int64(2)).bandwidth == 2.0  # numpy scalars are numbers too
    with pytest.raises(TypeError, match="dist_func must be a callable"):
        SoftDTW(1.0, dist_func="l2")
    with pytest.raises(ValueError, match="single series"):
        SoftDTW(1.0)(x[0, :, 0], y[0, :, 0])
    with pytest.raises(ValueError, match=r"\[B, N, d\]"):
        SoftDTW(1.0)(x[None], y[None])
    with pytest.raises(ValueError, match="feature sizes differ"):
        SoftDTW(1.0)(x, torch.cat([y, y], -1))
    with pytest.raises(ValueError, match="feature size"):
        SoftDTW(1.0, dist_func=lambda a, b: a)(x, torch.cat([y, y], -1))
    with pytest.raises(ValueError, match=r"dist_func must return the cost matrix \[B, N, M\]"):
        SoftDTW(1.0, dist_func=lambda a, b: a)(x, y)
    with pytest.raises(TypeError, match="PackedSequence"):
        SoftDTW(1.0)(x.numpy(), y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use_cuda=True"):
            SoftDTW(1.0, use_cuda=True)(x, y)
        with pytest.raises(ValueError, match="device=cuda"):
            DILATE(0.5, 0.01, "cuda")(x, y)
    with pytest.raises(ValueError, match="alpha"):
        DILATE(1.5)
    with pytest.raises(ValueError, match="no warping path"):
        SoftDTW(1.0, bandwidth=0.2)(x, y[:, :4])
    packed = pack_padded_sequence(x, torch.tensor([6, 4]), batch_first=True)
    with pytest.raises(ValueError, match="carries its own lengths"):
        SoftDTW(1.0)(packed, y, lengths_x=[6, 4])
    with pytest.raises(ValueError, match="own lengths"):
        DILATE()(packed, y, lengths=[6, 6])
