"""Run provenance, defined once: when, on what machine and from which code a result was produced.

Every record that reports it -- ``abcc bench --all``'s ``suite_setup.json``, the setup of
``abcc analyze --evaluate``, the ``abcc demo`` report, the benchmarks under bench/ -- takes the facts
from here (``run_info``, ``git_revision``) and keeps its own field names.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Optional

import torch

_REPO = Path(__file__).resolve().parent


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_revision(full: bool = False, dirty: bool = False) -> Optional[str]:
    """The checked-out commit of this source tree (short sha, or the full one), with ``-dirty`` appended
    when ``dirty`` is asked for and tracked files are modified; None outside a git checkout."""
    try:
        args = ["git", "rev-parse", "HEAD"] if full else ["git", "rev-parse", "--short", "HEAD"]
        out = subprocess.run(args, cwd=_REPO, capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        if dirty:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO,
                                    capture_output=True, text=True, timeout=10)
            sha += "-dirty" if status.stdout.strip() else ""
        return sha
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> Optional[str]:
    """The CPU's model name (/proc/cpuinfo), None where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def load_average(digits: Optional[int] = 2) -> Optional[list]:
    """The 1, 5 and 15-minute load averages (rounded to ``digits``; None: as read), None where unknown."""
    try:
        loads = list(os.getloadavg())
    except (AttributeError, OSError):
        return None
    return loads if digits is None else [round(x, digits) for x in loads]


def versions(*modules: str) -> dict:
    """{module: its __version__, or None when it is not installed}."""
    out = {}
    for name in modules:
        try:
            out[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            out[name] = None
    return out


def run_info() -> dict:
    """The machine and software a run uses: date, python, torch, platform, node, processor, cpu (model
    name, None when unknown), cpu_count, torch_threads, omp_num_threads, cuda (device 0's name, None
    without a GPU), load_average_1_5_15 (None when unknown) and git (short sha, None outside git)."""
    return {"date": utc_now(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "node": platform.node(),
            "processor": platform.processor() or platform.machine(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_1_5_15": load_average(), "git": git_revision()}


def pick(info: dict, *keys: str) -> dict:
    """The entries ``keys`` of a ``run_info`` record, in that order."""
    return {k: info[k] for k in keys}
