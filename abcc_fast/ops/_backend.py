"""Backend discovery and selection for every op in `abcc_fast.ops`.

Four backends, in the order automatic selection prefers them:

  cuda       CUDA C++ kernels in the native extension `abcc_fast._C` (CUDA tensors)
  triton     Triton kernels in `abcc_fast.kernels` (CUDA tensors; CPU tensors only under
             TRITON_INTERPRET=1, and then only when asked for explicitly: the interpreter is slow)
  cpu        C++/OpenMP kernels in `abcc_fast._C` (CPU tensors)
  reference  pure PyTorch, any device: the oracle and the baseline of every benchmark

Choice, strongest first: the `backend=` argument of a call, the environment variable
`ABCC_BACKEND`, then automatic by device and availability. An explicit choice that cannot run
raises with the reason; automatic choice falls back to `reference`.
"""
from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass

import torch

BACKENDS = ("reference", "cpu", "triton", "cuda")
_AUTO_ORDER = {"cuda": ("cuda", "triton", "reference"), "cpu": ("cpu", "reference")}


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str  # why not, or what it runs on


@functools.lru_cache(maxsize=None)
def native_module():
    """The compiled extension `abcc_fast._C`, or None (see `backends()` for why)."""
    try:
        return importlib.import_module("abcc_fast._C")
    except ImportError:
        return None


@functools.lru_cache(maxsize=None)
def _native_error() -> str:
    try:
        importlib.import_module("abcc_fast._C")
        return ""
    except ImportError as err:
        return (f"the native extension abcc_fast._C is not built ({err}); build it with "
                "`make install` or `pip install --no-build-isolation -e .`")


_FORKED_CHILD = False


def _mark_forked_child() -> None:
    global _FORKED_CHILD
    _FORKED_CHILD = True


# GNU OpenMP's thread pool does not survive fork(): a forked child (a DataLoader worker, a
# multiprocessing pool) that enters a parallel region hangs. Children run the CPU kernels on
# one thread instead.
os.register_at_fork(after_in_child=_mark_forked_child)


# Below about this much work per thread (DP cells for soft-DTW, ~2-5 ms) an OpenMP region costs
# more than it saves, and far more when the machine is oversubscribed: a barrier then waits for a
# descheduled thread (measured on 2 busy cores: 64 pairs of 32x32 took 16.5 ms on 2 threads,
# 3.2 ms on 1).
MIN_WORK_PER_THREAD = 1 << 20


def cpu_threads(work: int | None = None) -> int:
    """Threads for the C++ CPU kernels: torch's intra-op setting, capped so that each thread gets
    at least MIN_WORK_PER_THREAD units of `work`; 1 in a forked child."""
    if _FORKED_CHILD:
        return 1
    threads = max(1, torch.get_num_threads())
    if work is not None:
        threads = max(1, min(threads, int(work) // MIN_WORK_PER_THREAD))
    return threads


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_status(interpreted: bool) -> BackendStatus:
    try:
        import triton  # noqa: F401
    except ImportError as err:
        return BackendStatus("triton", False, f"triton is not installed ({err}); pip install triton")
    if torch.cuda.is_available():
        return BackendStatus("triton", True, f"triton {triton.__version__} on {torch.cuda.get_device_name()}")
    if interpreted:
        return BackendStatus("triton", True, f"triton {triton.__version__} under TRITON_INTERPRET=1 (CPU tensors, slow)")
    return BackendStatus("triton", False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on CPU tensors, slowly)")


@functools.lru_cache(maxsize=None)
def _status_table(interpreted: bool) -> dict:
    """Built once per process (and interpreter setting): it imports triton and asks CUDA for the
    device name, which no op call should pay for."""
    mod = native_module()
    out = {"reference": BackendStatus("reference", True, "pure PyTorch, any device")}
    if mod is None:
        out["cpu"] = BackendStatus("cpu", False, _native_error())
    else:
        threads = mod.omp_max_threads()
        out["cpu"] = BackendStatus("cpu", True, f"C++ kernels, OpenMP with {threads} thread(s), built for {mod.cpu_arch()}")
    out["triton"] = _triton_status(interpreted)
    if mod is None:
        out["cuda"] = BackendStatus("cuda", False, _native_error())
    elif not mod.has_cuda():
        out["cuda"] = BackendStatus(
            "cuda", False, "abcc_fast._C was built without CUDA (torch is a CPU build or nvcc was not found); "
            "reinstall with a CUDA torch and nvcc on PATH")
    elif not torch.cuda.is_available():
        out["cuda"] = BackendStatus("cuda", False, "built with CUDA but no CUDA device is visible")
    else:
        out["cuda"] = BackendStatus("cuda", True, f"CUDA kernels on {torch.cuda.get_device_name()}")
    return out


def status() -> dict:
    """The cached backend table (do not modify it); what `resolve` and the ops consult per call."""
    return _status_table(triton_interpreted())


def backends() -> dict[str, BackendStatus]:
    """What each backend can do on this machine and, for what it cannot, why (a copy of the table
    the ops use, built once per process).

    >>> import abcc_fast.ops as ops
    >>> ops.backends()["reference"].available
    True
    """
    return dict(status())


def _device_ok(name: str, device: torch.device) -> bool:
    if name == "reference":
        return True
    if name == "cpu":
        return device.type == "cpu"
    if name == "cuda":
        return device.type == "cuda"
    if name == "triton":
        return device.type == "cuda" or (device.type == "cpu" and triton_interpreted())
    return False


def resolve(op: str, device: torch.device, requested: str | None, implemented: tuple[str, ...]) -> str:
    """Pick the backend that runs `op` on tensors living on `device`.

    `implemented` lists the backends this op has. `requested` is the per-call choice (None: use
    ABCC_BACKEND, else automatic).
    """
    explicit = requested if requested is not None else (os.environ.get("ABCC_BACKEND") or None)
    if explicit is not None and explicit != "auto":
        if explicit not in BACKENDS:
            raise ValueError(f"{op}: unknown backend {explicit!r}; choose one of {BACKENDS} or 'auto' "
                             f"(from {'the backend= argument' if requested else 'ABCC_BACKEND'})")
        if explicit not in implemented:
            raise ValueError(f"{op}: backend {explicit!r} does not implement this op; it has {implemented}")
        st = _status_table(triton_interpreted())[explicit]
        if not st.available:
            raise RuntimeError(f"{op}: backend {explicit!r} is not available: {st.reason}")
        if not _device_ok(explicit, device):
            raise ValueError(f"{op}: backend {explicit!r} cannot run on {device.type} tensors; "
                             f"move the inputs or choose another backend")
        return explicit
    table = _status_table(triton_interpreted())
    for name in _AUTO_ORDER.get(device.type, ("reference",)):
        if name in implemented and table[name].available and _device_ok(name, device):
            # Under the interpreter triton is never picked automatically for CPU tensors.
            if name == "triton" and device.type != "cuda":
                continue
            return name
    return "reference"
