"""Loss modules over `abcc_fast.ops`: soft-DTW, the soft-DTW divergence and DILATE as `torch.nn.Module`s.

They take what the libraries people come from take (docs/losses.md has the migration table):

    tslearn   SoftDTWLossPyTorch(gamma, normalize, dist_func)   -> SoftDTW(gamma, normalize, dist_func=...)
    pysdtw    SoftDTW(gamma, dist_func, use_cuda, bandwidth)    -> SoftDTW(gamma, bandwidth=..., dist_func=...)
    DILATE    dilate_loss(outputs, targets, alpha, gamma, device)
              -> DILATE(alpha, gamma, return_components=True)(outputs, targets)

Inputs: [B, N, d] (any d), [B, N] (univariate), or a `PackedSequence` (batch of ragged series);
x and y may have different lengths N != M. `SoftDTW` and `SoftDTWDivergence` return one value per
pair ([B], `reduction="none"`, as tslearn and pysdtw do); `DILATE` returns the batch mean, as the
original does, with the exact gradient of that mean (the original's is B times larger; pass
`legacy_batch_scale=True` to reproduce it).

>>> import torch
>>> from abcc_fast.nn import SoftDTW, DILATE
>>> x, y = torch.randn(4, 20, 3, requires_grad=True), torch.randn(4, 24, 3)
>>> SoftDTW(gamma=0.1, normalize=True)(x, y).mean().backward()
>>> DILATE(alpha=0.5, gamma=0.01)(torch.randn(4, 20, 1), torch.randn(4, 20, 1)).shape
torch.Size([])
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from . import ops
from .ops.soft_dtw import _PRECISIONS, Lengths, _check_gamma

__all__ = ["SoftDTW", "SoftDTWDivergence", "DILATE"]

REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction, cls: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{cls}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _check_bandwidth(bandwidth, cls: str) -> Optional[float]:
    if bandwidth is None:
        return None
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real) or not math.isfinite(bandwidth) \
            or bandwidth < 0:
        hint = (" (tslearn's third positional argument is dist_func: pass it by keyword, dist_func=...)"
                if callable(bandwidth) else "")
        raise ValueError(f"{cls}: bandwidth must be None (no band) or a finite number >= 0 (the Sakoe-Chiba "
                         f"radius), got {bandwidth!r}{hint}")
    return float(bandwidth)


def _check_precision(precision, cls: str) -> str:
    if precision not in _PRECISIONS:
        raise ValueError(f"{cls}: precision must be one of {_PRECISIONS} (see abcc_fast.ops.soft_dtw), "
                         f"got {precision!r}")
    return precision


def _reduce(t: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return t.mean()
    if reduction == "sum":
        return t.sum()
    return t


def _check_device(t: torch.Tensor, use_cuda: Optional[bool], device, cls: str, name: str) -> None:
    if use_cuda is not None and bool(use_cuda) != (t.device.type == "cuda"):
        raise ValueError(f"{cls}: use_cuda={use_cuda} but {name} is on {t.device}; the backend follows the "
                         "inputs' device, so move them (.cuda() / .cpu()) or drop use_cuda")
    if device is not None and torch.device(device).type != t.device.type:
        raise ValueError(f"{cls}: device={device} was given but {name} is on {t.device}; the loss runs where "
                         "its inputs are, so move them with .to(device) or drop the device argument")


def _unpack(t, lengths: Lengths, cls: str, name: str):
    """(padded tensor, lengths) for a tensor or a PackedSequence (batch-first)."""
    if isinstance(t, PackedSequence):
        if lengths is not None:
            raise ValueError(f"{cls}: {name} is a PackedSequence, which carries its own lengths; "
                             f"do not pass lengths_{name} as well")
        padded, lens = pad_packed_sequence(t, batch_first=True)
        return padded, lens
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{cls}: {name} must be a torch.Tensor [B, N, d] / [B, N] or a PackedSequence, "
                        f"got {type(t).__name__}")
    if t.dim() not in (2, 3):
        raise ValueError(f"{cls}: {name} must be [B, N, d] or [B, N] (univariate), got shape {tuple(t.shape)}; "
                         "add a batch dimension with .unsqueeze(0) for a single series")
    return t, lengths


class SoftDTW(nn.Module):
    """Soft-DTW (Cuturi & Blondel 2017) between batches of series: x [B, N, d], y [B, M, d] -> [B].

    Args:
        gamma: softmin temperature (> 0); smaller is closer to DTW.
        normalize: if True, the soft-DTW divergence sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2, as
            tslearn's `normalize=True` (zero at x = y, >= 0).
        bandwidth: Sakoe-Chiba radius: cell (i, j) is allowed iff |i - j| <= bandwidth when N = M
            (pysdtw's `bandwidth`, tslearn's `sakoe_chiba_radius`); for N != M the band follows the
            normalised diagonal (see `abcc_fast.ops.soft_dtw`). None: no band.
        reduction: "none" (one value per pair, as tslearn and pysdtw), "mean" or "sum".
        dist_func: optional cost `dist_func(x [B, N, d], y [B, M, d]) -> [B, N, M]`, differentiable
            by autograd (tslearn's and pysdtw's `dist_func`). Default: squared Euclidean computed
            inside the kernels (no [B, N, M] tensor for d = 1).
        use_cuda: pysdtw's flag. The backend follows the inputs' device; when given, it is checked
            against it (a mismatch raises).
        precision: "auto" (float32 inputs in float32, float64 on the CPU for long series),
            "float64" or "float32"; see `abcc_fast.ops.soft_dtw`.
        backend: force an `abcc_fast.ops` backend ("reference", "cpu", "triton", "cuda").

    forward(x, y, lengths_x=None, lengths_y=None): x, y tensors or PackedSequences; `lengths_*`
    ([B] ints) cut each pair to x[b, :n_b], y[b, :m_b] (padding gets zero gradient).
    """

    def __init__(self, gamma: float = 1.0, normalize: bool = False, bandwidth: Optional[float] = None,
                 reduction: str = "none", *, dist_func: Optional[Callable] = None,
                 use_cuda: Optional[bool] = None, precision: str = "auto", backend: Optional[str] = None):
        super().__init__()
        cls = type(self).__name__
        if not isinstance(normalize, bool):
            hint = (" (pysdtw's second positional argument is dist_func: pass it by keyword, dist_func=...)"
                    if callable(normalize) else "")
            raise TypeError(f"{cls}: normalize must be True or False, got {normalize!r}{hint}")
        if dist_func is not None and not callable(dist_func):
            raise TypeError(f"{cls}: dist_func must be a callable (x [B, N, d], y [B, M, d]) -> [B, N, M], "
                            f"got {type(dist_func).__name__}")
        if use_cuda is not None and not isinstance(use_cuda, bool):
            raise TypeError(f"{cls}: use_cuda must be True, False or None, got {use_cuda!r}")
        self.gamma = _check_gamma(gamma, cls)
        self.normalize = normalize
        self.bandwidth = _check_bandwidth(bandwidth, cls)
        self.reduction = _check_reduction(reduction, cls)
        self.dist_func = dist_func
        self.use_cuda = use_cuda
        self.precision = _check_precision(precision, cls)
        self.backend = backend

    def extra_repr(self) -> str:
        parts = [f"gamma={self.gamma}", f"normalize={self.normalize}", f"bandwidth={self.bandwidth}",
                 f"reduction={self.reduction!r}"]
        if self.dist_func is not None:
            parts.append(f"dist_func={getattr(self.dist_func, '__name__', self.dist_func)}")
        return ", ".join(parts)

    def _cost_value(self, a, b, la, lb) -> torch.Tensor:
        cls = type(self).__name__
        a3 = a.unsqueeze(-1) if a.dim() == 2 else a
        b3 = b.unsqueeze(-1) if b.dim() == 2 else b
        if a3.shape[0] != b3.shape[0] or a3.shape[2] != b3.shape[2]:
            raise ValueError(f"{cls}: x {tuple(a3.shape)} and y {tuple(b3.shape)} must agree in batch size and "
                             "feature size d")
        D = self.dist_func(a3, b3)
        want = (a3.shape[0], a3.shape[1], b3.shape[1])
        if not isinstance(D, torch.Tensor) or tuple(D.shape) != want:
            got = tuple(D.shape) if isinstance(D, torch.Tensor) else type(D).__name__
            raise ValueError(f"{cls}: dist_func must return the cost matrix [B, N, M] = {list(want)}, got {got}")
        return ops.soft_dtw_cost(D, self.gamma, bandwidth=self.bandwidth, lengths_x=la, lengths_y=lb,
                                 precision=self.precision, backend=self.backend)

    def forward(self, x, y, lengths_x: Lengths = None, lengths_y: Lengths = None) -> torch.Tensor:
        cls = type(self).__name__
        x, lengths_x = _unpack(x, lengths_x, cls, "x")
        y, lengths_y = _unpack(y, lengths_y, cls, "y")
        for t, name in ((x, "x"), (y, "y")):
            _check_device(t, self.use_cuda, None, cls, name)
        if self.dist_func is None:
            value = ops.soft_dtw(x, y, self.gamma, bandwidth=self.bandwidth, lengths_x=lengths_x,
                                 lengths_y=lengths_y, normalize=self.normalize, precision=self.precision,
                                 backend=self.backend)
        else:
            value = self._cost_value(x, y, lengths_x, lengths_y)
            if self.normalize:
                value = value - 0.5 * (self._cost_value(x, x, lengths_x, lengths_x)
                                       + self._cost_value(y, y, lengths_y, lengths_y))
        return _reduce(value, self.reduction)


class SoftDTWDivergence(SoftDTW):
    """The soft-DTW divergence (Blondel, Mensch & Vert 2021): `SoftDTW(..., normalize=True)`.

    sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2: >= 0, zero at x = y, defined for N != M.
    Same arguments as :class:`SoftDTW` less `normalize`.
    """

    def __init__(self, gamma: float = 1.0, bandwidth: Optional[float] = None, reduction: str = "none", *,
                 dist_func: Optional[Callable] = None, use_cuda: Optional[bool] = None,
                 precision: str = "auto", backend: Optional[str] = None):
        super().__init__(gamma, True, bandwidth, reduction, dist_func=dist_func, use_cuda=use_cuda,
                         precision=precision, backend=backend)

    def extra_repr(self) -> str:
        return super().extra_repr().replace("normalize=True, ", "")


class DILATE(nn.Module):
    """DILATE (Le Guen & Thome 2019): alpha * soft-DTW + (1 - alpha) * temporal distortion.

    pred [B, N, d] or [B, N], target [B, M, d] or [B, M]. temporal = <E, Omega> with E the expected
    alignment and Omega_ij = ((i+1)/N - (j+1)/M)^2 ((i - j)^2 / N^2 for N = M, the original's).

    Args:
        alpha: weight of the shape term, in [0, 1].
        gamma: softmin temperature (> 0) of the shape term and of E.
        device: the original `dilate_loss`'s argument; the loss runs where its inputs are, and a
            given device is checked against them (a mismatch raises).
        bandwidth: optional Sakoe-Chiba radius (see :class:`SoftDTW`).
        omega: optional temporal penalty [N, M] or [B, N, M] (a buffer: moves with `.to()`).
        reduction: "mean" (default, as the original), "sum" or "none".
        legacy_batch_scale: reproduce the original code's gradients, B times those of the batch
            mean it returns (its backward omits the 1/B); the loss value is unchanged.
        return_components: return (loss, shape, temporal) like the original `dilate_loss`
            instead of the loss alone.
        precision: "auto", "float64" or "float32" (see :class:`SoftDTW`).
        backend: force an `abcc_fast.ops` backend.

    forward(pred, target, lengths=None): `lengths` is [B] ints for both series or a pair
    (lengths_pred, lengths_target). The gradient is exact, including the temporal term's
    Hessian-vector product.
    """

    def __init__(self, alpha: float = 0.5, gamma: float = 0.01, device=None, *, bandwidth: Optional[float] = None,
                 omega: Optional[torch.Tensor] = None, reduction: str = "mean", legacy_batch_scale: bool = False,
                 return_components: bool = False, precision: str = "auto", backend: Optional[str] = None):
        super().__init__()
        cls = type(self).__name__
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"{cls}: alpha must be a number in [0, 1] (the weight of the shape term), got {alpha!r}")
        self.alpha = float(alpha)
        self.gamma = _check_gamma(gamma, cls)
        self.device = None if device is None else torch.device(device)
        self.bandwidth = _check_bandwidth(bandwidth, cls)
        self.reduction = _check_reduction(reduction, cls)
        self.legacy_batch_scale = bool(legacy_batch_scale)
        self.return_components = bool(return_components)
        self.precision = _check_precision(precision, cls)
        self.backend = backend
        if omega is not None and not isinstance(omega, torch.Tensor):
            raise TypeError(f"{cls}: omega must be a tensor [N, M] or [B, N, M], got {type(omega).__name__}")
        self.register_buffer("omega", omega, persistent=False)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, gamma={self.gamma}, bandwidth={self.bandwidth}, reduction={self.reduction!r}"
                + (", legacy_batch_scale=True" if self.legacy_batch_scale else ""))

    def forward(self, pred, target, lengths: Lengths = None):
        cls = type(self).__name__
        pred, lp = _unpack(pred, None, cls, "pred")
        target, lt = _unpack(target, None, cls, "target")
        if lp is not None or lt is not None:
            if lengths is not None:
                raise ValueError(f"{cls}: PackedSequence inputs carry their own lengths; do not pass lengths too")
            B = pred.shape[0]
            lengths = (lp if lp is not None else [pred.shape[1]] * B, lt if lt is not None else [target.shape[1]] * B)
        for t, name in ((pred, "pred"), (target, "target")):
            _check_device(t, None, self.device, cls, name)
        loss, shape, temporal = ops.dilate(pred, target, self.alpha, self.gamma, omega=self.omega, lengths=lengths,
                                           reduction=self.reduction, legacy_batch_scale=self.legacy_batch_scale,
                                           bandwidth=self.bandwidth, precision=self.precision,
                                           backend=self.backend)
        return (loss, shape, temporal) if self.return_components else loss
