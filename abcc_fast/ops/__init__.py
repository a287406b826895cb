"""The one door to every kernel of abcc_fast.

Each op has the backends `reference` (pure PyTorch), `cpu` (C++/OpenMP), `triton` and `cuda`;
see `backends()` for what runs here and `abcc_fast.ops._backend` for how one is chosen
(per call `backend=...`, environment `ABCC_BACKEND`, else automatic by device).
"""
from ._backend import BACKENDS, BackendStatus, backends, backends_report
from .two_stream_attention import two_stream_attention
from .meanflow import meanflow_integrate, meanflow_target  # noqa: F401  (MeanFlow helpers)

__all__ = ["BACKENDS", "BackendStatus", "backends", "backends_report", "two_stream_attention"]
