"""Triton-specific soft-DTW check: the kernels compile for sm_90 ahead of time (no GPU needed).

The numerical checks of the triton backend are in tests/test_soft_dtw_backends.py.
"""
import pytest

from abcc_fast.ops import backends

pytestmark = pytest.mark.skipif(not backends()["triton"].available, reason=f"triton backend unavailable: "
                                f"{backends()['triton'].reason}")



# ---------------------------------------------------------------------------------------------
# the GPU path: the interpreter does not check what the compiler checks (constexpr globals, loop-
# carried types), so compile both kernels for sm_90 ahead of time (no device needed)
# ---------------------------------------------------------------------------------------------
_AOT = r"""
import os
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from abcc_fast.kernels import soft_dtw as k

ptr = {"n_ptr": "*i64", "m_ptr": "*i64", "base_ptr": "*fp64", "bw_ptr": "*fp64"}
ints = {"om_bstride", "B", "N", "M", "K"}
floats = {"s", "inv_s", "inv_g"}

def sig(fn, consts):
    out = {}
    for name in fn.arg_names:
        if name in consts:
            out[name] = "constexpr"
        elif name in ptr:
            out[name] = ptr[name]
        elif name in ints:
            out[name] = "i32"
        elif name in floats:
            out[name] = "fp32"
        else:
            out[name] = "*fp32"
    return out

for pairs, block, seq, tang, band in ((8, 64, True, True, True), (1, 1024, False, False, False)):
    opts = dict(num_warps=k._num_warps(pairs, block), num_stages=1)
    c = dict(SEQ=seq, TANG=tang, OMEGA=not seq, SAVE=True, BAND=band, PAIRS=pairs, BLOCK_I=block)
    triton.compile(ASTSource(k.sdtw_fwd_kernel, sig(k.sdtw_fwd_kernel, c), c), target=GPUTarget("cuda", 90, 32),
                   options=opts)
    c = dict(TANG=tang, OMEGA=not seq, BAND=band, PAIRS=pairs, BLOCK_I=block)
    triton.compile(ASTSource(k.sdtw_bwd_kernel, sig(k.sdtw_bwd_kernel, c), c), target=GPUTarget("cuda", 90, 32),
                   options=opts)
print("compiled")
"""


def test_kernels_compile_for_sm90():
    import os
    import subprocess
    import sys

    pytest.importorskip("triton.backends.nvidia")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    done = subprocess.run([sys.executable, "-c", _AOT], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]
