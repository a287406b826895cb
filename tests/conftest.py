"""Shared test set-up.

Without a CUDA device the Triton kernels run under the interpreter: TRITON_INTERPRET must be set
before any @triton.jit function is defined, so it is set here, before abcc_fast is imported.
"""
import os

import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests: few, varied examples on CI's 2 cores; no deadline (kernels under the
# interpreter are slow and timing is never what a test checks).
settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


import pytest  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread avoids OpenMP spin-waits on a shared 2-core machine (often 10x
    faster). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
