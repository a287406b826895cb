"""The torch.library layer of abcc_fast.ops: every native kernel is also a custom op `abcc::*`.

Why: `torch.compile` cannot look inside a kernel that lives in a pybind11 extension or a Triton
launch helper; an `autograd.Function` around one is a graph break. Each op therefore registers
its kernels as `torch.library.custom_op`s with a fake (meta) implementation, which computes the
output shapes and dtypes without running a kernel, and an autograd formula
(`register_autograd`). Dynamo then records `torch.ops.abcc.<name>` as one opaque node and
AOTAutograd differentiates it through the registered formula.

Three routes, chosen per call by `route()`:

  "eager"       plain eager calls: the op's `torch.autograd.Function`, whose forward and backward
                call the *same* implementation functions the custom ops wrap, without the
                dispatcher round trip. Through the custom op, one soft_dtw forward + backward
                (B=64, N=32, torch 2.13, 1 CPU thread) took ~170 us more CPU time than through
                the Function, most of it in the argument handling of the op's generated autograd
                wrapper; the kernels themselves took ~1 ms.
  "library"     under `torch.compile` / `torch.export`, for tensor subclasses (FakeTensor,
                FunctionalTensor, ...) and under a TorchDispatchMode: `torch.ops.abcc.<name>`.
  "forward_ad"  while forward-mode AD is active (`torch.autograd.forward_ad`, a `torch.func`
                transform): the eager Function inside `torch.compiler.disable` (`run_eagerly`).

Forward-mode AD: `torch.library.custom_op` (torch 2.11-2.13) has no way to register a JVP rule,
and a custom op reached with dual inputs silently returns outputs *without* a tangent (the
tangent is then read as zero). So a custom op must never see dual tensors: while forward AD is
active the eager Functions run (their `jvp` rules, or two-stream attention's fused primal+JVP
launch; the other Functions have no `jvp` and raise). Under `torch.compile` that region is a
graph break, as before this layer existed; `disable` also keeps Dynamo, which under a functorch
transform falls back to eager frame by frame, from trying to trace the kernels' own Python.
Without forward AD (every training step's primal and backward, every inference call) compiled
code has no break.
"""
from __future__ import annotations

import functools

import torch
import torch.autograd.forward_ad as fwAD

NAMESPACE = "abcc"


def qualname(name: str) -> str:
    return f"{NAMESPACE}::{name}"


def forward_ad_active() -> bool:
    """True inside `torch.autograd.forward_ad.dual_level()` or any `torch.func` transform (jvp,
    jacfwd, vmap, grad): the places a custom op could meet a dual tensor."""
    if torch.compiler.is_compiling():
        # Dynamo follows the dual level itself but wraps the functorch stack in an opaque
        # object (never None), so that one is read in plain Python at trace time.
        return fwAD._current_level >= 0 or _functorch_active_at_trace_time()
    return fwAD._current_level >= 0 or torch._C._functorch.peek_interpreter_stack() is not None


@torch.compiler.assume_constant_result
def _functorch_active_at_trace_time() -> bool:
    return torch._C._functorch.peek_interpreter_stack() is not None


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _traced(tensors) -> bool:
    if torch._C._len_torch_dispatch_stack() > 0:
        return True  # FakeTensorMode, make_fx's proxy mode, FlopCounterMode, ...
    for t in tensors:
        if isinstance(t, torch.Tensor) and type(t) not in _PLAIN:
            return True  # a tensor subclass: let its __torch_dispatch__ see one op
    return False


def route(*tensors) -> str:
    """'eager', 'library' or 'forward_ad' (see the module docstring). `tensors`: the op's tensor
    inputs (None entries allowed)."""
    if forward_ad_active():
        return "forward_ad"
    if torch.compiler.is_compiling() or _traced(tensors):
        return "library"
    return "eager"


def call(op_name: str, impl, *args):
    """`torch.ops.abcc.<op_name>(*args)` when tracing, else `impl(*args)` directly (for op calls
    outside an autograd formula, e.g. soft-DTW's alignment: a forward and a backward)."""
    if torch.compiler.is_compiling() or _traced(args):
        return getattr(torch.ops.abcc, op_name)(*args)
    return impl(*args)


_RAISABLE = {"ValueError": ValueError, "TypeError": TypeError, "RuntimeError": RuntimeError}


def constant(fn, *args):
    """fn(*args), a plain-Python decision (which backend, which kernel layout) on constant
    arguments. Under torch.compile it runs once, at trace time, and its result is a constant of
    the graph: Dynamo does not trace it (it reads caches, the environment and the extension).
    There is no guard on what it read: after changing ABCC_BACKEND or an engine setting, call
    torch._dynamo.reset() before calling compiled code again. Its ValueError / TypeError /
    RuntimeError is raised from the traced code, like any other validation error."""
    if not torch.compiler.is_compiling():
        return fn(*args)
    value, error, message = _at_trace_time(fn, *args)
    if error is not None:
        raise _RAISABLE[error](message)
    return value


@torch.compiler.assume_constant_result
def _at_trace_time(fn, *args):
    try:
        return fn(*args), None, ""
    except (ValueError, TypeError, RuntimeError) as err:
        return None, type(err).__name__, str(err)


def run_eagerly(fn):
    """`torch.compiler.disable(fn)`, built at the first call: importing torch._dynamo costs about
    2 s, which every `import abcc_fast.ops` (and so every `abcc` command) would otherwise pay."""
    disabled = None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        nonlocal disabled
        if disabled is None:
            disabled = torch.compiler.disable(fn)
        return disabled(*args, **kwargs)

    return wrapper


def empty(like: torch.Tensor, dtype=None) -> torch.Tensor:
    """A [0] tensor on like's device: what an op returns for an output that does not apply."""
    return like.new_empty((0,), dtype=like.dtype if dtype is None else dtype)
