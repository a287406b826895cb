"""Triton-specific soft-DTW check: the kernels compile for sm_90 ahead of time (no GPU needed).

The numerical checks of the triton backend are in tests/test_soft_dtw_backends.py.
"""
import pytest

from abcc_fast.ops import backends

pytestmark = pytest.mark.skipif(not backends()["triton"].available, reason=f"triton backend unavailable: "
                                f"{backends()['triton'].reason}")



# ---------------------------------------------------------------------------------------------
# the GPU path: the interpreter does not check what the compiler checks (constexpr globals, loop-
# carried types), so compile the kernels for sm_90 ahead of time (no device needed), at every
# (pairs per program, block) the launch helpers can pick (tests/triton_aot.py)
# ---------------------------------------------------------------------------------------------
def test_kernels_compile_for_sm90():
    pytest.importorskip("triton.backends.nvidia")
    import triton_aot

    proc = triton_aot.run("soft_dtw")
    assert triton_aot.ok(proc), proc.stderr[-3000:]
