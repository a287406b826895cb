"""two_stream_attention: outputs, gradients and tangents of every backend against the float64
reference; the fused primal+JVP path under torch.func.jvp / forward_ad / torch.compile; MeanFlow.

Without a GPU the Triton kernels run under TRITON_INTERPRET=1 (set by conftest) at small shapes;
the CUDA backend is exercised only where a CUDA device exists.
"""
from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import importlib

from abcc_fast.ops import two_stream_attention

# The op module (its name is shadowed by the exported function on abcc_fast.ops).
tsa = importlib.import_module("abcc_fast.ops.two_stream_attention")

from conftest import HAS_CUDA, triton_available
from native_standin import checked, op_args

DEVICE = "cuda" if HAS_CUDA else "cpu"
FUSED = ["triton"] + (["cuda"] if HAS_CUDA and tsa.native_module() is not None
                      and tsa.native_module().has_cuda() else [])
needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed")

# 16x16 tiles: multi-block loops and ragged edges at small shapes (4 warps suit them on a GPU).
SMALL_TILES = dict(block_m=16, block_n=16, num_warps=4, num_stages=1)

# Max-abs tolerances for unit-variance inputs, by input dtype (fp32 accumulation everywhere).
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
TANGENT_TOL = {torch.float32: 5e-5, torch.float16: 1e-2, torch.bfloat16: 6e-2}


def _inputs(B, H, Na, Nb, D, dtype=torch.float32, seed=0, device=DEVICE, scale_q=1.0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda n, s=1.0: (s * torch.randn(B, H, n, D, generator=g)).to(device=device, dtype=dtype)  # noqa: E731
    return [mk(Na, scale_q), mk(Na), mk(Na), mk(Nb, scale_q), mk(Nb), mk(Nb)]


def _tangents(xs, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(x.shape, generator=g).to(device=x.device, dtype=x.dtype) for x in xs]


def _ref(xs, mask=None, scale=None):
    return tsa.two_stream_attention_reference(*[x.double() for x in xs], key_padding_mask=mask, scale=scale)


def _ref_jvp(xs, ts, mask=None, scale=None):
    fn = lambda *a: tsa.two_stream_attention_reference(*a, key_padding_mask=mask, scale=scale)  # noqa: E731
    return torch.func.jvp(fn, tuple(x.double() for x in xs), tuple(t.double() for t in ts))


def _ref_grads(xs, cots, mask=None, scale=None):
    xr = [x.detach().double().requires_grad_() for x in xs]
    oa, ob = tsa.two_stream_attention_reference(*xr, key_padding_mask=mask, scale=scale)
    loss = (oa * cots[0].double()).sum() + (ob * cots[1].double()).sum()
    return torch.autograd.grad(loss, xr)


def _maxdiff(a, b):
    return (a.double() - b.double()).abs().max().item()


@pytest.fixture(autouse=True)
def _clean_state():
    tsa.launch_counts.clear()
    old = tsa._triton_blocks
    yield
    tsa._triton_blocks = old


# ---------------------------------------------------------------------------------------------
# reference
# ---------------------------------------------------------------------------------------------
def test_reference_equals_sdpa_on_the_concatenation():
    xs = _inputs(2, 3, 7, 5, 16, torch.float64, device="cpu")
    keep = torch.rand(2, 12, generator=torch.Generator().manual_seed(3)) > 0.4
    keep[:, 0] = True  # every row keeps a key: SDPA gives NaN otherwise
    oa, ob = tsa.two_stream_attention_reference(*xs, key_padding_mask=keep)
    q, k, v = (torch.cat([xs[i], xs[i + 3]], dim=2) for i in range(3))
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
    assert _maxdiff(torch.cat([oa, ob], dim=2), o) < 1e-12


def test_reference_rows_without_keys_are_zero_with_zero_derivatives():
    xs = [x.requires_grad_() for x in _inputs(2, 2, 5, 4, 8, torch.float64, device="cpu")]
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1] = False
    oa, ob = tsa.two_stream_attention_reference(*xs, key_padding_mask=keep)
    assert torch.isfinite(oa).all() and torch.isfinite(ob).all()
    assert oa[1].abs().max() == 0 and ob[1].abs().max() == 0
    grads = torch.autograd.grad(oa.sum() + ob.sum(), xs)
    assert all(torch.isfinite(g).all() and g[1].abs().max() == 0 for g in grads)
    _, (ta, tb) = _ref_jvp([x.detach() for x in xs], _tangents(xs), keep)
    assert ta[1].abs().max() == 0 and tb[1].abs().max() == 0


# ---------------------------------------------------------------------------------------------
# fused backends against the reference (hypothesis over shapes, masks, dtypes)
# ---------------------------------------------------------------------------------------------
def _random_keep(B, Na, Nb, kind, seed):
    if kind == "none":
        return None
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(B, Na + Nb, generator=g) > 0.35
    if kind == "stream_b_removed":
        keep[:, Na:] = False
        keep[:, 0] = True
    elif kind == "batch_row_removed":
        keep[0] = False  # a whole row of the mask: batch element 0 has no keys at all
    return keep.to(DEVICE)


def _check_all(backend, xs, keep, scale=None, check_grad=True):
    dtype = xs[0].dtype
    ref_a, ref_b = _ref(xs, keep, scale)
    oa, ob = two_stream_attention(*xs, key_padding_mask=keep, scale=scale, backend=backend)
    assert oa.dtype == dtype and ob.shape == xs[3].shape
    assert torch.isfinite(oa).all() and torch.isfinite(ob).all()
    assert _maxdiff(oa, ref_a) < TOL[dtype] and _maxdiff(ob, ref_b) < TOL[dtype]

    ts = _tangents(xs)
    fn = lambda *a: two_stream_attention(*a, key_padding_mask=keep, scale=scale, backend=backend)  # noqa: E731
    (pa, pb), (ta, tb) = torch.func.jvp(fn, tuple(xs), tuple(ts))
    (_, _), (rta, rtb) = _ref_jvp(xs, ts, keep, scale)
    assert _maxdiff(pa, ref_a) < TOL[dtype]
    t_scale = max(1.0, rta.abs().max().item(), rtb.abs().max().item())  # tangents grow with N
    assert max(_maxdiff(ta, rta), _maxdiff(tb, rtb)) < TANGENT_TOL[dtype] * t_scale

    if check_grad:
        xg = [x.detach().clone().requires_grad_() for x in xs]
        cots = _tangents(xs[::3], seed=7)
        oa, ob = two_stream_attention(*xg, key_padding_mask=keep, scale=scale, backend=backend)
        grads = torch.autograd.grad((oa * cots[0]).sum() + (ob * cots[1]).sum(), xg)
        for g, r in zip(grads, _ref_grads(xs, cots, keep, scale)):
            assert torch.isfinite(g).all()
            assert _maxdiff(g, r) < 4 * TANGENT_TOL[dtype] * max(1.0, r.abs().max().item())


@needs_triton
@settings(max_examples=max(6, settings.default.max_examples * 2 // 3))  # the interpreter is slow
@given(Na=st.integers(1, 33), Nb=st.integers(1, 33), D=st.sampled_from([32, 64]),
       B=st.integers(1, 2), H=st.integers(1, 2),
       dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
       mask=st.sampled_from(["none", "random", "stream_b_removed", "batch_row_removed"]),
       small_tiles=st.booleans(), seed=st.integers(0, 2**16))
def test_triton_matches_reference(Na, Nb, D, B, H, dtype, mask, small_tiles, seed):
    tsa._triton_blocks = SMALL_TILES if small_tiles else None
    xs = _inputs(B, H, Na, Nb, D, dtype, seed)
    _check_all("triton", xs, _random_keep(B, Na, Nb, mask, seed))


@needs_triton
def test_triton_head_dim_128_and_ragged_tiles():
    tsa._triton_blocks = SMALL_TILES
    xs = _inputs(1, 2, 21, 9, 128, torch.float32, seed=5)
    _check_all("triton", xs, _random_keep(1, 21, 9, "random", 5))


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_logit_rows_stay_finite(dtype):
    # Logits of O(1e4): a naive exp overflows; the online softmax must give no NaN/Inf. The
    # problem is ill-conditioned (an fp32 rounding of a logit moves P by ~1e-3), hence the
    # loose comparison.
    xs = _inputs(1, 2, 17, 11, 32, dtype, seed=2, scale_q=60.0)
    ts = _tangents(xs)
    ref_a, ref_b = _ref(xs, scale=1.0)
    (_, _), (rta, rtb) = _ref_jvp(xs, ts, scale=1.0)
    tol = 2e-2 if dtype == torch.float32 else 0.5
    tsa._triton_blocks = SMALL_TILES
    for backend in FUSED:
        fn = lambda *a: two_stream_attention(*a, scale=1.0, backend=backend)  # noqa: E731
        oa, ob = fn(*xs)
        (_, _), (ta, tb) = torch.func.jvp(fn, tuple(xs), tuple(ts))
        assert all(torch.isfinite(t).all() for t in (oa, ob, ta, tb))
        assert _maxdiff(oa, ref_a) < tol and _maxdiff(ob, ref_b) < tol
        scale_t = max(rta.abs().max().item(), rtb.abs().max().item())
        assert max(_maxdiff(ta, rta), _maxdiff(tb, rtb)) < tol * scale_t
        xg = [x.detach().clone().requires_grad_() for x in xs]
        grads = torch.autograd.grad(sum(o.sum() for o in fn(*xg)), xg)
        assert all(torch.isfinite(g).all() for g in grads)


@needs_triton
def test_key_padding_mask_pair_equals_concatenated_mask():
    xs = _inputs(2, 1, 6, 10, 32, seed=4)
    keep = _random_keep(2, 6, 10, "random", 9)
    a = two_stream_attention(*xs, key_padding_mask=keep, backend="triton")
    b = two_stream_attention(*xs, key_padding_mask=(keep[:, :6], keep[:, 6:]), backend="triton")
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# forward-mode AD: the fused path is the one taken
# ---------------------------------------------------------------------------------------------
@needs_triton
def test_func_jvp_takes_the_fused_single_launch():
    xs, ts = _inputs(1, 2, 9, 7, 32), None
    ts = _tangents(xs)
    fn = lambda *a: two_stream_attention(*a, backend="triton")  # noqa: E731
    (oa, ob), (ta, tb) = torch.func.jvp(fn, tuple(xs), tuple(ts))
    assert dict(tsa.launch_counts) == {("triton", "forward_jvp"): 1}  # one launch, no separate primal
    (ra, rb), (rta, rtb) = _ref_jvp(xs, ts)
    assert _maxdiff(ta, rta) < 5e-5 and _maxdiff(tb, rtb) < 5e-5 and _maxdiff(oa, ra) < 2e-5


@needs_triton
def test_forward_ad_dual_tensors_take_the_fused_launch_and_partial_tangents():
    xs = _inputs(1, 1, 8, 12, 32, seed=3)
    ts = _tangents(xs)
    ts_partial = [ts[0], None, None, None, ts[4], None]  # tangents on qa and kb only
    with fwAD.dual_level():
        duals = [fwAD.make_dual(x, t) if t is not None else x for x, t in zip(xs, ts_partial)]
        oa, ob = two_stream_attention(*duals, backend="triton")
        ta, tb = fwAD.unpack_dual(oa).tangent, fwAD.unpack_dual(ob).tangent
    assert dict(tsa.launch_counts) == {("triton", "forward_jvp"): 1}
    zeros = [t if t is not None else torch.zeros_like(x) for x, t in zip(xs, ts_partial)]
    (_, _), (rta, rtb) = _ref_jvp(xs, zeros)
    assert _maxdiff(ta, rta) < 5e-5 and _maxdiff(tb, rtb) < 5e-5


@needs_triton
def test_jvp_rule_of_the_primal_function_is_a_correct_fallback():
    # If a caller reaches the primal autograd.Function with dual inputs (tangents not unpacked up
    # front), its jvp rule runs a second, fused launch: slower, still exact.
    xs = _inputs(1, 1, 5, 6, 32, seed=6)
    ts = _tangents(xs)
    with fwAD.dual_level():
        duals = [fwAD.make_dual(x, t) for x, t in zip(xs, ts)]
        oa, ob, _ = tsa._JointAttention.apply(*duals, None, 32 ** -0.5, "triton")
        ta, tb = fwAD.unpack_dual(oa).tangent, fwAD.unpack_dual(ob).tangent
    assert tsa.launch_counts[("triton", "jvp_fallback")] == 1
    (_, _), (rta, rtb) = _ref_jvp(xs, ts)
    assert _maxdiff(ta, rta) < 5e-5 and _maxdiff(tb, rtb) < 5e-5


class _TwoStreamBlock(torch.nn.Module):
    """A minimal MM-DiT attention block: per-stream q/k/v/out projections, joint attention."""

    def __init__(self, dim=64, heads=2, backend="triton"):
        super().__init__()
        self.heads, self.backend = heads, backend
        self.qkv_a, self.qkv_b = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, 3 * dim)
        self.out_a, self.out_b = torch.nn.Linear(dim, dim), torch.nn.Linear(dim, dim)

    def _split(self, x):  # [B, N, 3 * dim] -> 3 x [B, H, N, dim / H]
        B, N, _ = x.shape
        return x.view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, xa, xb, t):
        qa, ka, va = self._split(self.qkv_a(xa * (1 + t)))
        qb, kb, vb = self._split(self.qkv_b(xb))
        oa, ob = two_stream_attention(qa, ka, va, qb, kb, vb, backend=self.backend)
        merge = lambda o: o.transpose(1, 2).flatten(2)  # noqa: E731
        return self.out_a(merge(oa)), self.out_b(merge(ob))


def _meanflow_step(model, xa, xb, va, vb, t):
    """u, du/dt by torch.func.jvp (tangent (v, 1)); loss with the stop-gradient target; grads."""
    fn = lambda xa, xb, t: model(xa, xb, t)  # noqa: E731
    (ua, ub), (dua, dub) = torch.func.jvp(fn, (xa, xb, t), (va, vb, torch.ones_like(t)))
    target_a, target_b = (va - dua).detach(), (vb - dub).detach()
    loss = ((ua - target_a) ** 2).mean() + ((ub - target_b) ** 2).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return (ua, ub, dua, dub), grads


@needs_triton
def test_meanflow_pattern_gradient_of_primal_with_stopgrad_tangent():
    torch.manual_seed(0)
    model = _TwoStreamBlock().to(DEVICE)
    ref = _TwoStreamBlock(backend="reference").to(DEVICE)
    ref.load_state_dict(model.state_dict())
    xa, xb = torch.randn(2, 9, 64, device=DEVICE), torch.randn(2, 6, 64, device=DEVICE)
    va, vb = torch.randn_like(xa), torch.randn_like(xb)
    t = torch.full((2, 1, 1), 0.3, device=DEVICE)
    outs, grads = _meanflow_step(model, xa, xb, va, vb, t)
    assert tsa.launch_counts[("triton", "forward_jvp")] == 1
    assert tsa.launch_counts[("triton", "backward")] == 1
    assert tsa.launch_counts[("triton", "forward")] == 0 and tsa.launch_counts[("triton", "jvp_fallback")] == 0
    ref_outs, ref_grads = _meanflow_step(ref, xa, xb, va, vb, t)
    for a, b in zip(outs, ref_outs):
        assert _maxdiff(a, b) < 1e-4
    for a, b in zip(grads, ref_grads):
        assert _maxdiff(a, b) < 1e-4


@needs_triton
@pytest.mark.parametrize("where", ["jvp_of_compiled", "compiled_jvp"])
def test_torch_compile_keeps_the_tangent(where):
    torch.manual_seed(1)
    model = _TwoStreamBlock().to(DEVICE)
    ref = _TwoStreamBlock(backend="reference").to(DEVICE)
    ref.load_state_dict(model.state_dict())
    xa, xb = torch.randn(1, 7, 64, device=DEVICE), torch.randn(1, 5, 64, device=DEVICE)
    va, vb = torch.randn_like(xa), torch.randn_like(xb)
    t = torch.full((1, 1, 1), 0.5, device=DEVICE)
    args, tans = (xa, xb, t), (va, vb, torch.ones_like(t))
    if where == "jvp_of_compiled":
        compiled = torch.compile(model, backend="aot_eager")
        (ua, ub), (dua, dub) = torch.func.jvp(compiled, args, tans)
    else:
        step = torch.compile(lambda *a: torch.func.jvp(model, a, tans), backend="aot_eager")
        (ua, ub), (dua, dub) = step(*args)
    (_, _), (rdua, rdub) = torch.func.jvp(ref, args, tans)
    assert rdua.abs().max() > 1e-2  # the tangent is not trivially zero
    assert _maxdiff(dua, rdua) < 1e-4 and _maxdiff(dub, rdub) < 1e-4
    assert tsa.launch_counts[("triton", "forward_jvp")] >= 1


@needs_triton
def test_nested_forward_ad_raises():
    xs = _inputs(1, 1, 4, 4, 32)
    ts = _tangents(xs)
    fn = lambda *a: two_stream_attention(*a, backend="triton")  # noqa: E731
    inner = lambda *a: torch.func.jvp(fn, a, tuple(ts))[1]  # noqa: E731
    with pytest.raises(NotImplementedError, match="nested forward-mode"):
        torch.func.jvp(inner, tuple(xs), tuple(ts))


class _FakeNativeCuda:
    """Stands in for abcc_fast._C on a machine without a GPU: the entry point of
    csrc/two_stream_attention/binding.cpp's two_stream_attention_cuda_forward, called with the names the extension exports (_C.op_args),
    results from the reference. Checks the Python glue of the cuda backend and that its LSE
    convention feeds the Triton backward."""

    @staticmethod
    def has_cuda():
        return True

    @staticmethod
    def _forward(qa, ka, va, qb, kb, vb, tqa, tka, tva, tqb, tkb, tvb, keep, scale):
        keep_b = keep.bool() if keep is not None else None
        prim = (qa, ka, va, qb, kb, vb)
        oa, ob = tsa._reference(*prim, keep_b, scale)
        s = scale * torch.cat([qa, qb], 2).double() @ torch.cat([ka, kb], 2).double().transpose(-1, -2)
        if keep_b is not None:
            s = s.masked_fill(~keep_b[:, None, None, :], float("-inf"))
        lse = torch.logsumexp(s, -1)
        lse = torch.where(torch.isfinite(lse), lse, torch.full_like(lse, float("inf"))).float()
        if tqa is None:
            return [oa, ob, lse]
        fn = lambda *a: tsa._reference(*a, keep_b, scale)  # noqa: E731
        (_, _), (toa, tob) = torch.func.jvp(fn, prim, (tqa, tka, tva, tqb, tkb, tvb))
        return [oa, ob, lse, toa, tob]


@needs_triton
@pytest.mark.skipif(not op_args(), reason="abcc_fast._C is not built (or predates _C.op_args)")
def test_cuda_backend_glue_with_a_stand_in_extension(monkeypatch):
    fake = _FakeNativeCuda()
    fake.two_stream_attention_cuda_forward = checked("two_stream_attention_cuda_forward", fake._forward)
    monkeypatch.setattr(tsa, "native_module", lambda: fake)
    xs = _inputs(2, 1, 7, 5, 32, device=DEVICE, seed=8)
    keep = _random_keep(2, 7, 5, "batch_row_removed", 8).to(DEVICE)
    ts = _tangents(xs)
    scale = 32 ** -0.5
    fn = lambda *a: tsa._fused("cuda", a, keep, scale)  # noqa: E731  (bypasses the device check)
    xg = [x.clone().requires_grad_() for x in xs]
    (oa, ob), (ta, tb) = torch.func.jvp(fn, tuple(xg), tuple(ts))
    cots = _tangents(xs[::3], seed=7)
    grads = torch.autograd.grad((oa * cots[0]).sum() + (ob * cots[1]).sum(), xg)
    assert dict(tsa.launch_counts) == {("cuda", "forward_jvp"): 1, ("cuda", "backward"): 1}
    (_, _), (rta, rtb) = _ref_jvp(xs, ts, keep)
    assert _maxdiff(ta, rta) < 5e-5 and _maxdiff(tb, rtb) < 5e-5
    for g, r in zip(grads, _ref_grads(xs, cots, keep)):
        assert _maxdiff(g, r) < 1e-4


# ---------------------------------------------------------------------------------------------
# validation and dispatch
# ---------------------------------------------------------------------------------------------
def test_cpu_tensors_default_to_reference(monkeypatch):
    monkeypatch.delenv("ABCC_BACKEND", raising=False)
    xs = _inputs(1, 1, 3, 2, 8, torch.float64, device="cpu")  # D = 8: only the reference takes it
    oa, ob = two_stream_attention(*xs)
    ra, rb = _ref(xs)
    assert _maxdiff(oa, ra) == 0 and not tsa.launch_counts


@pytest.mark.parametrize("bad, match", [
    (lambda xs: [xs[0][0]] + xs[1:], r"must be \[B, H, N, D\]"),
    (lambda xs: xs[:4] + [xs[4][:, :, :2]] + xs[5:], r"kb has shape"),
    (lambda xs: xs[:2] + [xs[2].double()] + xs[3:], r"one dtype"),
    (lambda xs: [x[:, :, :0] for x in xs[:3]] + xs[3:], r"at least one token"),
])
def test_bad_inputs_raise_clear_errors(bad, match):
    xs = _inputs(1, 2, 4, 3, 32, device="cpu")
    with pytest.raises((ValueError, TypeError), match=match):
        two_stream_attention(*bad(xs), backend="reference")


def test_bad_mask_and_unsupported_fused_shapes():
    xs = _inputs(2, 1, 4, 3, 32, device="cpu")
    with pytest.raises(ValueError, match=r"bool tensor \[B, Na \+ Nb\]"):
        two_stream_attention(*xs, key_padding_mask=torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask_b"):
        two_stream_attention(*xs, key_padding_mask=(torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 3)))
    if triton_available():
        x48 = _inputs(1, 1, 4, 3, 48, device=DEVICE)
        with pytest.raises(ValueError, match="head dimension D"):
            two_stream_attention(*x48, backend="triton")
        oa, _ = two_stream_attention(*x48, backend="auto")  # automatic choice falls back to the reference
        assert _maxdiff(oa, _ref(x48)[0]) < 1e-5 and not tsa.launch_counts
        x64 = _inputs(1, 1, 4, 3, 32, torch.float64, device=DEVICE)
        with pytest.raises(TypeError, match="backend='reference'"):
            two_stream_attention(*x64, backend="triton")


# ---------------------------------------------------------------------------------------------
# GPU only: bigger shapes, the CUDA backend, the bf16 tangent target
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("D", [32, 64, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gpu_backends_match_reference(backend, D, dtype):
    xs = _inputs(2, 3, 200, 77, D, dtype, seed=D)
    _check_all(backend, xs, _random_keep(2, 200, 77, "batch_row_removed", 1))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend", FUSED)
def test_gpu_bf16_tangent_error_target(backend):
    xs = _inputs(4, 4, 512, 512, 64, torch.bfloat16, seed=11)
    ts = _tangents(xs)
    fn = lambda *a: two_stream_attention(*a, backend=backend)  # noqa: E731
    (_, _), (ta, tb) = torch.func.jvp(fn, tuple(xs), tuple(ts))
    (_, _), (rta, rtb) = _ref_jvp(xs, ts)
    assert max(_maxdiff(ta, rta), _maxdiff(tb, rtb)) <= 1e-2 * max(rta.abs().max().item(), 1.0)


# ---------------------------------------------------------------------------------------------
# compiled (not interpreted) Triton: every configuration the dispatch can pick must lower to sm_90
# code, which the interpreter never checks (tests/triton_aot.py). No GPU is needed.
# ---------------------------------------------------------------------------------------------
@needs_triton
def test_triton_kernels_compile_for_sm90():
    pytest.importorskip("triton.backends.nvidia")
    import triton_aot

    proc = triton_aot.run("attention")
    assert triton_aot.ok(proc), proc.stderr[-3000:]


# ---------------------------------------------------------------------------------------------
# the CUDA C++ kernel (CUDA cores) is never an automatic or environment-wide choice
# ---------------------------------------------------------------------------------------------
@needs_triton
def test_abcc_backend_cuda_runs_triton_for_attention(monkeypatch):
    monkeypatch.setenv("ABCC_BACKEND", "cuda")
    assert tsa._choose_backend(torch.device(DEVICE), None) == "triton"
    monkeypatch.delenv("ABCC_BACKEND")
    calls = []
    monkeypatch.setattr(tsa, "resolve", lambda op, dev, req, impl: calls.append((req, impl)) or "reference")
    tsa._choose_backend(torch.device("cpu"), None)  # automatic on CPU tensors: cuda is not among the candidates
    assert calls and "cuda" not in calls[-1][1]


def test_explicit_cuda_backend_warns_once(monkeypatch):
    monkeypatch.setattr(tsa, "resolve", lambda *a: "cuda")
    monkeypatch.setattr(tsa, "_warned_cuda_kernel", False)
    with pytest.warns(RuntimeWarning, match="tensor cores"):
        assert tsa._choose_backend(torch.device(DEVICE), "cuda") == "cuda"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tsa._choose_backend(torch.device(DEVICE), "cuda")
