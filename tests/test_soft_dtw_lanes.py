"""The cpu backend's lane engine (one pair per SIMD lane, csrc/soft_dtw/soft_dtw_lanes.cpp) against the
float64 reference and against the pair engine, plus the +inf border of the fp32 kernels.

The engine is pinned with `_CpuEngine.choice` ("pairs" / "lanes"); "auto" picks by shape.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from abcc_fast.ops import backends
from abcc_fast.ops.soft_dtw import _CpuEngine, dilate, soft_dtw, soft_dtw_alignment, soft_dtw_cost
from sdtw_helpers import _pair

needs_cpu = pytest.mark.skipif(not backends()["cpu"].available, reason="abcc_fast._C not built")


@pytest.fixture
def engine(monkeypatch):
    def pin(name):
        monkeypatch.setattr(_CpuEngine, "choice", name)
    return pin


def _value_and_grads(fn, x, y, dtype, weights=None):
    xg = x.detach().to(dtype).clone().requires_grad_(True)
    yg = y.detach().to(dtype).clone().requires_grad_(True)
    out = fn(xg, yg)
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=dtype).view(out.shape) if weights is None else weights
    (out * w).sum().backward()
    return out.detach(), xg.grad, yg.grad


@needs_cpu
@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 37), N=st.integers(1, 12), M=st.integers(1, 12), d=st.sampled_from([None, 1, 3]),
       gamma=st.sampled_from([1.0, 0.1, 0.01]), band=st.sampled_from([None, 0.5, 1.0, 2.5]),
       seed=st.integers(0, 2**16))
def test_lanes_match_reference_property(B, N, M, d, gamma, band, seed):
    """float64 lanes == float64 reference: soft-DTW and DILATE values and gradients (incl. the HVP),
    any batch (partial lane groups), univariate and d > 1 (both with the cost computed in the kernel)."""
    if band is not None and band < 0.5 and N != M:
        return
    x, y = _pair(B, N, M, seed=seed, d=d)
    old = _CpuEngine.choice
    try:
        results = {}
        for name, backend in (("lanes", "cpu"), ("ref", "reference")):
            _CpuEngine.choice = "lanes"
            sd = _value_and_grads(lambda a, b: soft_dtw(a, b, gamma, bandwidth=band, backend=backend), x, y,
                                  torch.float64)
            dl = _value_and_grads(lambda a, b: torch.stack(dilate(a, b, 0.5, gamma, bandwidth=band,
                                                                  reduction="none", backend=backend)),
                                  x, y, torch.float64)
            results[name] = sd + dl
    finally:
        _CpuEngine.choice = old
    for got, ref in zip(results["lanes"], results["ref"]):
        torch.testing.assert_close(got, ref, rtol=1e-7, atol=1e-9)


@needs_cpu
@pytest.mark.parametrize("B,N,M,band", [(40, 31, 31, None), (17, 64, 48, None), (33, 96, 96, 8.0), (16, 1, 5, None)])
@pytest.mark.parametrize("gamma", [1.0, 0.01])
def test_lanes_equal_pairs_in_float32(engine, B, N, M, band, gamma):
    """Same arithmetic per lane as the pair engine: float32 results agree to rounding."""
    x, y = _pair(B, N, M, seed=B + N)
    out = {}
    for name in ("pairs", "lanes"):
        engine(name)
        out[name] = _value_and_grads(lambda a, b: torch.stack(dilate(a, b, 0.5, gamma, bandwidth=band,
                                                                     reduction="none")), x, y, torch.float32)
    for got, ref in zip(out["lanes"], out["pairs"]):
        torch.testing.assert_close(got, ref, rtol=2e-5, atol=2e-5)


@needs_cpu
def test_lanes_custom_omega_cost_matrix_and_alignment(engine):
    x, y = _pair(20, 9, 7, seed=3)
    omega_b = torch.rand(20, 9, 7, dtype=torch.float64)
    omega_1 = torch.rand(9, 7, dtype=torch.float64)
    D = torch.rand(20, 9, 7, dtype=torch.float64)
    got, ref = {}, {}
    for store, backend in ((got, "cpu"), (ref, "reference")):
        engine("lanes")
        for key, om in (("batch", omega_b), ("shared", omega_1)):
            store[key] = _value_and_grads(lambda a, b: torch.stack(dilate(a, b, 0.3, 0.1, omega=om, reduction="none",
                                                                          backend=backend)), x, y, torch.float64)
        Dg = D.clone().requires_grad_(True)
        v = soft_dtw_cost(Dg, 0.1, backend=backend)
        v.sum().backward()
        store["cost"] = (v.detach(), Dg.grad)
        store["E"] = (soft_dtw_alignment(x.double(), y.double(), 0.1, backend=backend),)
    for key in got:
        for a, b in zip(got[key], ref[key]):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=key)


@needs_cpu
def test_auto_choice_with_ragged_lengths_is_correct(engine):
    """Ragged lengths cannot share one lane sweep: the lanes request falls back to the pair engine."""
    x, y = _pair(24, 10, 8, seed=5)
    lx = torch.randint(1, 11, (24,), generator=torch.Generator().manual_seed(0))
    ly = torch.randint(1, 9, (24,), generator=torch.Generator().manual_seed(1))
    engine("lanes")
    got = _value_and_grads(lambda a, b: soft_dtw(a, b, 0.1, lengths_x=lx, lengths_y=ly), x, y, torch.float64)
    ref = _value_and_grads(lambda a, b: soft_dtw(a, b, 0.1, lengths_x=lx, lengths_y=ly, backend="reference"),
                           x, y, torch.float64)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# +inf borders: large path costs are values, not a saturated sentinel
# ---------------------------------------------------------------------------------------------
@needs_cpu
@pytest.mark.parametrize("choice", ["pairs", "lanes"])
def test_huge_costs_do_not_saturate(engine, choice):
    engine(choice)
    B = 17 if choice == "lanes" else 1
    x = torch.full((B, 4), 1e15)
    y = torch.zeros(B, 4)
    v = soft_dtw(x, y, 1.0)
    ref = soft_dtw(x.double(), y.double(), 1.0, backend="reference")
    torch.testing.assert_close(v.double(), ref, rtol=1e-6, atol=0)
    assert float(v[0]) == pytest.approx(4e30, rel=1e-6)
    xg = x.clone().requires_grad_(True)
    soft_dtw(xg, y, 1.0).sum().backward()
    assert torch.isfinite(xg.grad).all()
    # a path cost beyond float32's range is +inf, as in the float32 reference
    big = torch.full((B, 4), 1e19)
    assert torch.isinf(soft_dtw(big, y, 1.0)).all()
    assert torch.isinf(soft_dtw(big, y, 1.0, backend="reference")).all()


# ---------------------------------------------------------------------------------------------
# accuracy mode: float64 accumulation for long series
# ---------------------------------------------------------------------------------------------
def _walks(N, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(1, N, generator=g) * 0.1).cumsum(1)
    y = (torch.randn(1, N, generator=g) * 0.1).cumsum(1) + 2.0
    return x, y


@needs_cpu
@pytest.mark.parametrize("gamma", [1.0, 0.01])
def test_accuracy_mode_on_long_random_walks(gamma):
    """Past PRECISION_AUTO_LENGTH, "auto" computes float32 inputs in float64 and returns float32:
    E within 1e-4 of the float64 path (the float32 forward alone is off by 5e-4..1e-2 at 4096)."""
    from abcc_fast.ops.soft_dtw import PRECISION_AUTO_LENGTH

    x, y = _walks(PRECISION_AUTO_LENGTH + 1, seed=int(gamma * 100))
    E64 = soft_dtw_alignment(x.double(), y.double(), gamma, backend="cpu")
    for precision in ("auto", "float64"):
        E = soft_dtw_alignment(x, y, gamma, precision=precision, backend="cpu")
        assert E.dtype == torch.float32
        assert (E.double() - E64).abs().max().item() <= 1e-4
    xg = x.clone().requires_grad_(True)
    v = soft_dtw(xg, y, gamma)
    v.backward()
    assert v.dtype == torch.float32 and xg.grad.dtype == torch.float32
    xr = x.double().requires_grad_(True)
    soft_dtw(xr, y.double(), gamma).backward()
    torch.testing.assert_close(xg.grad.double(), xr.grad, rtol=1e-5, atol=1e-5)


@needs_cpu
def test_precision_keyword():
    x, y = _pair(2, 20, 20, seed=1)
    v64 = soft_dtw(x.double(), y.double(), 0.1)
    v = soft_dtw(x, y, 0.1, precision="float64")
    assert v.dtype == torch.float32
    torch.testing.assert_close(v.double(), v64, rtol=1e-7, atol=0)  # only the final rounding to float32
    loss, shape, temporal = dilate(x, y, 0.5, 0.1, precision="float64", reduction="none")
    ref = dilate(x.double(), y.double(), 0.5, 0.1, reduction="none")
    for a, b in zip((loss, shape, temporal), ref):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="precision must be one of"):
        soft_dtw(x, y, 0.1, precision="fp64")


# ---------------------------------------------------------------------------------------------
# OpIRBench's DILATE metrics on the fast engine == the float64 reference twin
# ---------------------------------------------------------------------------------------------
@needs_cpu
def test_opirbench_dilate_metrics_match_float64_reference():
    from einops import rearrange

    from abcc_fast.opirbench import metrics
    from abcc_fast.opirbench.toy import toy_dataset

    ds = toy_dataset(6, T=10, W=48, seed=3)
    true = ds.frames
    g = torch.Generator().manual_seed(0)
    pred = true + 0.02 * torch.randn(true.shape, generator=g) + 0.01 * torch.roll(true, 1, dims=2)
    ctx = metrics.MetricContext(wavenumber=ds.wavenumber, mean=float(true.mean()), std=float(true.std()))
    got = {**metrics.dilate(pred, true, ctx), **metrics.dilate_spec(pred, true, ctx)}

    zp = (pred[:, 1:].double() - ctx.mean) / ctx.std
    zt = (true[:, 1:].double() - ctx.mean) / ctx.std
    B, T1, W = zp.shape
    a, gamma = metrics.DILATE_ALPHA, metrics.DILATE_GAMMA
    time_parts = dilate(rearrange(zp, "b t w -> (b w) t"), rearrange(zt, "b t w -> (b w) t"), a, gamma,
                        reduction="none", backend="reference")
    spec_parts = dilate(rearrange(zp, "b t w -> (b t) w"), rearrange(zt, "b t w -> (b t) w"), a, gamma,
                        reduction="none", bandwidth=ctx.spec_bandwidth(), backend="reference")
    expected = {}
    for prefix, parts, per in (("dilate", time_parts, W), ("dilate_spec", spec_parts, T1)):
        for suffix, v in zip(("", "_shape", "_temporal"), parts):
            expected[prefix + suffix] = v.view(B, per).mean(1)
    assert set(got) == set(expected)
    for key in expected:
        torch.testing.assert_close(got[key].double(), expected[key], rtol=1e-5, atol=1e-6, msg=key)
