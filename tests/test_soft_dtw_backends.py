"""The GPU-capable backends of soft-DTW / DILATE (`triton`, `cuda`) against the float64
reference and the cpu backend: one set of small-shape checks, run for each backend that is
available here.

Without a GPU the Triton kernels run under the interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), so shapes stay tiny; the cuda backend needs a CUDA device and abcc_fast._C
built with CUDA, and is skipped otherwise (CI compiles its kernels but cannot run them).
Tolerances: the kernels compute in float32, the oracle in float64 (docs/results.md, "Precision": value
rel. error <= 1e-5, |E - E_ref| <= 1e-4 at gamma >= 0.1 and <= 1e-3 at gamma = 0.01; gradients
are checked with the same scale). Backend-specific checks stay in test_soft_dtw_triton.py
(ahead-of-time compilation for sm_90) and test_soft_dtw_cuda.py (long sequences, memory).
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from abcc_fast.ops import backends
from abcc_fast.ops.soft_dtw import dilate, soft_dtw, soft_dtw_alignment, soft_dtw_cost
from sdtw_helpers import _close, _grads, _leaf, _pair, _tol



class Target:
    def __init__(self, name: str, device: str):
        self.name, self.device = name, device


def _target_params():
    status = backends()
    out = []
    for name in ("triton", "cuda"):
        ok = status[name].available and (name != "cuda" or torch.cuda.is_available())
        device = "cuda" if torch.cuda.is_available() else "cpu"
        out.append(pytest.param(Target(name, device), id=name,
                                marks=pytest.mark.skipif(not ok, reason=f"{name} backend unavailable: "
                                                         f"{status[name].reason}")))
    return out


@pytest.fixture(scope="module", params=_target_params())
def target(request):
    return request.param


# ---------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,M", [(1, 1), (1, 5), (5, 16), (33, 16)])
@pytest.mark.parametrize("gamma", [1.0, 0.1, 0.01])
def test_value_matches_reference_and_cpu(target, N, M, gamma):
    x, y = _pair(3, N, M, seed=N * 100 + M)
    got = soft_dtw(x.to(target.device), y.to(target.device), gamma, backend=target.name)
    ref = soft_dtw(x.double(), y.double(), gamma, backend="reference")
    cpu = soft_dtw(x, y, gamma, backend="cpu")
    assert got.dtype == torch.float32 and got.shape == (3,)
    _close(got, ref, atol=1e-5, rtol=1e-5, what="value vs reference")
    _close(got, cpu, atol=1e-5, rtol=1e-5, what="value vs cpu")


def test_float64_inputs_keep_their_dtype(target):
    x, y = _pair(2, 7, 5)
    got = soft_dtw(x.double().to(target.device), y.double().to(target.device), 0.1, backend=target.name)
    assert got.dtype == torch.float64
    _close(got, soft_dtw(x.double(), y.double(), 0.1, backend="reference"), atol=1e-5)


def test_multivariate_goes_through_the_cost_matrix(target):
    x, y = _pair(2, 9, 6, d=3)
    got, gx, gy = _grads(lambda a, b, be: soft_dtw(a, b, 0.1, backend=be), x, y, target.name, torch.float32, target.device)
    ref, rx, ry = _grads(lambda a, b, be: soft_dtw(a, b, 0.1, backend=be), x, y, "reference", torch.float64, "cpu")
    _close(got, ref, atol=1e-5, what="value")
    _close(gx, rx, atol=1e-4, rtol=1e-4, what="dx")
    _close(gy, ry, atol=1e-4, rtol=1e-4, what="dy")


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,M,gamma", [(1, 4, 1.0), (5, 1, 0.1), (5, 7, 1.0), (5, 7, 0.01), (16, 16, 0.1),
                                       (33, 16, 1.0), (33, 16, 0.1), (33, 16, 0.01)])
def test_gradients_match_reference(target, N, M, gamma):
    x, y = _pair(2, N, M, seed=7 + N + M)
    w = torch.tensor([0.7, -1.3])
    fn = lambda a, b, be: soft_dtw(a, b, gamma, backend=be)  # noqa: E731
    got, gx, gy = _grads(fn, x, y, target.name, torch.float32, target.device, w)
    ref, rx, ry = _grads(fn, x, y, "reference", torch.float64, "cpu", w)
    _close(got, ref, atol=1e-5, what="value")
    tol = _tol(gamma) * (1 + float(rx.abs().max()))
    _close(gx, rx, atol=tol, rtol=1e-4, what="dx")
    _close(gy, ry, atol=tol, rtol=1e-4, what="dy")


@pytest.mark.parametrize("gamma", [0.1, 0.01])
def test_alignment_and_cost_gradient(target, gamma):
    x, y = _pair(2, 16, 11, seed=3)
    E = soft_dtw_alignment(x.to(target.device), y.to(target.device), gamma, backend=target.name)
    E_ref = soft_dtw_alignment(x.double(), y.double(), gamma, backend="reference")
    _close(E, E_ref, atol=_tol(gamma), rtol=0, what="E")
    assert float(E.min()) >= 0.0 and float(E.max()) <= 1.0 + 1e-5
    # D-mode autograd: dR/dD = E
    D = torch.cdist(x.unsqueeze(-1), y.unsqueeze(-1)) ** 2
    Dg = D.to(target.device).requires_grad_(True)
    soft_dtw_cost(Dg, gamma, backend=target.name).sum().backward()
    _close(Dg.grad, E_ref, atol=_tol(gamma), rtol=0, what="dR/dD")


# ---------------------------------------------------------------------------------------------
# DILATE
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,M,gamma", [(5, 5, 0.01), (16, 16, 0.1), (16, 16, 0.01), (9, 16, 0.1)])
def test_dilate_matches_reference_and_cpu(target, N, M, gamma):
    x, y = _pair(3, N, M, seed=11 * N + M)
    outs = {}
    runs = ((target.name, torch.float32, target.device), ("reference", torch.float64, "cpu"), ("cpu", torch.float32, "cpu"))
    for be, dt, dev in runs:
        xg = _leaf(x, dev, dt)
        yg = _leaf(y, dev, dt)
        loss, shape, temporal = dilate(xg, yg, alpha=0.4, gamma=gamma, backend=be)
        loss.backward()
        outs[be] = (loss.detach(), shape.detach(), temporal.detach(), xg.grad, yg.grad)
    got, ref, cpu = outs[target.name], outs["reference"], outs["cpu"]
    for k, name in enumerate(("loss", "shape", "temporal")):
        _close(got[k], ref[k], atol=1e-5, rtol=1e-5, what=name)
        _close(got[k], cpu[k], atol=1e-5, rtol=1e-5, what=name + " vs cpu")
    tol = _tol(gamma) * (1 + float(ref[3].abs().max()))
    _close(got[3], ref[3], atol=tol, rtol=1e-4, what="dpred")
    _close(got[4], ref[4], atol=tol, rtol=1e-4, what="dtarget")


@pytest.mark.parametrize("batched", [False, True])
def test_dilate_custom_omega(target, batched):
    B, N, M = 2, 7, 9
    x, y = _pair(B, N, M, seed=5)
    g = torch.Generator().manual_seed(9)
    omega = torch.rand((B, N, M) if batched else (N, M), generator=g)
    outs = {}
    for be, dt, dev in ((target.name, torch.float32, target.device), ("reference", torch.float64, "cpu")):
        xg = _leaf(x, dev, dt)
        yg = _leaf(y, dev, dt)
        loss, shape, temporal = dilate(xg, yg, 0.5, 0.1, omega=omega.to(device=dev, dtype=dt), reduction="none",
                                       backend=be)
        (loss * torch.tensor([1.0, -2.0], dtype=dt, device=dev)).sum().backward()
        outs[be] = (loss.detach(), temporal.detach(), xg.grad, yg.grad)
    got, ref = outs[target.name], outs["reference"]
    _close(got[0], ref[0], atol=1e-5, what="loss")
    _close(got[1], ref[1], atol=1e-5, what="temporal")
    _close(got[2], ref[2], atol=1e-4, rtol=1e-4, what="dpred")
    _close(got[3], ref[3], atol=1e-4, rtol=1e-4, what="dtarget")


# ---------------------------------------------------------------------------------------------
# lengths and band
# ---------------------------------------------------------------------------------------------
def test_lengths_padding_gets_exactly_zero_gradient(target):
    B, N, M = 3, 12, 10
    x, y = _pair(B, N, M, seed=21)
    lx, ly = torch.tensor([12, 5, 1]), torch.tensor([10, 7, 3])
    xg = _leaf(x, target.device, torch.float32)
    yg = _leaf(y, target.device, torch.float32)
    loss, _, _ = dilate(xg, yg, 0.5, 0.1, lengths=(lx, ly), reduction="sum", backend=target.name)
    loss.backward()
    for b in range(B):
        assert bool((xg.grad[b, int(lx[b]):] == 0).all()) and bool((yg.grad[b, int(ly[b]):] == 0).all())
        # each pair equals the unpadded computation
        xb = x[b:b + 1, :int(lx[b])].double().requires_grad_(True)
        yb = y[b:b + 1, :int(ly[b])].double().requires_grad_(True)
        lb, _, _ = dilate(xb, yb, 0.5, 0.1, reduction="sum", backend="reference")
        lb.backward()
        _close(xg.grad[b, :int(lx[b])], xb.grad[0], atol=1e-4, rtol=1e-4, what=f"dx pair {b}")
        _close(yg.grad[b, :int(ly[b])], yb.grad[0], atol=1e-4, rtol=1e-4, what=f"dy pair {b}")
    v = soft_dtw(x.to(target.device), y.to(target.device), 0.1, lengths_x=lx, lengths_y=ly, backend=target.name)
    v_ref = soft_dtw(x.double(), y.double(), 0.1, lengths_x=lx, lengths_y=ly, backend="reference")
    _close(v, v_ref, atol=1e-5, what="value with lengths")


@pytest.mark.parametrize("N,M,bw", [(12, 12, 0.0), (13, 8, 0.5), (8, 13, 1.5)])
def test_band_matches_reference(target, N, M, bw):
    x, y = _pair(2, N, M, seed=N + 3 * M)
    fn = lambda a, b, be: soft_dtw(a, b, 0.1, bandwidth=bw, backend=be)  # noqa: E731
    got, gx, gy = _grads(fn, x, y, target.name, torch.float32, target.device)
    ref, rx, ry = _grads(fn, x, y, "reference", torch.float64, "cpu")
    cpu = soft_dtw(x, y, 0.1, bandwidth=bw, backend="cpu")
    _close(got, ref, atol=1e-5, what="value")
    _close(got, cpu, atol=1e-5, what="value vs cpu")
    _close(gx, rx, atol=1e-4, rtol=1e-4, what="dx")
    _close(gy, ry, atol=1e-4, rtol=1e-4, what="dy")
    E = soft_dtw_alignment(x.to(target.device), y.to(target.device), 0.1, bandwidth=bw, backend=target.name)
    i = torch.arange(N).view(N, 1).double()
    j = torch.arange(M).view(1, M).double()
    outside = (i * (M - 1) - j * (N - 1)).abs() > bw * max(N - 1, M - 1)
    assert bool((E.cpu()[:, outside] == 0).all()), "out-of-band cells must have exactly zero alignment"


# ---------------------------------------------------------------------------------------------
# property test over shapes, lengths, band and temperature
# ---------------------------------------------------------------------------------------------
@given(B=st.integers(1, 3), N=st.integers(1, 12), M=st.integers(1, 12), gamma=st.sampled_from([1.0, 0.1, 0.01]),
       use_lengths=st.booleans(), band=st.sampled_from([None, 1.0, 3.0]), seed=st.integers(0, 2 ** 16))
def test_property_dilate_matches_reference(target, B, N, M, gamma, use_lengths, band, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, generator=g)
    y = torch.randn(B, M, generator=g)
    if use_lengths:
        lx = torch.randint(1, N + 1, (B,), generator=g)
        ly = torch.randint(1, M + 1, (B,), generator=g)
    else:
        lx, ly = torch.full((B,), N), torch.full((B,), M)
    outs = {}
    for be, dt, dev in ((target.name, torch.float32, target.device), ("reference", torch.float64, "cpu")):
        xg = _leaf(x, dev, dt)
        yg = _leaf(y, dev, dt)
        loss, shape, temporal = dilate(xg, yg, 0.5, gamma, lengths=(lx, ly), bandwidth=band, reduction="sum",
                                       backend=be)
        loss.backward()
        outs[be] = (shape.detach(), temporal.detach(), xg.grad, yg.grad)
    got, ref = outs[target.name], outs["reference"]
    _close(got[0], ref[0], atol=1e-5 * B, rtol=1e-5, what="shape")
    _close(got[1], ref[1], atol=1e-5 * B, rtol=1e-5, what="temporal")
    tol = _tol(gamma) * (1 + float(ref[2].abs().max()))
    _close(got[2], ref[2], atol=tol, rtol=1e-4, what="dx")
    _close(got[3], ref[3], atol=tol, rtol=1e-4, what="dy")
    for b in range(B):
        assert bool((got[2][b, int(lx[b]):] == 0).all()) and bool((got[3][b, int(ly[b]):] == 0).all())


