"""Multivariate soft-DTW with the cost computed inside the cpu sweeps (csrc/soft_dtw/soft_dtw_features.h):
x [B, N, d], y [B, M, d] with d > 1 never build the [B, N, M] cost tensor, and the backward gives
dL/dx, dL/dy directly. Checked against the float64 reference (values, gradients, DILATE's temporal
term and its gradient) on both engines, and against the cost-matrix path it replaced.
"""
import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from abcc_fast.ops import backends
from abcc_fast.ops.soft_dtw import _CpuEngine, dilate, pairwise_sq_dist, soft_dtw, soft_dtw_cost

sdtw_module = importlib.import_module("abcc_fast.ops.soft_dtw")
needs_cpu = pytest.mark.skipif(not backends()["cpu"].available, reason="abcc_fast._C not built")


def _features(B, N, M, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, d, generator=g, dtype=dtype)
    y = 0.8 * torch.randn(B, M, d, generator=g, dtype=dtype) + 0.1
    return x, y


def _run(fn, x, y):
    """fn(x, y) -> [B] or tuple of [B]; values and the gradients of a weighted sum."""
    xg = x.clone().requires_grad_(True)
    yg = y.clone().requires_grad_(True)
    out = fn(xg, yg)
    out = torch.stack(out) if isinstance(out, tuple) else out
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view(out.shape)
    gx, gy = torch.autograd.grad((out * w).sum(), (xg, yg))
    return out.detach(), gx, gy


def _pinned(choice, fn):
    old = _CpuEngine.choice
    _CpuEngine.choice = choice
    try:
        return fn()
    finally:
        _CpuEngine.choice = old


@needs_cpu
@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 35), N=st.integers(1, 40), M=st.integers(1, 40), d=st.sampled_from([2, 3, 16, 21]),
       gamma=st.sampled_from([1.0, 0.1, 0.01]), band=st.sampled_from([None, 0.5, 2.5]),
       choice=st.sampled_from(["pairs", "lanes", "lanes_blocked"]), ragged=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fused_cost_matches_reference(B, N, M, d, gamma, band, choice, ragged, seed):
    """float64, either engine (lanes need equal lengths, so ragged batches run the pair engine), the
    lane engine's short series both with the whole-matrix tiles ("lanes") and with the diagonal
    blocks of long series ("lanes_blocked"): soft-DTW and DILATE values and gradients equal the
    reference's."""
    if band is not None and band < 0.5 and N != M:
        return
    x, y = _features(B, N, M, d, seed)
    g = torch.Generator().manual_seed(seed + 1)
    lx = torch.randint(1, N + 1, (B,), generator=g) if ragged else None
    ly = torch.randint(1, M + 1, (B,), generator=g) if ragged else None
    if ragged and band is not None and bool((lx != ly).any()) and band < 0.5:
        return

    def both(backend):
        sd = _run(lambda a, b: soft_dtw(a, b, gamma, bandwidth=band, lengths_x=lx, lengths_y=ly,
                                        backend=backend), x, y)
        dl = _run(lambda a, b: dilate(a, b, 0.5, gamma, bandwidth=band, lengths=(lx, ly) if ragged else None,
                                      reduction="none", backend=backend), x, y)
        return sd + dl

    got = _pinned(choice, lambda: both("cpu"))
    ref = both("reference")
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@needs_cpu
@pytest.mark.parametrize("choice", ["pairs", "lanes", "lanes_blocked"])
@pytest.mark.parametrize("B,N,M,d", [(17, 33, 20, 64), (3, 300, 257, 64), (20, 48, 48, 17), (16, 1, 9, 32)])
def test_fused_cost_agrees_with_cost_matrix_path_in_float32(choice, B, N, M, d):
    """The fused float32 kernels against the path they replace (pairwise_sq_dist, then soft_dtw_cost)
    and both against float64: measured 1e-7..3e-5 relative error for either path (gradients at
    gamma = 1, d = 64: float32 rounding of costs ~128 and values ~4,000; which path rounds luckier
    varies with the data), so each is held to 1e-4 and to the other."""
    x, y = _features(B, N, M, d, seed=B * N + d, dtype=torch.float32)
    fused = _pinned(choice, lambda: _run(lambda a, b: soft_dtw(a, b, 1.0, backend="cpu"), x, y))
    matrix = _pinned(choice, lambda: _run(lambda a, b: soft_dtw_cost(pairwise_sq_dist(a, b), 1.0, backend="cpu"),
                                          x, y))
    ref = _run(lambda a, b: soft_dtw(a, b, 1.0, backend="reference"), x.double(), y.double())
    for f, mat, r in zip(fused, matrix, ref):
        scale = r.abs().max().item()
        for other in (r, mat.double()):
            assert (f.double() - other).abs().max().item() <= 1e-4 * scale
        assert (mat.double() - r).abs().max().item() <= 1e-4 * scale


@needs_cpu
def test_fused_cost_builds_no_cost_matrix(monkeypatch):
    """d > 1 on the cpu backend computes the costs in the kernel: pairwise_sq_dist is never called."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the [B, N, M] cost matrix was built")

    monkeypatch.setattr(sdtw_module, "pairwise_sq_dist", forbidden)
    x, y = _features(4, 30, 25, 8, seed=0, dtype=torch.float32)
    xg = x.clone().requires_grad_(True)
    soft_dtw(xg, y, 0.5, backend="cpu").sum().backward()
    dilate(xg, y, 0.5, 0.1, backend="cpu")[0].backward()
    assert torch.isfinite(xg.grad).all()
    soft_dtw(x, y, 0.5, normalize=True, backend="cpu")


@needs_cpu
def test_fused_cost_padding_gets_zero_gradient():
    x, y = _features(5, 12, 10, 6, seed=4)
    lx, ly = torch.tensor([12, 3, 7, 1, 12]), torch.tensor([10, 10, 2, 5, 1])
    x[1, 3:] = float("nan")  # padding may hold anything
    _, gx, gy = _run(lambda a, b: soft_dtw(a, b, 0.1, lengths_x=lx, lengths_y=ly, backend="cpu"), x, y)
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
    for b in range(5):
        assert bool((gx[b, lx[b]:] == 0).all()) and bool((gy[b, ly[b]:] == 0).all())


@needs_cpu
@pytest.mark.parametrize("choice", ["pairs", "lanes", "lanes_blocked"])
@pytest.mark.parametrize("d", [1, 7, 64])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_of_one_input_only(choice, d, ragged, dtype):
    """The backward computes only the gradients autograd asks for (the kernels skip dL/dy when y
    needs none, and the buffers of gradients they write in full are not zeroed first): each one
    alone equals the same gradient computed with both, for soft-DTW and DILATE."""
    B, N, M = 19, 21, 17
    x, y = _features(B, N, M, d, seed=d, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    lx = torch.randint(1, N + 1, (B,), generator=g) if ragged else None
    ly = torch.randint(1, M + 1, (B,), generator=g) if ragged else None
    fns = (lambda a, b: soft_dtw(a, b, 0.3, lengths_x=lx, lengths_y=ly, backend="cpu"),
           lambda a, b: dilate(a, b, 0.5, 0.3, lengths=(lx, ly) if ragged else None, reduction="none",
                               backend="cpu")[0])
    w = torch.linspace(0.5, 1.5, B, dtype=dtype)
    for fn in fns:
        _, gx, gy = _pinned(choice, lambda: _run(fn, x, y))
        xg = x.clone().requires_grad_(True)
        (only_x,) = _pinned(choice, lambda: torch.autograd.grad((fn(xg, y) * w).sum(), (xg,)))
        yg = y.clone().requires_grad_(True)
        (only_y,) = _pinned(choice, lambda: torch.autograd.grad((fn(x, yg) * w).sum(), (yg,)))
        torch.testing.assert_close(only_x, gx, rtol=0, atol=0)
        torch.testing.assert_close(only_y, gy, rtol=0, atol=0)
        if ragged:
            for b in range(B):
                assert bool((only_x[b, lx[b]:] == 0).all()) and bool((only_y[b, ly[b]:] == 0).all())
