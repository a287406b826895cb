"""Small shared harness for the bench/ suites: machine description, timing, peak memory, output.

Timing: one warm-up call (JIT compilation of numba/Triton peers happens there), then repeats
until `min_time` seconds or `max_reps` calls; the median is reported. On CUDA every call is
synchronised. Peak memory: on CUDA `torch.cuda.max_memory_allocated` above the allocation before
the call; on CPU the growth of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs), which also sees numba's and NumPy's allocations.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from abcc_fast import provenance
from abcc_fast._atomic import write_text

RESULTS = Path(__file__).resolve().parent / "results"

# A global deadline (seconds since the epoch) for a whole benchmark session: bench.gpu_check sets it
# so that every suite stops adding rows in time and writes what it has. Unset: no deadline.
DEADLINE_ENV = "ABCC_BENCH_DEADLINE"


def seconds_left() -> float:
    """Seconds until the session deadline (inf without one)."""
    value = os.environ.get(DEADLINE_ENV)
    return float("inf") if not value else float(value) - time.time()


def past_deadline(margin: float = 0.0) -> bool:
    return seconds_left() <= margin


def machine_info(device: torch.device) -> dict:
    """The run's provenance (abcc_fast.provenance) plus the device it measured on."""
    run = provenance.run_info()
    info = {**provenance.pick(run, "date", "python", "torch", "platform"), "cpu": run["cpu"] or platform.processor(),
            **provenance.pick(run, "cpu_count", "torch_threads"), "device": str(device),
            "load_average_1_5_15": provenance.load_average(digits=None)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    if run["git"] is not None:
        info["git"] = run["git"]
    return info


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    """Return freed heap to the OS (so reuse shows as growth), then reset VmHWM to VmRSS."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], object], device: torch.device, *, min_time: float = 1.0, max_reps: int = 20,
            budget: float = 60.0) -> dict:
    """Median wall time (ms) and peak memory (MB) of `fn()`; `budget` (and the session deadline,
    see `seconds_left`) caps the seconds spent on repeats.

    The peak memory is taken during the last timed call (no extra call: slow reference paths
    would pay it in full).
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    budget = max(0.0, min(budget, seconds_left()))  # the repeats never run past the session deadline
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    reps = 1
    while reps < max_reps and (first * reps < min_time or reps < 2) and first * (reps + 1) < budget:
        reps += 1
    times, peak_mb = [], float("nan")
    for i in range(reps):
        last = i == reps - 1
        if last and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        elif last:
            tracking = _reset_peak_rss()
            base = _rss_kb("VmRSS")
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        if last and device.type == "cuda":
            peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        elif last and tracking:
            peak_mb = max(0, _rss_kb("VmHWM") - base) / 1024
    return {"time_ms": statistics.median(times) * 1e3, "reps": len(times), "peak_mem_mb": peak_mb}


def write_results(name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write bench/results/<name>.json and .md atomically."""
    out_json, out_md = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    write_text(out_json, json.dumps(payload, indent=2))
    write_text(out_md, markdown)
    return out_json, out_md


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, sep]
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key)
            cells.append("" if v is None else (format(v, fmt) if fmt and isinstance(v, (int, float)) else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
