"""The GPU backends of soft-DTW / DILATE (`cuda` and `triton`) at long sequences against the
float64 reference.

Needs a CUDA device (the `cuda` cases also abcc_fast._C built with CUDA); skipped otherwise (CI
compiles the kernels but cannot run them, and the Triton interpreter is far too slow at these
lengths). The small-shape checks are in tests/test_soft_dtw_backends.py. These hold, at N, M in
{257, 1024, 4096}, N != M and ragged lengths: value rel. error <= 1e-5; on N(0, 1) inputs (the CPU
backend's own precision tests) max |E - E_ref| <= 1e-4 at gamma >= 0.1 and <= 1e-3 at gamma = 0.01;
no NaN at gamma = 1e-3; for `cuda` also the training state <= 1/32 of a full R and a forward-only
workspace O(B (N + M)).

On shifted random walks (path costs up to 5e5) the alignment is bounded instead by the float32
forward's rounding of the path cost, eps32 |R|, capped at 1e-2 (docs/results.md, "Precision"): the
first run on an H200 (2026-12-04) measured 6.7e-4 (N = 1024, gamma = 1; eps |R| = 9.7e-4) and 4.8e-3
(N = 4096) there, for both GPU backends alike. DILATE's gradient there is an open gap (xfail).
"""
import pytest
import torch

from abcc_fast.ops import backends
from abcc_fast.ops.soft_dtw import dilate, soft_dtw, soft_dtw_alignment
from sdtw_helpers import _close, _leaf, _tol

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DEV = "cuda"
BACKEND = "cuda"
_needs_cuda_backend = pytest.mark.skipif(not backends()["cuda"].available,
                                         reason="cuda backend: " + backends()["cuda"].reason)
GPU_BACKENDS = [
    pytest.param("cuda", marks=_needs_cuda_backend),
    pytest.param("triton", marks=pytest.mark.skipif(not backends()["triton"].available,
                                                    reason="triton backend: " + backends()["triton"].reason)),
]


# ---------------------------------------------------------------------------------------------
# long sequences: the precision targets (docs/results.md, "Precision") against float64 on the GPU
# ---------------------------------------------------------------------------------------------
def _walks(B, N, M, seed):
    """Random walks; y is shifted by 2 so every path costs >= ~4 per cell and the soft-DTW value
    (path cost minus at most ~1.8 gamma per cell of entropy) stays far from zero: a relative error
    is then well defined at every gamma."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, N, generator=g) * 0.1).cumsum(1)
    y = (torch.randn(B, M, generator=g) * 0.1).cumsum(1) + 2.0
    return x, y


def _value_and_alignment(x, y, gamma, backend, tol_of_value):
    """Checks the value (rel. error <= 1e-5) and the alignment (max |E - E_ref| <= tol_of_value(v_ref))
    against the float64 reference on the GPU; returns (xc, yc, xr, yr, v_ref, E_ref)."""
    xc, yc = x.to(DEV), y.to(DEV)
    xr, yr = x.to(DEV, torch.float64), y.to(DEV, torch.float64)
    v = soft_dtw(xc, yc, gamma, backend=backend)
    v_ref = soft_dtw(xr, yr, gamma, backend="reference")
    rel = ((v.double() - v_ref).abs() / v_ref.abs().clamp_min(1e-30)).max().item()
    assert rel <= 1e-5, f"value rel. error {rel:.3g}"
    E = soft_dtw_alignment(xc, yc, gamma, backend=backend)
    E_ref = soft_dtw_alignment(xr, yr, gamma, backend="reference")
    err = (E.double() - E_ref).abs().max().item()
    tol = tol_of_value(v_ref)
    assert err <= tol, f"max |E - E_ref| = {err:.3g} (tolerance {tol:.3g})"
    return xc, yc, xr, yr, v_ref, E_ref


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("N,M", [(257, 257), (1024, 1024), (1024, 1000), (4096, 4096)])
@pytest.mark.parametrize("gamma", [1.0, 0.1, 0.01])
def test_long_sequences_meet_the_precision_targets(backend, N, M, gamma):
    x, y = _walks(1 if N >= 4096 else 2, N, M, seed=N + M)
    xc, yc, xr, yr, v_ref, E_ref = _value_and_alignment(x, y, gamma, backend, lambda v: _walk_tol(gamma, v))
    # univariate path (cost on the fly, checkpointed backward) against the same E: dL/dx = 2 (x E1 - E y)
    xg = xc.clone().requires_grad_(True)
    soft_dtw(xg, yc, gamma, backend=backend).sum().backward()
    dx_ref = 2.0 * (xr * E_ref.sum(2) - torch.bmm(E_ref, yr.unsqueeze(2)).squeeze(2))
    scale = float(dx_ref.abs().max()) + 1.0
    gerr = (xg.grad.double() - dx_ref).abs().max().item()
    # the gradient's own rounding limit, eps32 |R| / gamma per pair (capped at 1e-2): what the H200 passed
    g_tol = max(10 * _tol(gamma), min(2.0 ** -24 * float(v_ref.abs().max()) / gamma, 1e-2))
    assert gerr <= g_tol * scale, f"dx error {gerr:.3g} (scale {scale:.3g})"


def _walk_tol(gamma, v_ref):
    """The float32 forward's rounding of the path cost, eps32 |R| (R ~ the value per pair), capped at
    1e-2 and never below the N(0, 1) target. Measured on the first H200 run at N = 1024: the
    alignment erred by 0.69 (gamma = 1) and 0.30 (gamma = 0.1) of it, the CPU float32 engine by 0.81
    and 0.05."""
    rounding = 2.0 ** -24 * float(v_ref.abs().max())
    return max(_tol(gamma), min(rounding, 1e-2))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("N,M,gamma", [(1024, 1024, 1.0), (1024, 1024, 0.1), (1024, 1024, 0.01), (4096, 4096, 0.1)])
def test_gaussian_inputs_meet_the_cpu_targets(backend, N, M, gamma):
    """N(0, 1) inputs, as in the CPU backend's tests: value rel. error <= 1e-5, |E - E_ref| <= 1e-4
    (gamma >= 0.1) or 1e-3 (gamma = 0.01)."""
    g = torch.Generator().manual_seed(N + 11)
    x, y = torch.randn(1, N, generator=g), torch.randn(1, M, generator=g)
    _value_and_alignment(x, y, gamma, backend, lambda v: _tol(gamma))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("gamma", [0.1, 0.01])
def test_long_dilate_matches_reference(backend, gamma):
    BACKEND = backend
    N = M = 1024
    x, y = _walks(2, N, M, seed=3)
    outs = {}
    for be, dt in ((BACKEND, torch.float32), ("reference", torch.float64)):
        xg = _leaf(x, DEV, dt)
        yg = _leaf(y, DEV, dt)
        loss, shape, temporal = dilate(xg, yg, 0.5, gamma, reduction="sum", backend=be)
        loss.backward()
        outs[be] = (shape.detach(), temporal.detach(), xg.grad, yg.grad)
    got, ref = outs[BACKEND], outs["reference"]
    _close(got[0], ref[0], atol=0, rtol=1e-5, what="shape")
    _close(got[1], ref[1], atol=1e-4, rtol=1e-4, what="temporal")
    # dx carries the temporal term's derivative of the alignment. A gross error fails (the bound:
    # eps32 |R| / gamma per pair, of the scale); beyond the CPU float32 engine's tolerance it is the
    # known gap: on an H200 at gamma = 0.1, 2.65 (cuda) and 2.21 (triton) of a scale of 580, where the
    # CPU's float32 errs by 0.15 (docs/results.md, "Precision")
    scale = float(ref[2].abs().max()) + 1.0
    err = float((got[2].double() - ref[2].double()).abs().max())
    per_pair = 2.0 ** -24 * float(ref[0].abs().max()) / 2 / gamma
    assert err <= max(10 * _tol(gamma), per_pair) * scale, f"dx: max err {err:.3g} (scale {scale:.3g})"
    if err > 10 * _tol(gamma) * scale:
        pytest.xfail(f"open: the GPU float32 DILATE gradient errs by {err:.3g} (scale {scale:.3g}), more than "
                     f"the CPU float32 engine's tolerance {10 * _tol(gamma) * scale:.3g}")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_small_gamma_gives_no_nan(backend):
    BACKEND = backend
    x, y = _walks(2, 1024, 777, seed=5)
    xg = x.to(DEV).requires_grad_(True)
    loss, _, _ = dilate(xg, y.to(DEV), 0.5, 1e-3, backend=BACKEND)
    loss.backward()
    assert bool(torch.isfinite(loss)) and bool(torch.isfinite(xg.grad).all())


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("N,M", [(1024, 1024), (4096, 3000)])
def test_long_ragged_lengths_match_reference(backend, N, M):
    """Ragged pairs of one padded batch (the long pair walks its diagonals in chunks of 1024 rows)."""
    B = 3
    x, y = _walks(B, N, M, seed=N + 7)
    lx = torch.tensor([N, N // 2 + 3, 17])
    ly = torch.tensor([M - 5, M, M // 3])
    xg = _leaf(x, DEV, torch.float32)
    v = soft_dtw(xg, y.to(DEV), 0.1, lengths_x=lx, lengths_y=ly, backend=backend)
    v.sum().backward()
    xr = _leaf(x, DEV, torch.float64)
    v_ref = soft_dtw(xr, y.to(DEV, torch.float64), 0.1, lengths_x=lx, lengths_y=ly, backend="reference")
    v_ref.sum().backward()
    _close(v, v_ref, atol=0, rtol=1e-5, what="value with ragged lengths")
    scale = float(xr.grad.abs().max()) + 1.0
    _close(xg.grad, xr.grad, atol=10 * _tol(0.1) * scale, rtol=1e-3, what="dx with ragged lengths")
    for b in range(B):
        assert bool((xg.grad[b, int(lx[b]):] == 0).all()), "padding must get exactly zero gradient"


@_needs_cuda_backend
def test_state_and_workspace_are_small():
    from abcc_fast.ops._soft_dtw_cuda import ENGINE

    B, N, M = 4, 4096, 4096
    x, y = _walks(B, N, M, seed=8)
    xc, yc = x.to(DEV), y.to(DEV)
    n = torch.full((B,), N, dtype=torch.int64, device=DEV)
    m = torch.full((B,), M, dtype=torch.int64, device=DEV)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    ENGINE.forward(None, xc, yc, n, m, 0.1, -1.0, None, False, False)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - before <= 64 * B * (N + M) * 4, "forward-only must be O(B (N+M))"
    _, _, (ckpt, ckpt_t, base) = ENGINE.forward(None, xc, yc, n, m, 0.1, -1.0, None, True, True)
    assert ckpt.numel() <= B * N * M / 32 and ckpt_t.numel() <= B * N * M / 32, "checkpoints must be <= R / 32"
