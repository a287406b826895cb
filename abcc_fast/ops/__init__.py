"""The one door to every kernel of abcc_fast.

Each op has the backends `reference` (pure PyTorch), `cpu` (C++/OpenMP), `triton` and `cuda`;
see `backends()` for what runs here and `abcc_fast.ops._backend` for how one is chosen
(per call `backend=...`, environment `ABCC_BACKEND`, else automatic by device). What each op's
engines can do is declared in `abcc_fast.ops._registry` and printed by `backends_report()`; under
torch.compile the kernels are the custom ops `torch.ops.abcc.*` (`abcc_fast.ops._library`).
"""
from ._backend import BACKENDS, BackendStatus, backends
from ._registry import backends_report
from .meanflow import meanflow_integrate, meanflow_target
from .soft_dtw import dilate, soft_dtw, soft_dtw_alignment, soft_dtw_cost
from .two_stream_attention import two_stream_attention

__all__ = ["BACKENDS", "BackendStatus", "backends", "backends_report", "soft_dtw", "soft_dtw_cost",
           "soft_dtw_alignment", "dilate", "two_stream_attention", "meanflow_target", "meanflow_integrate"]
