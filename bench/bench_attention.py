"""Two-stream attention: time and peak memory of primal, primal+backward and primal+JVP.

Side by side in one run:
  ours/<backend>   abcc_fast.ops.two_stream_attention (reference on CPU; triton and cuda on GPU)
  sdpa             F.scaled_dot_product_attention (best backend) on the concatenated streams
                   (the concatenation is part of what it costs); primal and primal+backward
  sdpa_math_jvp    torch.func.jvp through SDPA's math backend, the only SDPA backend with a
                   forward-mode rule (O(N^2) memory)

N per stream in {64, 128, 256, 512, 1024}, heads 8, D = 64; on GPU bf16 with a batch of
16384 / N (16384 tokens per stream), on CPU fp32 and small sizes. Also recorded: kernel launches
per JVP call (the fused path must be one), the ratios of the targets, and on GPU the bf16 tangent
error against a float64 reference. Output: bench/results/attention_<device>.json (+ .md).

    python -m bench.bench_attention                  # all sizes on the default device
    python -m bench.bench_attention --quick          # smoke run
    python -m bench.bench_attention --gpu            # GPU session (make gpu-check): attention_gpu.*

With ABCC_BENCH_DEADLINE set (bench.gpu_check does), cases after the deadline are recorded as
skipped and the results written so far are kept (rewritten after every N).
"""
from __future__ import annotations

import argparse
import importlib
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from abcc_fast.ops import backends as op_backends

from .harness import machine_info, markdown_table, measure, past_deadline, write_results

tsa = importlib.import_module("abcc_fast.ops.two_stream_attention")


def _inputs(B, H, N, D, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda: torch.randn(B, H, N, D, generator=g).to(device=device, dtype=dtype)  # noqa: E731
    return [mk() for _ in range(6)]


def _sdpa_concat(qa, ka, va, qb, kb, vb):
    Na = qa.shape[2]
    q, k, v = torch.cat([qa, qb], 2), torch.cat([ka, kb], 2), torch.cat([va, vb], 2)
    o = F.scaled_dot_product_attention(q, k, v)
    return o[:, :, :Na], o[:, :, Na:]


def _with_backward(fn, xs, cot):
    def call():
        xg = [x.detach().requires_grad_() for x in xs]
        oa, ob = fn(*xg)
        torch.autograd.grad((oa * cot[0]).sum() + (ob * cot[1]).sum(), xg)
    return call


def _jvp(fn, xs, ts):
    return lambda: torch.func.jvp(fn, tuple(xs), tuple(ts))


def _math_jvp(xs, ts):
    def call():
        with sdpa_kernel([SDPBackend.MATH]):
            return torch.func.jvp(_sdpa_concat, tuple(xs), tuple(ts))
    return call


def _tangent_error(backend, device):
    """Max |t - t_ref| / max |t_ref| of the bf16 tangent against a float64 reference (N = 256)."""
    xs = _inputs(4, 8, 256, 64, torch.bfloat16, device, seed=3)
    ts = _inputs(4, 8, 256, 64, torch.bfloat16, device, seed=4)
    fn = lambda *a: tsa.two_stream_attention(*a, backend=backend)  # noqa: E731
    (_, _), (ta, tb) = torch.func.jvp(fn, tuple(xs), tuple(ts))
    ref = lambda *a: tsa.two_stream_attention_reference(*a)  # noqa: E731
    (_, _), (ra, rb) = torch.func.jvp(ref, tuple(x.double() for x in xs), tuple(t.double() for t in ts))
    err = max((ta.double() - ra).abs().max().item(), (tb.double() - rb).abs().max().item())
    return err / max(ra.abs().max().item(), rb.abs().max().item())


def run(device: torch.device, sizes, heads: int, D: int, dtype: torch.dtype, tokens: int, budget: float,
        on_rows=None):
    backends = ["reference"]
    if device.type == "cuda":
        avail = op_backends()
        backends = [b for b in ("triton", "cuda") if avail[b].available] + ["reference"]
    rows = []
    for N in sizes:
        B = max(1, tokens // N)
        xs = _inputs(B, heads, N, D, dtype, device)
        ts = _inputs(B, heads, N, D, dtype, device, seed=1)
        cot = _inputs(B, heads, N, D, dtype, device, seed=2)[:2]
        base = dict(N=N, B=B, H=heads, D=D, dtype=str(dtype).replace("torch.", ""))
        cases = []
        for b in backends:
            if b == "reference" and device.type == "cuda" and N > 512:
                continue  # the O(N^2) reference at the GPU batch is the math JVP again; skip the biggest
            fn = (lambda b: lambda *a: tsa.two_stream_attention(*a, backend=b))(b)
            cases += [(f"ours/{b}", "primal", lambda fn=fn: fn(*xs)),
                      (f"ours/{b}", "primal+backward", _with_backward(fn, xs, cot)),
                      (f"ours/{b}", "primal+jvp", _jvp(fn, xs, ts))]
        cases += [("sdpa", "primal", lambda: _sdpa_concat(*xs)),
                  ("sdpa", "primal+backward", _with_backward(_sdpa_concat, xs, cot)),
                  ("sdpa_math", "primal+jvp", _math_jvp(xs, ts))]
        for method, kind, call in cases:
            if past_deadline():
                rows.append(dict(base, method=method, kind=kind, error="skipped: session deadline"))
                continue
            tsa.launch_counts.clear()
            try:
                call()
                launches = sum(v for (_, k), v in tsa.launch_counts.items() if k != "backward")
                m = measure(call, device, budget=budget)
                row = dict(base, method=method, kind=kind, **m)
                if method.startswith("ours/") and method != "ours/reference":
                    row["launches"] = launches
            except (RuntimeError, torch.OutOfMemoryError) as err:  # e.g. the math JVP out of memory
                row = dict(base, method=method, kind=kind, error=str(err).splitlines()[0][:160])
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if on_rows is not None:
            on_rows(rows)
    return rows


def _ratios(rows):
    """Per N and backend: jvp/primal of ours; math-JVP time and memory over ours."""
    out = []
    by = {(r["N"], r["method"], r["kind"]): r for r in rows if "time_ms" in r}
    for (N, method, kind), r in sorted(by.items()):
        if kind != "primal+jvp" or not method.startswith("ours/"):
            continue
        prim = by.get((N, method, "primal"))
        math = by.get((N, "sdpa_math", "primal+jvp"))
        entry = dict(N=N, method=method, jvp_over_primal=r["time_ms"] / prim["time_ms"] if prim else None)
        if math:
            entry["math_jvp_time_over_ours"] = math["time_ms"] / r["time_ms"]
            if r["peak_mem_mb"] > 0:
                entry["math_jvp_mem_over_ours"] = math["peak_mem_mb"] / r["peak_mem_mb"]
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smallest shapes only (smoke run)")
    parser.add_argument("--sizes", type=int, nargs="*", help="N per stream (default by device)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--tokens", type=int, help="tokens per stream (batch = tokens / N)")
    parser.add_argument("--gpu", action="store_true",
                        help="GPU session: needs CUDA, writes attention_gpu.json/.md (make gpu-check)")
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("bench_attention --gpu: no CUDA device is visible")
    device = torch.device("cuda" if args.gpu else args.device)
    gpu = device.type == "cuda"
    name = "attention_gpu" if args.gpu else f"attention_{device.type}"
    sizes = args.sizes or ([64, 128, 256, 512, 1024] if gpu else [64, 128, 256])
    if args.quick:
        sizes = sizes[:1]
    tokens = args.tokens or (16384 if gpu else 512)
    dtype = torch.bfloat16 if gpu else torch.float32
    rows = run(device, sizes, args.heads, 64, dtype, tokens, budget=(5.0 if args.gpu else 30.0) if gpu else 20.0,
               on_rows=lambda rows: _write(name, device, args, sizes, dtype, tokens, rows, final=False))
    _write(name, device, args, sizes, dtype, tokens, rows, final=True)


def _write(name, device, args, sizes, dtype, tokens, rows, final: bool) -> None:
    gpu = device.type == "cuda"
    ratios = _ratios(rows)
    machine = machine_info(device)
    machine["loadavg_1_5_15"] = os.getloadavg()  # a shared CPU makes times noisy: say how busy it was
    result = {"machine": machine, "suite": "two_stream_attention",
              "config": dict(sizes=sizes, heads=args.heads, D=64, dtype=str(dtype), tokens_per_stream=tokens),
              "rows": rows, "ratios": ratios}
    if gpu and final and not past_deadline():
        result["bf16_tangent_rel_error"] = {b: _tangent_error(b, device) for b in ("triton", "cuda")
                                           if op_backends()[b].available}
    result["targets"] = ("GPU, N = 1024: fused primal+JVP one launch, <= 2.0x our primal, >= 3x faster and >= 10x "
                         "less memory than the math-backend JVP; bf16 tangent error <= 1e-2")
    md = (f"# two-stream attention, {device.type}\n\n{result['machine']}\n\n"
          + markdown_table(rows, [("N", "N/stream", ""), ("B", "B", ""), ("method", "method", ""),
                                  ("kind", "kind", ""), ("time_ms", "ms", ".3f"), ("peak_mem_mb", "peak MB", ".1f"),
                                  ("launches", "launches", ""), ("error", "error", "")])
          + "\n" + markdown_table(ratios, [("N", "N", ""), ("method", "method", ""),
                                           ("jvp_over_primal", "jvp/primal", ".2f"),
                                           ("math_jvp_time_over_ours", "math-JVP time / ours", ".2f"),
                                           ("math_jvp_mem_over_ours", "math-JVP mem / ours", ".2f")]))
    paths = write_results(name, result, md)
    if final:
        print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
