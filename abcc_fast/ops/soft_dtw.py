"""Soft-DTW, its divergence, the expected alignment and DILATE, behind one door.

Definitions (Cuturi & Blondel 2017; Le Guen & Thome 2019). For a cost
matrix D [N, M] (by default D_ij = ||x_i - y_j||^2):

    R_ij = D_ij + softmin_g(R_{i-1,j-1}, R_{i-1,j}, R_{i,j-1}),  softmin_g(a) = -g log sum_k exp(-a_k / g)
    R_{-1,-1} = 0, other borders +inf;   soft_dtw = R_{N-1,M-1}
    E = dR_{N-1,M-1} / dD                 (expected alignment, entries in [0, 1])
    DILATE = alpha * shape + (1 - alpha) * temporal,  shape = soft_dtw,  temporal = <E, Omega>

with Omega_ij = ((i+1)/n - (j+1)/m)^2 by default, which is (i-j)^2/n^2 when n = m (the original).
The temporal term is carried as a forward-mode tangent of R in direction Omega, and its gradient
(a Hessian-vector product H.Omega) by the tangent of the reverse sweep: DILATE costs two DP
sweeps on the fused backends, like plain soft-DTW with its gradient.

Variable lengths: `lengths_x[b]`, `lengths_y[b]` cut each pair to x[b, :n_b], y[b, :m_b]; padding
gets exactly zero gradient. Band: Sakoe-Chiba on the normalised diagonal, cell (i, j) allowed iff
|i (m-1) - j (n-1)| <= bandwidth * max(n-1, m-1) (for n = m: |i - j| <= bandwidth). It is feasible
for any bandwidth >= 0.5; a smaller one with n != m raises ValueError.

Precision: `precision="auto"` (default) computes float32 inputs in float32, except on the CPU for
series longer than PRECISION_AUTO_LENGTH, where the float32 forward's own rounding reaches
expected-alignment errors of 1e-3 to 1e-2 (random walks at N = 4096) and the cpu backend runs in
float64 instead (~1.3x the float32 forward time, ~2x with the backward); results are returned in
float32. `precision="float64"` asks for that at every length, `"float32"` never. float64 inputs
are always computed in float64. The triton and cuda kernels compute in float32 whatever is asked.

Backends: `reference` (this file: an anti-diagonal loop in plain PyTorch whose gradients, including
DILATE's HVP, come from autograd; in float64 it is the oracle), `cpu` (C++/OpenMP), `triton`,
`cuda`. Inputs in float16/bfloat16 are computed in float32. The native backends give first-order
gradients (no double backward); use backend="reference" for higher orders.

torch.compile: the native backends are the custom ops `abcc::soft_dtw_forward` and
`abcc::soft_dtw_backward` (ops/_library.py), so compiled code has no graph break; there the
data-dependent input checks (finite values, lengths, band) become graph assertions that raise
RuntimeError with the same text, without the counts. The reference backend's DILATE and
alignment call torch.autograd.grad, which Dynamo cannot trace (a graph break).
"""
from __future__ import annotations

import importlib
import math
import os
from typing import Optional, Sequence, Union

import torch

from . import _library, _registry
from . import _soft_dtw_op as _op
from ._backend import cpu_threads, native_module, resolve

Lengths = Optional[Union[torch.Tensor, Sequence[int]]]

__all__ = ["soft_dtw", "soft_dtw_cost", "soft_dtw_alignment", "dilate", "pairwise_sq_dist", "default_omega"]

PRECISION_AUTO_LENGTH = 2048  # precision="auto": float64 on the CPU when max(N, M) exceeds this
_PRECISIONS = ("auto", "float32", "float64")

_ENGINE_MODULES = {"triton": "abcc_fast.ops._soft_dtw_triton", "cuda": "abcc_fast.ops._soft_dtw_cuda"}

_LIBRARY_OPS = ("abcc::soft_dtw_forward", "abcc::soft_dtw_backward")


def _declare(op: str, differentiable: bool = True, reference_jvp: bool = False) -> None:
    """One family of engines (backend choice is per family: resolve("soft_dtw", ...)), declared per
    public op because what each op can do differs."""
    spec = _registry.EngineSpec
    native = dict(backward=differentiable, library=_LIBRARY_OPS)
    _registry.declare(
        op,
        spec(op, "reference", devices=("cpu", "cuda"), backward=differentiable, jvp=reference_jvp,
             double_backward=differentiable, note="anti-diagonal loop in PyTorch; derivatives from autograd"),
        spec(op, "cpu", devices=("cpu",), compute="float32 or float64 (float64 past PRECISION_AUTO_LENGTH "
             "points by default)", **native),
        spec(op, "triton", devices=("cuda",), compute="float32", module=_ENGINE_MODULES["triton"], **native),
        spec(op, "cuda", devices=("cuda",), module=_ENGINE_MODULES["cuda"],
             note="N, M limited by shared memory (the error says what to change)", **native))


_declare("soft_dtw", reference_jvp=True)
_declare("soft_dtw_cost", reference_jvp=True)
_declare("soft_dtw_alignment", differentiable=False)   # E itself; not differentiable
_declare("dilate")  # the reference differentiates inside (autograd.grad): no forward mode


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _as_3d(t: torch.Tensor, name: str, fn: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 2:
        return t.unsqueeze(-1)
    if t.dim() == 3:
        return t
    raise ValueError(f"{fn}: {name} must be [B, N] (univariate) or [B, N, d], got shape {tuple(t.shape)}")


def _compute_dtype(t: torch.Tensor, fn: str) -> torch.dtype:
    if not t.is_floating_point():
        raise TypeError(f"{fn}: expected a floating-point tensor, got {t.dtype}; convert with .float()")
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _precision_dtype(dtype: torch.dtype, device, N: int, M: int, precision: str, fn: str) -> torch.dtype:
    """The dtype the kernels compute in, given the inputs' compute dtype and `precision`."""
    if precision not in _PRECISIONS:
        raise ValueError(f"{fn}: precision must be one of {_PRECISIONS}, got {precision!r}")
    if dtype == torch.float64 or precision == "float32":
        return dtype
    if precision == "float64" or (torch.device(device).type == "cpu" and max(N, M) > PRECISION_AUTO_LENGTH):
        return torch.float64
    return dtype


def _check_gamma(gamma: float, fn: str) -> float:
    gamma = float(gamma)
    if not math.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"{fn}: gamma must be a finite number > 0 (the softmin temperature), got {gamma}")
    return gamma


def _lengths(lengths: Lengths, B: int, full: int, device, name: str, fn: str) -> torch.Tensor:
    if full == 0:
        raise ValueError(f"{fn}: {name.split('_')[-1]} has length 0; soft-DTW needs non-empty sequences")
    if lengths is None:
        return torch.full((B,), full, dtype=torch.int64)
    out = torch.as_tensor(lengths).to("cpu")
    if out.is_floating_point() or out.dim() != 1 or out.numel() != B:
        raise ValueError(f"{fn}: {name} must be B={B} integers, got {tuple(out.shape)} {out.dtype}")
    out = out.to(torch.int64).contiguous()
    if torch.compiler.is_compiling():
        _graph_assert(((out >= 1) & (out <= full)).all(), f"{fn}: {name} must lie in [1, {full}] (the padded length)")
        return out
    if B and (int(out.min()) < 1 or int(out.max()) > full):
        raise ValueError(f"{fn}: {name} must lie in [1, {full}] (the padded length), got min {int(out.min())}, "
                         f"max {int(out.max())}")
    return out


def _check_bandwidth(bandwidth, n: torch.Tensor, m: torch.Tensor, fn: str) -> float:
    if bandwidth is None:
        return -1.0
    bw = float(bandwidth)
    if not math.isfinite(bw) or bw < 0:
        raise ValueError(f"{fn}: bandwidth must be None or a finite number >= 0, got {bandwidth}")
    msg = (f"{fn}: bandwidth={bw} leaves no warping path between sequences of different lengths "
           "(the band is feasible for bandwidth >= 0.5); widen it or pass bandwidth=None")
    if bw < 0.5 and torch.compiler.is_compiling():
        _graph_assert((n == m).all(), msg)
    elif bw < 0.5 and bool((n != m).any()):
        raise ValueError(msg)
    return bw


def _valid_mask(lengths: torch.Tensor, full: int, device) -> torch.Tensor:
    return torch.arange(full, device=device).unsqueeze(0) < _device_lengths(lengths, device).unsqueeze(1)


def _graph_assert(ok: torch.Tensor, msg: str) -> None:
    """A data-dependent check under torch.compile, where Python cannot branch on a tensor's value:
    an assertion recorded in the graph (it raises RuntimeError(msg) when the compiled code runs)."""
    torch._assert_async(ok, msg)


def _check_finite(t: torch.Tensor, mask: Optional[torch.Tensor], name: str, fn: str) -> None:
    # On CUDA tensors the check would wait for the GPU (a host sync on every call), so it runs only
    # when asked for: torch.autograd.set_detect_anomaly(True) or ABCC_CHECK_FINITE=1. Without it
    # NaN or Inf inputs give NaN or Inf outputs there.
    if t.is_cuda and not (torch.is_anomaly_enabled() or os.environ.get("ABCC_CHECK_FINITE") == "1"):
        return
    if torch.compiler.is_compiling():
        ok = torch.isfinite(t.detach()) if mask is None else \
            torch.isfinite(t.detach()) | ~mask.view(mask.shape + (1,) * (t.dim() - mask.dim()))
        _graph_assert(ok.all(), f"{fn}: {name} contains NaN or Inf; clean or mask the input "
                      "(padding beyond the lengths may hold anything)")
        return
    if mask is None and bool(torch.isfinite(t.detach().sum())):
        return  # one reduction, no temporaries; a NaN/Inf (or an overflowing sum) takes the full check
    bad = ~torch.isfinite(t)
    if mask is not None:
        bad = bad & mask.view(mask.shape + (1,) * (t.dim() - mask.dim()))
    if bool(bad.any()):
        idx = [int(v) for v in bad.nonzero()[0]]
        raise ValueError(f"{fn}: {name} contains NaN or Inf ({int(bad.sum())} values, first at index {idx}); "
                         "clean or mask the input (padding beyond the lengths may hold anything)")


def _prepare_pair(x, y, lengths_x, lengths_y, fn, names=("x", "y"), precision="auto"):
    x3 = _as_3d(x, names[0], fn)
    y3 = _as_3d(y, names[1], fn)
    if x3.shape[0] != y3.shape[0]:
        raise ValueError(f"{fn}: batch sizes differ: {names[0]} has {x3.shape[0]}, {names[1]} has {y3.shape[0]}")
    if x3.shape[2] != y3.shape[2]:
        raise ValueError(f"{fn}: feature sizes differ: {names[0]} has d={x3.shape[2]}, {names[1]} has d={y3.shape[2]}")
    if x3.device != y3.device:
        raise ValueError(f"{fn}: {names[0]} is on {x3.device} but {names[1]} is on {y3.device}")
    dtype = _compute_dtype(x3, fn)
    if _compute_dtype(y3, fn) != dtype:
        dtype = torch.float64 if torch.float64 in (x3.dtype, y3.dtype) else torch.float32
    B, N, M = x3.shape[0], x3.shape[1], y3.shape[1]
    dtype = _precision_dtype(dtype, x3.device, N, M, precision, fn)
    n = _lengths(lengths_x, B, N, x3.device, f"lengths_{names[0]}", fn)
    m = _lengths(lengths_y, B, M, x3.device, f"lengths_{names[1]}", fn)
    return _mask_padding(x3, lengths_x, n, dtype, names[0], fn), _mask_padding(y3, lengths_y, m, dtype, names[1], fn), n, m


def _mask_padding(t: torch.Tensor, lengths: Lengths, n: torch.Tensor, dtype, name: str, fn: str) -> torch.Tensor:
    """Checks the valid part is finite; padding is replaced by zeros (NaN-proof, and its gradient is
    exactly zero). Without lengths there is no padding: no mask is built."""
    if lengths is None:
        _check_finite(t, None, name, fn)
        return t.to(dtype)
    mask = _valid_mask(n, t.shape[1], t.device)
    _check_finite(t, mask, name, fn)
    return torch.where(mask.unsqueeze(-1), t.to(dtype), torch.zeros((), dtype=dtype, device=t.device))


def pairwise_sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean costs D_ij = ||x_i - y_j||^2.

    x [B, N, d], y [B, M, d] -> [B, N, M]. Exact differences for d = 1; for d > 1 the GEMM form
    ||x||^2 + ||y||^2 - 2 x.y (clamped at 0), whose gradient is two batched GEMMs and never
    materialises a [B, N, M, d] tensor.
    """
    if x.shape[-1] == 1:
        return (x[:, :, None, 0] - y[:, None, :, 0]) ** 2
    xx = (x * x).sum(-1)
    yy = (y * y).sum(-1)
    return torch.baddbmm(xx[:, :, None] + yy[:, None, :], x, y.transpose(1, 2), alpha=-2.0).clamp_min(0.0)


def default_omega(n: torch.Tensor, m: torch.Tensor, N: int, M: int, dtype, device) -> torch.Tensor:
    """DILATE's temporal penalty, Omega_ij = ((i+1)/n - (j+1)/m)^2 per pair: [B, N, M].

    For n = m this is the original (i - j)^2 / n^2.
    """
    i = torch.arange(1, N + 1, dtype=dtype, device=device).view(1, N, 1)
    j = torch.arange(1, M + 1, dtype=dtype, device=device).view(1, 1, M)
    nn = n.to(device=device, dtype=dtype).view(-1, 1, 1)
    mm = m.to(device=device, dtype=dtype).view(-1, 1, 1)
    return (i / nn - j / mm) ** 2


# ---------------------------------------------------------------------------------------------
# reference backend: a plain anti-diagonal loop; autograd gives E and (double backward) H.Omega
# ---------------------------------------------------------------------------------------------
def _reference_value(D: torch.Tensor, n: torch.Tensor, m: torch.Tensor, gamma: float, bandwidth: float) -> torch.Tensor:
    """R_{n-1, m-1} per pair, differentiable (to any order) by autograd. D [B, N, M] -> [B]."""
    B, N, M = D.shape
    dev, dt = D.device, D.dtype
    inf = torch.full((), float("inf"), dtype=dt, device=dev)
    nb = n.to(dev).view(B, 1)
    mb = m.to(dev).view(B, 1)
    i = torch.arange(N, device=dev).view(1, N)
    span = torch.maximum(nb - 1, mb - 1).to(dt)
    # diagonals indexed by slot = i + 1 (slot 0 is row -1)
    prev2 = torch.full((B, N + 1), float("inf"), dtype=dt, device=dev)
    prev2[:, 0] = 0.0  # R_{-1,-1}
    prev1 = torch.full((B, N + 1), float("inf"), dtype=dt, device=dev)
    last = (nb + mb - 2).view(B)
    value = D.new_zeros(B)
    for k in range(N + M - 1):
        j = k - i
        valid = (j >= 0) & (j < mb) & (i < nb)
        if bandwidth >= 0:
            valid = valid & ((i * (mb - 1) - j * (nb - 1)).to(dt).abs() <= bandwidth * span)
        Dk = D.gather(2, j.clamp(0, M - 1).expand(B, N).unsqueeze(-1)).squeeze(-1)
        preds = torch.stack([prev2[:, :N], prev1[:, :N], prev1[:, 1:]])  # (i-1,j-1), (i-1,j), (i,j-1)
        dead = torch.isinf(preds.amin(0))
        safe = torch.where(dead.unsqueeze(0), torch.zeros_like(preds), preds)
        softmin = -gamma * torch.logsumexp(-safe / gamma, dim=0)
        cell = torch.where(valid & ~dead, Dk + softmin, inf)
        hit = last == k
        if torch.compiler.is_compiling() or bool(hit.any()):  # (compiled: no branch on a value)
            value = torch.where(hit, cell.gather(1, (nb - 1)).squeeze(1), value)
        prev2, prev1 = prev1, torch.cat([inf.expand(B, 1), cell], dim=1)
    return value


def _reference(D, n, m, gamma, bandwidth, omega, want_temporal):
    """(value [B], temporal [B] or None), differentiable in D (E and H.Omega by autograd)."""
    if not want_temporal:
        return _reference_value(D, n, m, gamma, bandwidth), None
    differentiable = torch.is_grad_enabled() and D.requires_grad
    with torch.enable_grad():
        Dg = D if differentiable else D.detach().requires_grad_(True)
        value = _reference_value(Dg, n, m, gamma, bandwidth)
        (E,) = torch.autograd.grad(value.sum(), Dg, create_graph=differentiable)
    temporal = (E * omega).sum((1, 2))
    if not differentiable:
        value, temporal = value.detach(), temporal.detach()
    return value, temporal


def _reference_alignment(D, n, m, gamma, bandwidth):
    with torch.enable_grad():
        Dg = D.detach().requires_grad_(True)
        (E,) = torch.autograd.grad(_reference_value(Dg, n, m, gamma, bandwidth).sum(), Dg)
    return E


# ---------------------------------------------------------------------------------------------
# native backends: engines with forward(...) / backward(...) wrapped in autograd Functions
# ---------------------------------------------------------------------------------------------
class _CpuEngine:
    """C++/OpenMP kernels of csrc/soft_dtw/soft_dtw.cpp. Computes the cost ||x_i - y_j||^2 inside the
    sweep for any d (no [B, N, M] tensor; csrc/soft_dtw/soft_dtw_features.h for d > 1).

    Threads: torch.get_num_threads(), at least ~1M cells each, 1 in a forked child
    (see ops._backend.cpu_threads).

    Engine protocol (every engine: this one, `_soft_dtw_triton.ENGINE`, `_soft_dtw_cuda.ENGINE`):
    `forward(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save)` -> (value, temporal or
    None, state or None) and `backward(..., want_temporal, state, grad_value, grad_temporal,
    need=(need_dx, need_dy))` -> (G,) for a cost matrix, (dx, dy) for sequences, where an engine
    may skip the work of a gradient `need` marks False (its entry is then unused). For the custom
    ops, which pass only tensors, the state travels as its first three tensors, flattened,
    `unpack_state(tensors, want_temporal, variant)` rebuilds it and `state_dtypes(dtype)` gives
    their dtypes to the fake implementation. An engine with several kernel layouts also has `variant()`, the layout code
    fixed per call (the backward must read the state in the forward's layout), and takes it as
    `forward(..., code=variant)`.
    """

    supports_seq = True
    supports_multivariate = True
    # Which C++ engine runs: "auto" (by shape), "pairs" (one pair at a time, SIMD along
    # anti-diagonals) or "lanes" (one pair per SIMD lane; needs every pair at the padded lengths,
    # else the pair engine runs); "lanes_blocked" is "lanes" with multivariate costs always in
    # diagonal blocks, never the whole-matrix tiles of short series. Tests pin it; users have no
    # reason to.
    choice = "auto"
    _CODES = {"auto": 0, "pairs": 1, "lanes": 2, "lanes_blocked": 3}

    @staticmethod
    def _threads(n, m) -> int:
        return cpu_threads(work=int((n * m).sum()))

    def forward(self, D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save, code=None):
        code = self._CODES[self.choice] if code is None else code
        # by keyword: the fields of _C.SoftDtwParams (csrc/soft_dtw/binding.cpp)
        value, temporal, r, rt, off = native_module().sdtw_cpu_forward(
            D=D, x=x, y=y, n=n, m=m, gamma=gamma, bandwidth=bandwidth, omega=omega, want_temporal=want_temporal,
            save=save, threads=self._threads(n, m), engine=code)
        return value, (temporal if want_temporal else None), (r, rt, off, code)

    def backward(self, D, x, y, n, m, gamma, bandwidth, omega, want_temporal, state, grad_value, grad_temporal,
                 need=(True, True)):
        r, rt, off, code = state
        G, dx, dy = native_module().sdtw_cpu_backward(
            D=D, x=x, y=y, n=n, m=m, gamma=gamma, bandwidth=bandwidth, omega=omega, want_temporal=want_temporal,
            r=r, rt=rt, off=off, grad_value=grad_value, grad_temporal=grad_temporal, threads=self._threads(n, m),
            engine=code, need_dx=bool(need[0]), need_dy=bool(need[1]))
        return (G,) if D is not None else (dx, dy)

    def variant(self) -> int:
        return self._CODES[self.choice]

    @staticmethod
    def state_dtypes(dtype):
        return dtype, dtype, torch.float64  # R, its tangent, float64 offsets

    @staticmethod
    def unpack_state(tensors, want_temporal, variant):
        return (*tensors, variant)  # the C++ backward checks sizes only, so flat views do


_ENGINE_CACHE: dict = {}


def _engine(name: str):
    if name not in _ENGINE_CACHE:
        if name == "cpu":
            _ENGINE_CACHE[name] = _CpuEngine()
        else:
            module = importlib.import_module(_ENGINE_MODULES[name])
            _ENGINE_CACHE[name] = module.ENGINE
    return _ENGINE_CACHE[name]


_op.use_engines(lambda name: _engine(name))  # late-bound: a test may wrap _engine


def _device_lengths(t: torch.Tensor, device) -> torch.Tensor:
    # The lengths live on the host (they are validated there); a pageable host-to-device copy would
    # wait for the GPU, a pinned one with non_blocking does not.
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _plan(device, backend, seq_dims: int):
    """(backend name, the engine's layout code or -1, whether the kernel computes the cost of the
    sequences itself): seq_dims is the sequences' feature size d, 0 for a cost matrix. Plain Python,
    a constant under torch.compile (see _library.constant)."""
    name = resolve("soft_dtw", device, backend, _registry.implemented("soft_dtw"))
    if name == "reference":
        return name, -1, False
    engine = _engine(name)
    variant = engine.variant() if hasattr(engine, "variant") else -1
    seq = seq_dims > 0 and getattr(engine, "supports_seq", False) and (
        seq_dims == 1 or getattr(engine, "supports_multivariate", False))
    return name, variant, bool(seq)


def _core(D, x3, y3, n, m, gamma, bandwidth, omega, want_temporal, backend):
    """Dispatch. Give D [B, N, M] or x3 [B, N, d], y3 [B, M, d]. Returns (value, temporal|None)."""
    ref = D if D is not None else x3
    name, variant, seq = _library.constant(_plan, ref.device, backend, 0 if D is not None else x3.shape[-1])
    if name == "reference":
        if D is None:
            D = pairwise_sq_dist(x3, y3)
        if want_temporal and omega is None:
            omega = default_omega(n, m, D.shape[1], D.shape[2], D.dtype, D.device)
        return _reference(D, n, m, gamma, bandwidth, omega, want_temporal)
    nd, md = _device_lengths(n, ref.device), _device_lengths(m, ref.device)
    if omega is not None:
        omega = omega.to(ref.dtype).contiguous()
    if seq:  # univariate series go in as [B, N], multivariate ones as [B, N, d]
        D = None
        x, y = ((x3[..., 0], y3[..., 0]) if x3.shape[-1] == 1 else (x3, y3))
        x, y = x.contiguous(), y.contiguous()
    else:
        D, x, y = (D if D is not None else pairwise_sq_dist(x3, y3)).contiguous(), None, None
    value, temporal = _op.native(D, x, y, nd, md, gamma, bandwidth, omega, want_temporal, name, variant)
    return value, (temporal if want_temporal else None)


def _restore_dtype(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """float64 for float64 inputs, else float32 (half inputs, and float32 ones computed in float64)."""
    return t.to(torch.float64 if like.dtype == torch.float64 else torch.float32)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def soft_dtw(x: torch.Tensor, y: torch.Tensor, gamma: float = 1.0, *, bandwidth: Optional[float] = None,
             lengths_x: Lengths = None, lengths_y: Lengths = None, normalize: bool = False,
             precision: str = "auto", backend: Optional[str] = None) -> torch.Tensor:
    """Batched soft-DTW between x [B, N] or [B, N, d] and y [B, M] or [B, M, d] -> [B].

    Cost: squared Euclidean. `normalize=True` gives the soft-DTW divergence of Blondel, Mensch &
    Vert (2021), S(x, y) - (S(x, x) + S(y, y)) / 2, which is zero at x = y and works for N != M.
    Differentiable in x and y. `precision`: see the module docstring.

    >>> x, y = torch.randn(8, 64), torch.randn(8, 48)
    >>> soft_dtw(x, y, gamma=0.1).shape
    torch.Size([8])
    """
    fn = "soft_dtw"
    gamma = _check_gamma(gamma, fn)
    x3, y3, n, m = _prepare_pair(x, y, lengths_x, lengths_y, fn, precision=precision)
    bw = _check_bandwidth(bandwidth, n, m, fn)
    value, _ = _core(None, x3, y3, n, m, gamma, bw, None, False, backend)
    if normalize:
        bw_n = -1.0 if bandwidth is None else bw
        sxx, _ = _core(None, x3, x3, n, n, gamma, bw_n, None, False, backend)
        syy, _ = _core(None, y3, y3, m, m, gamma, bw_n, None, False, backend)
        value = value - 0.5 * (sxx + syy)
    return _restore_dtype(value, x)


def soft_dtw_cost(D: torch.Tensor, gamma: float = 1.0, *, bandwidth: Optional[float] = None,
                  lengths_x: Lengths = None, lengths_y: Lengths = None, precision: str = "auto",
                  backend: Optional[str] = None) -> torch.Tensor:
    """Soft-DTW on a given cost matrix D [B, N, M] -> [B], differentiable in D (dR/dD = E)."""
    fn = "soft_dtw_cost"
    if not isinstance(D, torch.Tensor) or D.dim() != 3:
        raise ValueError(f"{fn}: D must be a [B, N, M] tensor, got "
                         f"{tuple(D.shape) if isinstance(D, torch.Tensor) else type(D).__name__}")
    gamma = _check_gamma(gamma, fn)
    B, N, M = D.shape
    dtype = _precision_dtype(_compute_dtype(D, fn), D.device, N, M, precision, fn)
    n = _lengths(lengths_x, B, N, D.device, "lengths_x", fn)
    m = _lengths(lengths_y, B, M, D.device, "lengths_y", fn)
    mask = _valid_mask(n, N, D.device).unsqueeze(2) & _valid_mask(m, M, D.device).unsqueeze(1)
    _check_finite(D, mask, "D", fn)
    bw = _check_bandwidth(bandwidth, n, m, fn)
    Dc = torch.where(mask, D.to(dtype), torch.zeros((), dtype=dtype, device=D.device))
    value, _ = _core(Dc, None, None, n, m, gamma, bw, None, False, backend)
    return _restore_dtype(value, D)


def soft_dtw_alignment(x: torch.Tensor, y: torch.Tensor, gamma: float = 1.0, *,
                       bandwidth: Optional[float] = None, lengths_x: Lengths = None, lengths_y: Lengths = None,
                       precision: str = "auto", backend: Optional[str] = None) -> torch.Tensor:
    """Expected alignment E = dR/dD [B, N, M] (entries in [0, 1]; zero on padding). Not differentiable."""
    fn = "soft_dtw_alignment"
    gamma = _check_gamma(gamma, fn)
    x3, y3, n, m = _prepare_pair(x, y, lengths_x, lengths_y, fn, precision=precision)
    bw = _check_bandwidth(bandwidth, n, m, fn)
    D = pairwise_sq_dist(x3.detach(), y3.detach()).contiguous()
    name, variant, _ = _library.constant(_plan, D.device, backend, 0)
    if name == "reference":
        return _restore_dtype(_reference_alignment(D, n, m, gamma, bw), x)
    nd, md = _device_lengths(n, D.device), _device_lengths(m, D.device)
    common = (D, None, None, nd, md, gamma, bw, None, False)
    out = _library.call("soft_dtw_forward", _op.forward_op_impl, *common, True, name, variant)
    ones = torch.ones(D.shape[0], dtype=D.dtype, device=D.device)
    E, _, _ = _library.call("soft_dtw_backward", _op.backward_impl, *common, *out[2:], ones, None, name, variant)
    return _restore_dtype(E, x)


class _ScaleGrad(torch.autograd.Function):
    """Identity whose backward multiplies by `scale` (DILATE's legacy batch scaling)."""

    @staticmethod
    def forward(ctx, t, scale):
        ctx.scale = scale
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def dilate(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, gamma: float = 0.01, *,
           omega: Optional[torch.Tensor] = None, lengths: Lengths = None, reduction: str = "mean",
           legacy_batch_scale: bool = False, bandwidth: Optional[float] = None,
           precision: str = "auto", backend: Optional[str] = None):
    """DILATE loss (Le Guen & Thome 2019): returns (loss, shape, temporal).

    pred [B, N] or [B, N, d], target [B, M] or [B, M, d]. shape = soft-DTW (gamma), temporal =
    <E, Omega>; loss = alpha * shape + (1 - alpha) * temporal. `omega` [N, M] or [B, N, M]
    overrides the default ((i+1)/n - (j+1)/m)^2. `lengths` is one tensor [B] for both series, or a
    pair (lengths_pred, lengths_target). `reduction`: "mean" (over the batch), "sum" or "none".
    The gradient is exact, including the temporal term's Hessian-vector product.
    `legacy_batch_scale=True` reproduces the original code's gradients, which are B times too
    large (its custom backward omits the 1/B of the batch mean); the loss value is unchanged.
    `precision`: see the module docstring.

    >>> loss, shape, temporal = dilate(torch.randn(4, 32), torch.randn(4, 32))
    """
    fn = "dilate"
    gamma = _check_gamma(gamma, fn)
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{fn}: alpha must lie in [0, 1], got {alpha}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if isinstance(lengths, (tuple, list)) and len(lengths) == 2 and not isinstance(lengths[0], int):
        lengths_p, lengths_t = lengths
    else:
        lengths_p = lengths_t = lengths
    x3, y3, n, m = _prepare_pair(pred, target, lengths_p, lengths_t, fn, names=("pred", "target"),
                                 precision=precision)
    bw = _check_bandwidth(bandwidth, n, m, fn)
    B, N, M = x3.shape[0], x3.shape[1], y3.shape[1]
    if legacy_batch_scale and reduction == "mean":
        x3 = _ScaleGrad.apply(x3, float(B))
        y3 = _ScaleGrad.apply(y3, float(B))
    if omega is not None:
        if not isinstance(omega, torch.Tensor) or omega.dim() not in (2, 3) or tuple(omega.shape[-2:]) != (N, M) \
                or (omega.dim() == 3 and omega.shape[0] not in (1, B)):
            raise ValueError(f"{fn}: omega must be [N, M] = [{N}, {M}] or [B, N, M], got "
                             f"{tuple(omega.shape) if isinstance(omega, torch.Tensor) else type(omega).__name__}")
        _check_finite(omega, None, "omega", fn)
        omega = omega.to(device=x3.device, dtype=x3.dtype)
        if omega.dim() == 2:
            omega = omega.unsqueeze(0)  # [1, N, M]: shared by the batch (kernels read it with stride 0)
        omega = omega.contiguous()
    shape, temporal = _core(None, x3, y3, n, m, gamma, bw, omega, True, backend)
    loss = alpha * shape + (1.0 - alpha) * temporal
    if reduction == "mean":
        loss, shape, temporal = loss.mean(), shape.mean(), temporal.mean()
    elif reduction == "sum":
        loss, shape, temporal = loss.sum(), shape.sum(), temporal.sum()
    return _restore_dtype(loss, pred), _restore_dtype(shape, pred), _restore_dtype(temporal, pred)
