"""One registry of the engines behind every op of abcc_fast.ops and what each can do.

Each op module declares its engines with `declare(...)` at import (`soft_dtw.py`,
`two_stream_attention.py`, `meanflow.py`); the dispatch of that op reads its implemented
backends and shape limits from here (`implemented`, `spec`), and `abcc_fast.ops.backends_report()`
prints the table. `backends()` (which backends run on this machine, and why not) is derived from
the same names. Capabilities are what the code does, checked by the tests:

  devices   tensor devices the engine runs on ("cuda" for Triton also covers CPU tensors under
            TRITON_INTERPRET=1, when asked for explicitly)
  dtypes    input dtypes it takes; `compute` says in what it computes
  forward / backward / jvp / double_backward
            primal, reverse mode, forward mode (torch.func.jvp, torch.autograd.forward_ad),
            reverse over reverse
  limits    shape limits the dispatch enforces (automatic choice falls back to the reference
            beyond them; an explicit choice raises): name -> value
  auto      whether automatic choice may pick it
  needs     functions of abcc_fast._C it calls (an extension built before they existed reports
            the engine as not implemented instead of failing at call time)
  module    the adapter module that must be importable (lazy engines)
  library   the torch.library custom ops (`abcc::*`) that carry it under torch.compile
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch

from ._backend import BACKENDS, backends, native_module

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class EngineSpec:
    op: str
    backend: str
    devices: tuple
    dtypes: tuple = _FLOATS
    compute: str = "float32, or float64 for float64 inputs"
    forward: bool = True
    backward: bool = True
    jvp: bool = False
    double_backward: bool = False
    limits: Mapping[str, object] = field(default_factory=dict)
    auto: bool = True
    needs: tuple = ()
    module: Optional[str] = None
    library: tuple = ()
    note: str = ""

    def capabilities(self) -> str:
        modes = [m for m, ok in (("fwd", self.forward), ("bwd", self.backward), ("jvp", self.jvp),
                                 ("2nd-order", self.double_backward)) if ok]
        dts = ",".join(str(d).replace("torch.", "").replace("float", "f") for d in self.dtypes)
        parts = ["/".join(modes), "on " + ",".join(self.devices), f"takes {dts}, computes in {self.compute}"]
        parts += [f"{k}={v}" for k, v in self.limits.items()]
        if not self.auto:
            parts.append("explicit only")
        return "; ".join(parts)


# op -> {"label": str, "engines": {backend: EngineSpec}} in declaration order
_REGISTRY: dict = {}


def declare(op: str, *specs: EngineSpec, label: Optional[str] = None) -> None:
    """Register the engines of `op` (replacing an earlier declaration of the same op)."""
    engines = {}
    for s in specs:
        if s.op != op or s.backend not in BACKENDS:
            raise ValueError(f"declare({op!r}): engine {s.backend!r} of {s.op!r} is not one of {BACKENDS} for this op")
        engines[s.backend] = s
    _REGISTRY[op] = {"label": label or op, "engines": engines}
    implemented.cache_clear()


def ops() -> tuple:
    return tuple(_REGISTRY)


def engines(op: str) -> dict:
    """{backend: EngineSpec} of `op`."""
    try:
        return _REGISTRY[op]["engines"]
    except KeyError:
        raise KeyError(f"no engines declared for op {op!r}; declared: {tuple(_REGISTRY)}") from None


def spec(op: str, backend: str) -> EngineSpec:
    return engines(op)[backend]


@functools.lru_cache(maxsize=None)
def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@functools.lru_cache(maxsize=None)
def implemented(op: str) -> tuple:
    """The backends of `op` whose code is here: the adapter module exists and, when abcc_fast._C
    is built, it has the functions the engine calls. (Whether a backend can *run* here is
    `backends()`.) Cached: it is asked on every call of the op."""
    mod = native_module()
    out = []
    for name, s in engines(op).items():
        if s.module is not None and not _module_exists(s.module):
            continue
        if mod is not None and any(not hasattr(mod, f) for f in s.needs):
            continue
        out.append(name)
    return tuple(out)


def report_lines() -> list:
    """Per op, one line per engine: capabilities and whether it is implemented here."""
    lines = []
    for op, entry in _REGISTRY.items():
        lines.append(f"  {entry['label']}")
        here = implemented(op)
        for name, s in entry["engines"].items():
            mark = "" if name in here else "  [not in this build]"
            lines.append(f"    {name:9s} {s.capabilities()}{mark}")
    return lines


def backends_report() -> str:
    """For humans (printed by `make install` and `abcc backends`): one line per backend, whether it
    runs here and why not (`backends()`), then per op what each engine can do."""
    lines = [f"  {s.name:9s} {'yes' if s.available else 'no '}  {s.reason}" for s in backends().values()]
    return "\n".join(lines + ["engines per op:"] + report_lines())
