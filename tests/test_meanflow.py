"""MeanFlow ops (abcc_fast.ops.meanflow): every backend against an independent float64 reference.

Without a GPU, Triton runs under the interpreter on CPU tensors at small shapes (tests/conftest.py)
and CUDA is skipped; with one, both run on CUDA tensors. Tolerances: fp32 kernels vs float64 -> rtol 1e-5, atol 1e-6.
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from abcc_fast.ops import backends, meanflow_integrate, meanflow_target
from abcc_fast.ops.meanflow import meanflow_integrate_reference, meanflow_target_reference

HAS_CUDA = torch.cuda.is_available()
FUSED = [b for b in ("triton", "cuda") if backends()[b].available]
TOL = dict(rtol=1e-5, atol=1e-6)


def _device(backend):
    """CUDA tensors for the fused backends when a GPU is present (Triton then compiles for it; the
    interpreter only runs without one), CPU tensors otherwise and for the reference."""
    return "cuda" if HAS_CUDA and backend != "reference" else "cpu"


def _target_f64(u, v, d, r, tau, c, p):
    """Independent float64 oracle: u_tgt, per-sample error, weight, loss rows, d mean(loss)/du."""
    u, v, d, r, tau = (t.double() for t in (u, v, d, r, tau))
    tgt = v + (tau - r)[:, None] * d
    err = ((u - tgt) ** 2).mean(1)
    w = (err + c) ** (-p)
    grad = (w[:, None] * 2 * (u - tgt) / u.shape[1]) / u.shape[0]
    return tgt, err, w, w * err, grad


def _target_inputs(B, W, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, W, generator=g)
    v = torch.randn(B, W, generator=g)
    d = torch.randn(B, W, generator=g)
    r = torch.rand(B, generator=g)
    tau = r + (1 - r) * torch.rand(B, generator=g)
    tau[0] = r[0]  # an r == tau row
    return [t.to(device) for t in (u, v, d, r, tau)]


@pytest.mark.parametrize("backend", ["reference"] + FUSED)
@given(B=st.integers(1, 5), W=st.integers(1, 70), p=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
       c=st.sampled_from([1e-3, 1e-2, 1.0]), seed=st.integers(0, 2**16))
def test_target_matches_float64(backend, B, W, p, c, seed):
    device = _device(backend)
    u, v, d, r, tau = _target_inputs(B, W, seed, device)
    u.requires_grad_(True)
    loss, tgt, w = meanflow_target(u, v, d, r, tau, c=c, p=p, backend=backend)
    (g,) = torch.autograd.grad(loss, u)
    tgt64, err64, w64, rows64, grad64 = _target_f64(u.detach().cpu(), v.cpu(), d.cpu(), r.cpu(), tau.cpu(), c, p)
    torch.testing.assert_close(tgt.cpu().double(), tgt64, **TOL)
    torch.testing.assert_close(w.cpu().double(), w64, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss.cpu().double(), rows64.mean(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g.cpu().double(), grad64, rtol=1e-4, atol=1e-6)
    assert not tgt.requires_grad and not w.requires_grad


@pytest.mark.parametrize("backend", ["reference"] + FUSED)
def test_target_reduction_none(backend):
    device = _device(backend)
    u, v, d, r, tau = _target_inputs(4, 33, 3, device)
    rows, _, _ = meanflow_target(u, v, d, r, tau, reduction="none", backend=backend)
    _, _, _, rows64, _ = _target_f64(u.cpu(), v.cpu(), d.cpu(), r.cpu(), tau.cpu(), 1e-3, 1.0)
    assert rows.shape == (4,)
    torch.testing.assert_close(rows.cpu().double(), rows64, rtol=1e-4, atol=1e-6)


def _integrate_f64(y0, z0, uy, uz, r, taus, project):
    dt = (taus.double() - r.double()[:, None])[..., None]
    y = y0.double()[:, None] + dt * uy.double()
    z = dt * uz.double() + (0 if z0 is None else z0.double()[:, None])
    if project:
        z = z.clamp_min(0)
    return y + z, y, z


@pytest.mark.parametrize("backend", ["reference"] + FUSED)
@given(B=st.integers(1, 4), T=st.integers(1, 6), W=st.integers(1, 300), project=st.booleans(),
       with_z0=st.booleans(), per_sample_taus=st.booleans(), seed=st.integers(0, 2**16))
def test_integrate_matches_float64(backend, B, T, W, project, with_z0, per_sample_taus, seed):
    device = _device(backend)
    g = torch.Generator().manual_seed(seed)
    y0 = torch.randn(B, W, generator=g)
    z0 = torch.randn(B, W, generator=g) if with_z0 else None
    uy, uz = torch.randn(B, T, W, generator=g), torch.randn(B, T, W, generator=g)
    r = torch.rand(B, generator=g) * 0.5
    taus = r[:, None] + torch.rand(B, T, generator=g) * 0.5 if per_sample_taus else torch.linspace(0, 1, T)
    leaves = [t.to(device).requires_grad_(True) for t in (y0, uy, uz)]
    z0d = z0.to(device).requires_grad_(True) if z0 is not None else None
    frames, solvent, sei = meanflow_integrate(leaves[0], leaves[1], leaves[2], r.to(device), taus.to(device),
                                              x0_sei=z0d, project=project, backend=backend)
    f64, y64, z64 = _integrate_f64(y0, z0, uy, uz, r, taus if per_sample_taus else taus.expand(B, T), project)
    for got, want in ((frames, f64), (solvent, y64), (sei, z64)):
        torch.testing.assert_close(got.detach().cpu().double(), want, **TOL)
    # gradients against autograd through the float64 formula
    wf, ws, wz = (torch.randn(B, T, W, generator=g) for _ in range(3))
    s = (frames * wf.to(device)).sum() + (solvent * ws.to(device)).sum() + (sei * wz.to(device)).sum()
    inputs = leaves + ([z0d] if z0d is not None else [])
    grads = torch.autograd.grad(s, inputs)
    ref_leaves = [t.double().requires_grad_(True) for t in (y0, uy, uz)]
    z0r = z0.double().requires_grad_(True) if z0 is not None else None
    f, y, z = _integrate_f64(ref_leaves[0], z0r, ref_leaves[1], ref_leaves[2], r,
                             taus if per_sample_taus else taus.expand(B, T), project)
    s64 = (f * wf.double()).sum() + (y * ws.double()).sum() + (z * wz.double()).sum()
    grads64 = torch.autograd.grad(s64, ref_leaves + ([z0r] if z0r is not None else []))
    for got, want in zip(grads, grads64):
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-5, atol=1e-5)


def test_integrate_semantics():
    """x_tau = x_r + (tau - r) u per stream; at tau = r the state itself; SEI >= 0 when projected."""
    y0 = torch.tensor([[1.0, 2.0]])
    uy = torch.tensor([[[5.0, 5.0], [1.0, -1.0]]])
    uz = torch.tensor([[[3.0, 3.0], [-4.0, 2.0]]])
    f, y, z = meanflow_integrate(y0, uy, uz, 0.0, torch.tensor([0.0, 0.5]))
    assert y[0, 0].tolist() == [1.0, 2.0] and z[0, 0].tolist() == [0.0, 0.0]
    assert y[0, 1].tolist() == [1.5, 1.5] and z[0, 1].tolist() == [0.0, 1.0]
    assert f[0, 1].tolist() == [1.5, 2.5]
    f, _, z = meanflow_integrate(y0, uy, uz, 0.0, torch.tensor([0.0, 0.5]), project=False)
    assert z[0, 1].tolist() == [-2.0, 1.0]


def test_reference_twins_and_auto_choice():
    u, v, d, r, tau = _target_inputs(3, 10, 0)
    a = meanflow_target(u, v, d, r, tau)
    b = meanflow_target_reference(u, v, d, r, tau)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    y0, uy = torch.randn(2, 5), torch.randn(2, 3, 5)
    for x, y in zip(meanflow_integrate(y0, uy, uy, 0.0, torch.linspace(0, 1, 3)),
                    meanflow_integrate_reference(y0, uy, uy, 0.0, torch.linspace(0, 1, 3))):
        torch.testing.assert_close(x, y)


def test_bad_inputs_raise_clear_errors():
    u, v, d, r, tau = _target_inputs(3, 10, 0)
    with pytest.raises(ValueError, match="must be \\[B, W\\]"):
        meanflow_target(u[0], v, d, r, tau)
    with pytest.raises(ValueError, match="v has shape"):
        meanflow_target(u, v[:, :5], d, r, tau)
    with pytest.raises(ValueError, match="r must be a scalar or a \\[B\\]"):
        meanflow_target(u, v, d, r[:2], tau)
    with pytest.raises(ValueError, match="c must be > 0"):
        meanflow_target(u, v, d, r, tau, c=0.0)
    with pytest.raises(ValueError, match="unknown backend"):
        meanflow_target(u, v, d, r, tau, backend="magic")
    y0, uy = torch.randn(2, 5), torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match="taus must be"):
        meanflow_integrate(y0, uy, uy, 0.0, torch.linspace(0, 1, 4))
    with pytest.raises(ValueError, match="u_sei has shape"):
        meanflow_integrate(y0, uy, uy[:, :2], 0.0, torch.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="u_solvent has shape"):
        meanflow_integrate(y0, torch.randn(2, 3, 4), torch.randn(2, 3, 4), 0.0, torch.linspace(0, 1, 3))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_matches_reference_bf16_inputs():
    u, v, d, r, tau = _target_inputs(8, 512, 1, "cuda")
    ub = u.bfloat16().requires_grad_(True)
    loss, tgt, w = meanflow_target(ub, v.bfloat16(), d.bfloat16(), r, tau, backend="cuda")
    ref = meanflow_target_reference(ub.float(), v.bfloat16().float(), d.bfloat16().float(), r, tau)
    torch.testing.assert_close(loss.float(), ref[0], rtol=2e-2, atol=1e-3)
    assert tgt.dtype == torch.bfloat16


@pytest.mark.skipif("triton" not in FUSED, reason="triton backend unavailable")
def test_triton_kernels_compile_for_sm90():
    """Every block size and flag combination of the MeanFlow kernels lowers to sm_90 code (the
    interpreter never checks that; tests/triton_aot.py). No GPU is needed."""
    pytest.importorskip("triton.backends.nvidia")
    import triton_aot

    proc = triton_aot.run("meanflow")
    assert triton_aot.ok(proc), proc.stderr[-3000:]
