"""Helpers shared by the soft-DTW backend tests (float64 comparisons, input pairs, gradients)."""
import torch


def _tol(gamma):
    return 1e-4 if gamma >= 0.1 else 1e-3


def _close(got, ref, atol, rtol=1e-5, what=""):
    got = got.detach().to("cpu", torch.float64)
    ref = ref.detach().to("cpu", torch.float64)
    assert got.shape == ref.shape, what
    err = (got - ref).abs()
    bound = atol + rtol * ref.abs()
    assert bool((err <= bound).all()), f"{what}: max err {err.max().item():.3g} (atol {atol}, rtol {rtol})"


def _pair(B, N, M, seed=0, d=None):
    g = torch.Generator().manual_seed(seed)
    shape_x = (B, N) if d is None else (B, N, d)
    shape_y = (B, M) if d is None else (B, M, d)
    x = torch.randn(shape_x, generator=g)
    y = torch.randn(shape_y, generator=g) * 0.8 + 0.1
    return x, y


def _leaf(t, device, dtype):
    return t.detach().to(device=device, dtype=dtype).clone().requires_grad_(True)


def _grads(fn, x, y, backend, dtype, device, weights=None):
    """Values and dL/dx, dL/dy of L = sum_b w_b fn(x, y)_b."""
    xg = _leaf(x, device, dtype)
    yg = _leaf(y, device, dtype)
    out = fn(xg, yg, backend)
    w = torch.ones_like(out) if weights is None else weights.to(device=device, dtype=dtype)
    (out * w).sum().backward()
    return out.detach(), xg.grad, yg.grad
