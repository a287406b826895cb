"""soft_dtw / soft_dtw_cost / soft_dtw_alignment / dilate: reference and cpu backends.

The oracle is an independent float64 numpy implementation of Cuturi & Blondel (2017),
Algorithms 1 and 2 (row-major loops over a padded R, backward from stored R), not the
anti-diagonal scheme the backends use. The reference backend is checked against it; the cpu
backend is checked against the reference (float64) and, in fp32, against the precision targets
of docs/results.md ("Precision"). Gradients are also checked by finite differences (gradcheck).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import abcc_fast.ops as ops
from abcc_fast.ops.soft_dtw import default_omega, dilate, soft_dtw, soft_dtw_alignment, soft_dtw_cost

HAS_CPU = ops.backends()["cpu"].available
NATIVE = ["cpu"] if HAS_CPU else []
needs_cpu = pytest.mark.skipif(not HAS_CPU, reason="abcc_fast._C not built")


# ------------------------------------------------------------------------------------------
# oracle
# ------------------------------------------------------------------------------------------
def np_soft_dtw(D: np.ndarray, gamma: float):
    """Value R[N, M] and expected alignment E [N, M] (Cuturi & Blondel 2017, Alg. 1 and 2)."""
    N, M = D.shape
    R = np.full((N + 2, M + 2), np.inf)
    R[0, 0] = 0.0
    for i in range(1, N + 1):
        for j in range(1, M + 1):
            r = -np.array([R[i - 1, j - 1], R[i - 1, j], R[i, j - 1]]) / gamma
            rmax = r.max()
            R[i, j] = D[i - 1, j - 1] - gamma * (np.log(np.exp(r - rmax).sum()) + rmax)
    Dp = np.zeros((N + 2, M + 2))
    Dp[1:N + 1, 1:M + 1] = D
    E = np.zeros((N + 2, M + 2))
    E[N + 1, M + 1] = 1.0
    R[1:N + 1, M + 1] = -np.inf
    R[N + 1, 1:M + 1] = -np.inf
    R[N + 1, M + 1] = R[N, M]
    for j in range(M, 0, -1):
        for i in range(N, 0, -1):
            a = np.exp((R[i + 1, j] - R[i, j] - Dp[i + 1, j]) / gamma)
            b = np.exp((R[i, j + 1] - R[i, j] - Dp[i, j + 1]) / gamma)
            c = np.exp((R[i + 1, j + 1] - R[i, j] - Dp[i + 1, j + 1]) / gamma)
            E[i, j] = E[i + 1, j] * a + E[i, j + 1] * b + E[i + 1, j + 1] * c
    return R[N, M], E[1:N + 1, 1:M + 1]


def np_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1)
    y = y.reshape(len(y), -1)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def rand_pair(B, N, M, d=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape_x = (B, N) if d is None else (B, N, d)
    shape_y = (B, M) if d is None else (B, M, d)
    return torch.randn(shape_x, generator=g, dtype=dtype), torch.randn(shape_y, generator=g, dtype=dtype)


# ------------------------------------------------------------------------------------------
# reference vs oracle
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,M,d,gamma", [(1, 1, None, 1.0), (1, 6, None, 0.5), (7, 4, None, 0.1),
                                         (9, 9, 3, 1.0), (12, 5, 2, 0.01)])
def test_reference_matches_oracle(N, M, d, gamma):
    x, y = rand_pair(2, N, M, d)
    value = soft_dtw(x, y, gamma, backend="reference")
    E = soft_dtw_alignment(x, y, gamma, backend="reference")
    for b in range(2):
        v_np, E_np = np_soft_dtw(np_cost(x[b].numpy(), y[b].numpy()), gamma)
        assert value[b].item() == pytest.approx(v_np, rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(E[b].numpy(), E_np, atol=1e-10)


def test_dilate_reference_matches_original_definition():
    """Original DILATE: Omega_ij = (i-j)^2 / N^2, temporal = sum(E * Omega), mean over the batch."""
    N, gamma, alpha = 10, 0.1, 0.3
    x, y = rand_pair(3, N, N)
    loss, shape, temporal = dilate(x, y, alpha, gamma, backend="reference")
    idx = np.arange(N)
    omega = (idx[:, None] - idx[None, :]) ** 2 / N ** 2
    vals, temps = [], []
    for b in range(3):
        v, E = np_soft_dtw(np_cost(x[b].numpy(), y[b].numpy()), gamma)
        vals.append(v)
        temps.append((E * omega).sum())
    assert shape.item() == pytest.approx(np.mean(vals), rel=1e-10)
    assert temporal.item() == pytest.approx(np.mean(temps), rel=1e-9)
    assert loss.item() == pytest.approx(alpha * np.mean(vals) + (1 - alpha) * np.mean(temps), rel=1e-9)


def test_alignment_is_a_soft_path():
    x, y = rand_pair(1, 15, 11)
    E = soft_dtw_alignment(x, y, 0.05, backend="reference")[0]
    assert E.min() >= -1e-12 and E.max() <= 1 + 1e-12
    assert E[0, 0].item() == pytest.approx(1.0) and E[-1, -1].item() == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------
# cpu backend vs reference (float64), including lengths and bands
# ------------------------------------------------------------------------------------------
def _grads(fn, *inputs):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    total = out.sum() if out.dim() else out
    return out.detach(), torch.autograd.grad(total, inputs)


@needs_cpu
@given(B=st.integers(1, 3), N=st.integers(1, 14), M=st.integers(1, 14), d=st.sampled_from([None, 1, 3]),
       gamma=st.sampled_from([1.0, 0.1, 0.01]), seed=st.integers(0, 2**16),
       band=st.sampled_from([None, 0.5, 1.0, 2.5]), ragged=st.booleans())
def test_cpu_matches_reference_property(B, N, M, d, gamma, seed, band, ragged):
    x, y = rand_pair(B, N, M, d, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    lx = torch.randint(1, N + 1, (B,), generator=g) if ragged else None
    ly = torch.randint(1, M + 1, (B,), generator=g) if ragged else None
    kw = dict(bandwidth=band, lengths_x=lx, lengths_y=ly)
    n = lx if ragged else torch.full((B,), N)
    m = ly if ragged else torch.full((B,), M)
    if band is not None and band < 0.5 + 1e-9 and bool((n != m).any()) and band < 0.5:
        return
    v_ref, g_ref = _grads(lambda a, b: soft_dtw(a, b, gamma, backend="reference", **kw), x, y)
    v_cpu, g_cpu = _grads(lambda a, b: soft_dtw(a, b, gamma, backend="cpu", **kw), x, y)
    torch.testing.assert_close(v_cpu, v_ref, rtol=1e-9, atol=1e-9)
    for a, b in zip(g_cpu, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    dl = dict(bandwidth=band, lengths=(n, m))
    out_ref, gd_ref = _grads(lambda a, b: torch.stack(dilate(a, b, 0.5, gamma, backend="reference", **dl)), x, y)
    out_cpu, gd_cpu = _grads(lambda a, b: torch.stack(dilate(a, b, 0.5, gamma, backend="cpu", **dl)), x, y)
    torch.testing.assert_close(out_cpu, out_ref, rtol=1e-8, atol=1e-9)
    for a, b in zip(gd_cpu, gd_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


@needs_cpu
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_padding_gets_exactly_zero_gradient(backend):
    x, y = rand_pair(3, 9, 7, 2)
    lx, ly = torch.tensor([9, 4, 1]), torch.tensor([3, 7, 5])
    x = x.clone()
    x[1, 4:] = float("nan")  # padding may hold anything
    xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    loss, _, _ = dilate(xg, yg, 0.5, 0.1, lengths=(lx, ly), backend=backend)
    loss.backward()
    assert torch.isfinite(xg.grad).all() and torch.isfinite(yg.grad).all()
    for b in range(3):
        assert (xg.grad[b, lx[b]:] == 0).all() and (yg.grad[b, ly[b]:] == 0).all()
    # and the values equal those of the cut sequences
    for b in range(3):
        cut = soft_dtw(x[b:b + 1, :lx[b]], y[b:b + 1, :ly[b]], 0.1, backend=backend)
        full = soft_dtw(x[b:b + 1], y[b:b + 1], 0.1, lengths_x=lx[b:b + 1], lengths_y=ly[b:b + 1], backend=backend)
        torch.testing.assert_close(full, cut)


@needs_cpu
def test_cost_matrix_entry_point_and_alignment():
    x, y = rand_pair(2, 8, 6, 3)
    D = torch.cdist(x, y) ** 2
    for backend in ["reference", "cpu"]:
        Dg = D.clone().requires_grad_(True)
        v = soft_dtw_cost(Dg, 0.1, backend=backend)
        (G,) = torch.autograd.grad(v.sum(), Dg)
        E = soft_dtw_alignment(x, y, 0.1, backend=backend)
        torch.testing.assert_close(G, E, rtol=1e-6, atol=1e-9)
        for b in range(2):
            v_np, E_np = np_soft_dtw(D[b].numpy(), 0.1)
            assert v[b].item() == pytest.approx(v_np, rel=1e-9)
            np.testing.assert_allclose(E[b].numpy(), E_np, atol=1e-9)


@needs_cpu
def test_custom_omega_and_reductions():
    x, y = rand_pair(4, 10, 12)
    omega = torch.rand(10, 12, dtype=torch.float64)
    for red in ["none", "sum", "mean"]:
        ref = dilate(x, y, 0.7, 0.1, omega=omega, reduction=red, backend="reference")
        cpu = dilate(x, y, 0.7, 0.1, omega=omega, reduction=red, backend="cpu")
        for a, b in zip(cpu, ref):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    per_sample = torch.rand(4, 10, 12, dtype=torch.float64)
    ref = dilate(x, y, omega=per_sample, reduction="none", backend="reference")[2]
    cpu = dilate(x, y, omega=per_sample, reduction="none", backend="cpu")[2]
    torch.testing.assert_close(cpu, ref, rtol=1e-9, atol=1e-10)


def test_default_omega_is_original_for_equal_lengths():
    n = torch.tensor([6])
    om = default_omega(n, n, 6, 6, torch.float64, "cpu")[0]
    i = torch.arange(6, dtype=torch.float64)
    torch.testing.assert_close(om, (i[:, None] - i[None, :]) ** 2 / 36)


@needs_cpu
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_float64(backend):
    x, y = rand_pair(2, 5, 4, 2)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: soft_dtw(a, b, 0.5, backend=backend), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: dilate(a, b, 0.5, 0.3, backend=backend)[0], (x, y))
    assert torch.autograd.gradcheck(
        lambda a, b: soft_dtw(a, b, 0.5, bandwidth=1.0, lengths_x=[5, 3], lengths_y=[4, 4], backend=backend), (x, y))
    xu, yu = rand_pair(2, 6, 5, seed=3)
    xu.requires_grad_(True)
    yu.requires_grad_(True)  # univariate: the cpu backend's on-the-fly cost path
    assert torch.autograd.gradcheck(lambda a, b: dilate(a, b, 0.5, 0.2, backend=backend)[0], (xu, yu))


def test_reference_second_order_gradcheck():
    x, y = rand_pair(1, 4, 3)
    x.requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda a: soft_dtw(a, y, 0.7, backend="reference"), (x,))


@needs_cpu
def test_legacy_batch_scale_multiplies_gradient_by_batch():
    x, y = rand_pair(5, 8, 8)
    _, (g_ok,) = _grads(lambda a: dilate(a, y, backend="cpu")[0], x)
    _, (g_legacy,) = _grads(lambda a: dilate(a, y, legacy_batch_scale=True, backend="cpu")[0], x)
    torch.testing.assert_close(g_legacy, 5 * g_ok)
    assert dilate(x, y, legacy_batch_scale=True)[0].item() == pytest.approx(dilate(x, y)[0].item())


@needs_cpu
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_divergence(backend):
    x, y = rand_pair(3, 12, 7, 2)
    assert soft_dtw(x, x, 0.1, normalize=True, backend=backend).abs().max() < 1e-9
    div = soft_dtw(x, y, 0.1, normalize=True, backend=backend)
    assert (div > 0).all()  # non-negative, zero only at x = y (Blondel et al. 2021)
    expected = soft_dtw(x, y, 0.1, backend=backend) - 0.5 * (soft_dtw(x, x, 0.1, backend=backend)
                                                            + soft_dtw(y, y, 0.1, backend=backend))
    torch.testing.assert_close(div, expected)


# ------------------------------------------------------------------------------------------
# precision of the fp32 cpu path vs the float64 reference
# ------------------------------------------------------------------------------------------
E_TOL = {1.0: 1e-4, 0.1: 1e-4, 0.01: 1e-3}
# The same bounds hold at N = 4096 (measured on the series of test_fp32_precision_long: 5.1e-6 /
# 1.5e-5 / 6.9e-5 at 4096 x 4096, 2.0e-5 / 9.5e-5 / 3.1e-4 at 4096 x 3000 for gamma 1 / 0.1 /
# 0.01). A reciprocal whose rounding was biased (csrc/soft_dtw/soft_dtw_common.h, recip_fast) once
# took 4096 x 4096 at gamma 0.1 to 1.2e-4: the backward pushes the alignment along 8,000
# diagonals, so a bias of 1e-8 per cell shows.
E_TOL_LONG = E_TOL


def reference_value_and_alignment(x, y, gamma):
    """One float64 reference pass: value [B] and E [B, N, M] (autograd of the value)."""
    from abcc_fast.ops.soft_dtw import _reference_value, pairwise_sq_dist

    D = pairwise_sq_dist(x.double().unsqueeze(-1), y.double().unsqueeze(-1)).requires_grad_(True)
    n, m = torch.full((x.shape[0],), x.shape[1]), torch.full((y.shape[0],), y.shape[1])
    value = _reference_value(D, n, m, gamma, -1.0)
    (E,) = torch.autograd.grad(value.sum(), D)
    return value.detach(), E


@needs_cpu
@pytest.mark.parametrize("N,M", [(16, 16), (257, 200), (200, 257), (1024, 1024)])
def test_fp32_precision_against_float64_reference(N, M):
    torch.manual_seed(N * 7 + M)
    x, y = torch.randn(1, N), torch.randn(1, M)
    for gamma in [1.0, 0.1, 0.01, 0.001]:
        v64, E64 = reference_value_and_alignment(x, y, gamma)
        v32 = soft_dtw(x, y, gamma, backend="cpu")
        E32 = soft_dtw_alignment(x, y, gamma, backend="cpu")
        assert torch.isfinite(v32).all() and torch.isfinite(E32).all()
        assert abs(v32.double().item() - v64.item()) <= 1e-5 * abs(v64.item())
        if gamma in E_TOL:
            assert (E32.double() - E64).abs().max().item() <= E_TOL[gamma], (N, M, gamma)


@needs_cpu
@pytest.mark.slow
@pytest.mark.parametrize("N,M", [(4096, 4096), (4096, 3000)])
def test_fp32_precision_long(N, M):
    """At 4096 the float64 path of the cpu backend is the oracle (it equals the reference at
    every size the tests above compare them)."""
    torch.manual_seed(1)
    x, y = torch.randn(1, N), torch.randn(1, M)
    for gamma in [1.0, 0.1, 0.01, 0.001]:
        v64 = soft_dtw(x.double(), y.double(), gamma, backend="cpu")
        E64 = soft_dtw_alignment(x.double(), y.double(), gamma, backend="cpu")
        v32 = soft_dtw(x, y, gamma, precision="float32", backend="cpu")
        E32 = soft_dtw_alignment(x, y, gamma, precision="float32", backend="cpu")
        assert torch.isfinite(E32).all()
        assert abs(v32.double().item() - v64.item()) <= 1e-5 * abs(v64.item())
        if gamma in E_TOL_LONG:
            assert (E32.double() - E64).abs().max().item() <= E_TOL_LONG[gamma], (N, M, gamma)


@needs_cpu
def test_half_precision_inputs_are_computed_in_float32():
    x, y = rand_pair(2, 10, 10, dtype=torch.float32)
    v16 = soft_dtw(x.half(), y.half(), 0.1)
    assert v16.dtype == torch.float32
    torch.testing.assert_close(v16, soft_dtw(x.half().float(), y.half().float(), 0.1))


# ------------------------------------------------------------------------------------------
# bad input and backend selection
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda: soft_dtw(torch.randn(2, 5), torch.randn(3, 5)), "batch sizes differ"),
    (lambda: soft_dtw(torch.randn(2, 5, 2), torch.randn(2, 5, 3)), "feature sizes differ"),
    (lambda: soft_dtw(torch.randn(2, 5), torch.randn(2, 5), gamma=0.0), "gamma must be"),
    (lambda: soft_dtw(torch.randn(2, 5), torch.randn(2, 5), gamma=float("nan")), "gamma must be"),
    (lambda: soft_dtw(torch.randn(2, 0), torch.randn(2, 5)), "length 0"),
    (lambda: soft_dtw(torch.randn(2, 5), torch.randn(2, 5), lengths_x=[0, 5]), r"lengths_x must lie in \[1, 5\]"),
    (lambda: soft_dtw(torch.randn(2, 5), torch.randn(2, 5), lengths_y=[6, 5]), r"lengths_y must lie in \[1, 5\]"),
    (lambda: soft_dtw(torch.randn(2, 5), torch.randn(2, 5), lengths_x=[5]), "must be B=2 integers"),
    (lambda: soft_dtw(torch.tensor([[1.0, float("nan")]]), torch.randn(1, 5)), "NaN or Inf"),
    (lambda: soft_dtw(torch.randn(1, 4), torch.tensor([[1.0, float("inf")]])), "NaN or Inf"),
    (lambda: soft_dtw(torch.randn(2, 5), torch.randn(2, 7), bandwidth=0.2), "no warping path"),
    (lambda: soft_dtw(torch.randn(2, 5), torch.randn(2, 5), bandwidth=-1), "bandwidth must be"),
    (lambda: soft_dtw(torch.randn(5), torch.randn(5)), r"must be \[B, N\]"),
    (lambda: soft_dtw_cost(torch.randn(2, 5)), r"\[B, N, M\]"),
    (lambda: dilate(torch.randn(2, 5), torch.randn(2, 5), alpha=1.5), "alpha must lie"),
    (lambda: dilate(torch.randn(2, 5), torch.randn(2, 5), reduction="avg"), "reduction must be"),
    (lambda: dilate(torch.randn(2, 5), torch.randn(2, 6), omega=torch.rand(5, 5)), "omega must be"),
    (lambda: soft_dtw(torch.randn(2, 5), torch.randn(2, 5), backend="fast"), "unknown backend"),
])
def test_bad_input_raises_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        soft_dtw(torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 5, dtype=torch.int64))


def test_equal_bandwidth_zero_is_euclidean():
    x, y = rand_pair(2, 6, 6)
    # with a zero band only the diagonal path exists: soft-DTW = squared Euclidean distance
    torch.testing.assert_close(soft_dtw(x, y, 0.1, bandwidth=0, backend="reference"), ((x - y) ** 2).sum(1))
    if HAS_CPU:
        torch.testing.assert_close(soft_dtw(x, y, 0.1, bandwidth=0, backend="cpu"), ((x - y) ** 2).sum(1))


def test_backend_env_override(monkeypatch):
    x, y = rand_pair(1, 4, 4)
    monkeypatch.setenv("ABCC_BACKEND", "reference")
    ref = soft_dtw(x, y)
    monkeypatch.setenv("ABCC_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="ABCC_BACKEND"):
        soft_dtw(x, y)
    monkeypatch.delenv("ABCC_BACKEND")
    torch.testing.assert_close(soft_dtw(x, y), ref)


def test_unavailable_backend_says_why():
    status = ops.backends()
    assert set(status) == {"reference", "cpu", "triton", "cuda"}
    for name, s in status.items():
        assert s.reason, name
    if not status["cuda"].available:
        with pytest.raises(RuntimeError, match="not available"):
            soft_dtw(torch.randn(1, 4), torch.randn(1, 4), backend="cuda")


@needs_cpu
def test_auto_selects_cpu_kernel_for_cpu_tensors(monkeypatch):
    monkeypatch.delenv("ABCC_BACKEND", raising=False)
    import importlib

    mod = importlib.import_module("abcc_fast.ops.soft_dtw")  # the module (the package exports the function)

    calls = []
    real = mod._engine

    def spy(name):
        calls.append(name)
        return real(name)

    monkeypatch.setattr(mod, "_engine", spy)
    soft_dtw(torch.randn(2, 6), torch.randn(2, 6))
    assert calls and calls[0] == "cpu"


def test_no_nan_at_tiny_gamma():
    x, y = rand_pair(2, 40, 33, dtype=torch.float32)
    for backend in ["reference"] + NATIVE:
        xg = x.clone().requires_grad_(True)
        v = soft_dtw(xg, y, 1e-3, backend=backend)
        v.sum().backward()
        assert torch.isfinite(v).all() and torch.isfinite(xg.grad).all()
        assert not math.isnan(dilate(x, y, gamma=1e-3, backend=backend)[0].item())


def _fork_child_value(queue, x, y):
    queue.put(soft_dtw(x, y, 0.1).sum().item())


@needs_cpu
def test_cpu_kernel_works_in_a_forked_child():
    """GNU OpenMP's pool does not survive fork; a DataLoader worker must not hang in the kernel."""
    import multiprocessing as mp

    x, y = rand_pair(4, 40, 30, dtype=torch.float32)
    expected = soft_dtw(x, y, 0.1).sum().item()  # the parent has started its OpenMP pool
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fork_child_value, args=(queue, x, y))
    proc.start()
    try:
        got = queue.get(timeout=60)
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    assert got == pytest.approx(expected, rel=1e-6)
