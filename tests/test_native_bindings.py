"""The contract between the Python adapters and the bindings (csrc/<op>/binding.cpp), checked
without a GPU.

- Each op's params struct is the argument contract: its entry points take the struct or exactly
  the fields they read as keywords (csrc/common/binding.h).
- The CUDA half of the bindings compiles (tools/check_cuda_build.sh --bindings-only: a syntax
  check against torch's and the CUDA toolkit's headers).
- Every CUDA adapter (soft-DTW, MeanFlow, attention) calls its entry point with exactly the names
  the extension exports in `_C.op_args`: run here against stand-ins that bind the call to those
  names (tests/native_standin.py) and compute the result with the CPU kernels or the reference.
"""
import os
import shutil
import subprocess

import pytest
import torch

from abcc_fast.ops import _soft_dtw_cuda, meanflow as mf
from abcc_fast.ops._backend import native_module
from abcc_fast.ops.soft_dtw import _CpuEngine, default_omega
from native_standin import checked, op_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_OPS = ("sdtw_cuda_forward", "sdtw_cuda_backward", "meanflow_target_cuda", "meanflow_integrate_cuda",
            "two_stream_attention_cuda_forward")

needs_native = pytest.mark.skipif(native_module() is None or not op_args(),
                                  reason="abcc_fast._C is not built (or predates _C.op_args)")


@pytest.mark.skipif(os.environ.get("ABCC_CUDA_CHECKED") == "1",
                    reason="`make test` ran tools/check_cuda_build.sh just before pytest (or skipped it without nvcc)")
def test_cuda_half_of_the_bindings_compiles():
    if shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("nvcc not found: the CUDA half of the bindings cannot be compile-checked here")
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "check_cuda_build.sh"), "--bindings-only"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode == 2:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


@needs_native
def test_every_op_exports_its_argument_names():
    """Each entry point's names are fields of its op's params struct (CUDA ones listed in every build)."""
    args, mod = op_args(), native_module()
    params = dict(mod.op_params)
    assert set(CUDA_OPS) <= set(args) and set(args) == set(params)
    for name, names in args.items():
        fields = getattr(mod, params[name]).fields
        assert len(set(names)) == len(names) and set(names) <= set(fields), (name, names, fields)
    for name in ("sdtw_cpu_forward", "sdtw_cpu_backward") + (CUDA_OPS if mod.has_cuda() else ()):
        assert callable(getattr(mod, name)), name


@needs_native
def test_params_struct_is_the_argument_contract():
    """An entry point takes its op's struct or exactly its fields as keywords; anything else is a
    TypeError that names the culprit, as for a Python function."""
    mod = native_module()
    x, y = torch.randn(2, 5), torch.randn(2, 4)
    n, m = torch.full((2,), 5), torch.full((2,), 4)
    kw = dict(D=None, x=x, y=y, n=n, m=m, gamma=0.5, bandwidth=-1.0, omega=None, want_temporal=True, save=False,
              threads=1, engine=0)
    by_keywords = mod.sdtw_cpu_forward(**kw)
    by_struct = mod.sdtw_cpu_forward(mod.SoftDtwParams(**kw))
    for a, b in zip(by_keywords[:2], by_struct[:2]):
        assert torch.equal(a, b)
    with pytest.raises(TypeError, match="missing required keyword argument: 'engine'"):
        mod.sdtw_cpu_forward(**{k: v for k, v in kw.items() if k != "engine"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'ckpt'"):
        mod.sdtw_cpu_forward(**kw, ckpt=x)
    with pytest.raises(TypeError, match="'gamma' has the wrong type"):
        mod.sdtw_cpu_forward(**{**kw, "gamma": "high"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'gama'"):
        mod.SoftDtwParams(gama=1.0)
    p = mod.SoftDtwParams(gamma=0.25)
    assert p.gamma == 0.25 and p.D is None and p.engine == 0
    p.engine = 2
    assert p.engine == 2


def _walks(B, N, M, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, N, generator=g, dtype=dtype).cumsum(1),
            torch.randn(B, M, generator=g, dtype=dtype).cumsum(1))


@needs_native
@pytest.mark.parametrize("univariate", [True, False])
@pytest.mark.parametrize("temporal", [False, True])
def test_soft_dtw_cuda_adapter_calls_match_the_bindings(monkeypatch, univariate, temporal):
    cpu = native_module()

    def fwd(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, save):
        return cpu.sdtw_cpu_forward(D=D, x=x, y=y, n=n, m=m, gamma=gamma, bandwidth=bandwidth, omega=omega,
                                    want_temporal=want_temporal, save=save, threads=1, engine=0)

    def bwd(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, ckpt, ckpt_t, base, grad_value, grad_temporal):
        return cpu.sdtw_cpu_backward(D=D, x=x, y=y, n=n, m=m, gamma=gamma, bandwidth=bandwidth, omega=omega,
                                     want_temporal=want_temporal, r=ckpt, rt=ckpt_t, off=base,
                                     grad_value=grad_value, grad_temporal=grad_temporal, threads=1, engine=0,
                                     need_dx=True, need_dy=True)

    class StandIn:
        has_cuda = staticmethod(lambda: True)
        sdtw_cuda_forward = staticmethod(checked("sdtw_cuda_forward", fwd))
        sdtw_cuda_backward = staticmethod(checked("sdtw_cuda_backward", bwd))

    monkeypatch.setattr(_soft_dtw_cuda, "native_module", lambda: StandIn())
    B, N, M = 3, 9, 7
    x, y = _walks(B, N, M, seed=3)
    n = torch.tensor([9, 5, 8])
    m = torch.tensor([7, 7, 3])
    omega = default_omega(n, m, N, M, x.dtype, x.device) if temporal else None
    D = None if univariate else (x[:, :, None] - y[:, None, :]) ** 2
    xs, ys = (x, y) if univariate else (None, None)
    args = (D, xs, ys, n, m, 0.5, -1.0, omega, temporal)
    value, tmp, state = _soft_dtw_cuda.ENGINE.forward(*args, True)
    ref_value, ref_tmp, ref_state = _CpuEngine().forward(*args, True)
    torch.testing.assert_close(value, ref_value)
    if temporal:
        torch.testing.assert_close(tmp, ref_tmp)
    gv = torch.ones(B, dtype=x.dtype)
    gt = torch.full((B,), 0.5, dtype=x.dtype) if temporal else None
    grads = _soft_dtw_cuda.ENGINE.backward(*args, state, gv, gt)
    ref_grads = _CpuEngine().backward(*args, ref_state, gv, gt)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


@needs_native
@pytest.mark.parametrize("with_sei", [False, True])
def test_meanflow_cuda_adapter_calls_match_the_bindings(monkeypatch, with_sei):
    def target(u_pred, v, du_dr, r, tau, c, p):
        rows, u_tgt, weight = mf.meanflow_target_reference(u_pred, v, du_dr, r, tau, c=c, p=p, reduction="none")
        return [u_tgt, rows / weight, weight]

    def integrate(x0_solvent, x0_sei, u_solvent, u_sei, r, taus, project):
        return list(mf.meanflow_integrate_reference(x0_solvent, u_solvent, u_sei, r, taus, x0_sei=x0_sei,
                                                    project=project))

    class StandIn:
        has_cuda = staticmethod(lambda: True)
        meanflow_target_cuda = staticmethod(checked("meanflow_target_cuda", target))
        meanflow_integrate_cuda = staticmethod(checked("meanflow_integrate_cuda", integrate))

    monkeypatch.setattr(mf, "native_module", lambda: StandIn())
    g = torch.Generator().manual_seed(0)
    B, T, W = 3, 4, 11
    u, v, d = (torch.randn(B, W, generator=g) for _ in range(3))
    r = torch.rand(B, generator=g)
    tau = r + (1 - r) * torch.rand(B, generator=g)
    u_tgt, err, weight = mf._target_engine("cuda", u, v, d, r, tau, 1e-3, 1.0)
    rows, ref_tgt, ref_w = mf.meanflow_target_reference(u, v, d, r, tau, c=1e-3, p=1.0, reduction="none")
    torch.testing.assert_close(u_tgt, ref_tgt)
    torch.testing.assert_close(err * weight, rows)
    x0 = torch.randn(B, W, generator=g)
    z0 = torch.rand(B, W, generator=g) if with_sei else None
    us, uz = torch.randn(B, T, W, generator=g), torch.randn(B, T, W, generator=g)
    taus = r[:, None] + torch.rand(B, T, generator=g)
    outs = mf._integrate_engine("cuda", x0, z0, us, uz, r, taus, True)
    refs = mf.meanflow_integrate_reference(x0, us, uz, r, taus, x0_sei=z0, project=True)
    for o, ref in zip(outs, refs):
        torch.testing.assert_close(o, ref)
