"""Ahead-of-time compilation of every Triton kernel configuration the dispatch can pick, for sm_90,
without a GPU (the interpreter, which the CPU tests use, never runs what the compiler checks:
if/else type agreement, constexpr handling, loop-carried types, register and shared-memory limits).

Run as a script in a process without TRITON_INTERPRET (the tests do that):
    python tests/triton_aot.py attention|soft_dtw|meanflow [--full] [--list]
It prints "compiled <n>" on success. `--full` (or ABCC_AOT_FULL=1) compiles every configuration;
the default is a subset chosen to keep CI's cold compile time near a minute (see each family). The configurations are derived from the launch helpers'
own choices (tile sizes, pairs per program, block sizes), so a change there is compiled here too.
"""
from __future__ import annotations

import itertools
import os
import sys

_SHARED_LIMIT = 227 * 1024  # bytes of shared memory one H100/H200 block may use
_DTYPES = {"fp32": "*fp32", "bf16": "*bf16", "fp16": "*fp16"}


def _compile(fn, sig: dict, consts: dict, num_warps: int, num_stages: int):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    full = {n: ("constexpr" if n in consts else sig[n]) for n in fn.arg_names}
    src = ASTSource(fn=fn, signature=full, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=num_warps, num_stages=num_stages))
    assert k.metadata.shared <= _SHARED_LIMIT, (fn.__name__, consts, k.metadata.shared)
    return k


# ---------------------------------------------------------------------------------------------
# two-stream attention: D in {32, 64, 128} x fp32/bf16/fp16 x forward / forward+JVP / backward
# (dQ and dK/dV kernels), with and without a key mask
# ---------------------------------------------------------------------------------------------
def attention_configs(full: bool = False):
    """All D x dtype x kind x mask with `full` (48 configurations; ~4 min cold on 2 busy cores, of
    which fp32 takes ~4.5 of every 5: its IEEE products lower to long FMA chains that ptxas digests
    slowly). The default (CI) set keeps every kind at every D in bf16, the largest kernels (forward+JVP,
    dK/dV) in fp16, the unmasked forward kernels in bf16, and one fp32 kernel (D = 32 forward) to
    prove the IEEE path lowers; a GPU run compiles the rest at its first call anyway."""
    from abcc_fast.kernels import two_stream_attention as K
    from abcc_fast.ops.two_stream_attention import _FUSED_D

    out = []
    for D, dtype, has_mask in itertools.product(_FUSED_D, _DTYPES, (True, False)):
        prec = "ieee" if dtype == "fp32" else "tf32"
        for kind in ("forward", "forward_jvp", "backward_dq", "backward_dkdv"):
            if not full and not _in_default_attention_set(D, dtype, has_mask, kind):
                continue
            b = K.default_blocks(D, kind == "forward_jvp", backward=kind.startswith("backward"))
            consts = dict(D=D, BLOCK_M=b["block_m"], BLOCK_N=b["block_n"], HAS_MASK=has_mask, PREC=prec,
                          UPCAST=False)
            if kind.startswith("forward"):
                consts["TANGENT"] = kind == "forward_jvp"
                fn = K.two_stream_attention_fwd_kernel
            else:
                fn = K.two_stream_attention_bwd_dq_kernel if kind == "backward_dq" else K.two_stream_attention_bwd_dkdv_kernel
            out.append((fn, dtype, has_mask, consts, b["num_warps"], b["num_stages"]))
    return out


def _in_default_attention_set(D, dtype, has_mask, kind) -> bool:
    if dtype == "bf16":
        return has_mask or kind.startswith("forward")
    if dtype == "fp16":
        return has_mask and kind in ("forward_jvp", "backward_dkdv")
    return has_mask and D == 32 and kind == "forward"


def compile_attention(configs):
    for fn, dtype, has_mask, consts, nw, ns in configs:
        ptr = {"LSE": "*fp32", "DELTA": "*fp32", "KEEP": "*i8" if has_mask else "*fp32"}
        sig = {n: "i32" if n in ("Na", "Nb", "H") else "fp32" if n in ("scale", "qk_scale")
               else ptr.get(n, _DTYPES[dtype]) for n in fn.arg_names}
        _compile(fn, sig, consts, nw, ns)


# ---------------------------------------------------------------------------------------------
# soft-DTW: every (pairs per program, rows per block) the launch helpers pick for any B and N,
# with all features on; each feature switched off once at the smallest and the largest block
# ---------------------------------------------------------------------------------------------
def soft_dtw_configs(full: bool = False):
    from abcc_fast.kernels import soft_dtw as k

    shapes = set()
    for N in (1, 2, 16, 17, 32, 33, 64, 65, 128, 129, 256, 257, 512, 513, 1024, 1025, 4096, 100000):
        for B in (1, 2, 3, 4, 5, 8, 9, 64, 1000):
            shapes.add((k._pairs_per_program(N, B), k._block_rows(N)))
    fwd_flags = ("SEQ", "TANG", "OMEGA", "SAVE", "BAND")
    bwd_flags = ("TANG", "OMEGA", "BAND")
    out = []
    for pairs, block in sorted(shapes):
        out.append(("fwd", pairs, block, dict.fromkeys(fwd_flags, True)))
        out.append(("bwd", pairs, block, dict.fromkeys(bwd_flags, True)))
    corners = (min(shapes, key=lambda s: s[0] * s[1]), max(shapes, key=lambda s: s[0] * s[1]))
    for pairs, block in corners if full else corners[1:]:
        for off in fwd_flags:
            out.append(("fwd", pairs, block, {f: f != off for f in fwd_flags}))
        for off in bwd_flags:
            out.append(("bwd", pairs, block, {f: f != off for f in bwd_flags}))
    return out


def compile_soft_dtw(configs):
    from abcc_fast.kernels import soft_dtw as k

    ptr = {"n_ptr": "*i64", "m_ptr": "*i64", "base_ptr": "*fp64", "bw_ptr": "*fp64"}
    ints = {"om_bstride", "B", "N", "M", "K"}
    floats = {"s", "inv_s", "inv_g"}
    for kind, pairs, block, flags in configs:
        fn = k.sdtw_fwd_kernel if kind == "fwd" else k.sdtw_bwd_kernel
        sig = {n: ptr.get(n, "i32" if n in ints else "fp32" if n in floats else "*fp32") for n in fn.arg_names}
        consts = dict(flags, PAIRS=pairs, BLOCK_I=block)
        _compile(fn, sig, consts, k._num_warps(pairs, block), 1)


# ---------------------------------------------------------------------------------------------
# MeanFlow: the target kernel at every block size (one and several blocks per row), the
# integration kernel at every flag combination and block size
# ---------------------------------------------------------------------------------------------
def meanflow_configs(full: bool = False):
    import triton

    from abcc_fast.kernels import meanflow as K

    target = sorted({(K._block(W), triton.cdiv(W, K._block(W))) for W in (1, 16, 17, 100, 300, 1000, 1024, 1025, 3000)})
    integ = sorted({min(256, K._block(W)) for W in (1, 17, 100, 300)})
    out = [("target", dict(BLOCK=b, N_BLOCKS=nb)) for b, nb in target]
    for block, has_z0, project in itertools.product(integ, (True, False), (True, False)):
        if block != max(integ) and not (has_z0 and project):
            continue
        out.append(("integrate", dict(HAS_Z0=has_z0, PROJECT=project, BLOCK=block)))
    return out


def compile_meanflow(configs):
    from abcc_fast.kernels import meanflow as K

    for kind, consts in configs:
        fn = K._target_kernel if kind == "target" else K._integrate_kernel
        sig = {n: "i32" if n in ("W", "T") else "fp32" if n in ("c", "p") else "*fp32" for n in fn.arg_names}
        _compile(fn, sig, consts, 4, 2)


def run(family: str):
    """Compile `family` in a fresh interpreter without TRITON_INTERPRET; returns the CompletedProcess.
    For tests: `assert ok(proc), proc.stderr[-3000:]`."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, os.path.join(root, "tests", "triton_aot.py"), family], env=env, cwd=root,
                          capture_output=True, text=True, timeout=900)


def ok(proc) -> bool:
    return proc.returncode == 0 and "compiled" in proc.stdout


FAMILIES = {"attention": (attention_configs, compile_attention), "soft_dtw": (soft_dtw_configs, compile_soft_dtw),
            "meanflow": (meanflow_configs, compile_meanflow)}


def main(argv):
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("triton_aot: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    family = argv[1] if len(argv) > 1 else ""
    if family not in FAMILIES:
        raise SystemExit(f"usage: python tests/triton_aot.py {{{'|'.join(FAMILIES)}}} [--full] [--list]")
    configs_fn, compile_fn = FAMILIES[family]
    configs = configs_fn(full="--full" in argv or os.environ.get("ABCC_AOT_FULL") == "1")
    if "--list" in argv:
        for c in configs:
            print(c)
    compile_fn(configs)
    print(f"compiled {len(configs)}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(sys.argv)
