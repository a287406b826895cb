"""Soft-DTW / DILATE throughput: every abcc_fast backend against the reference and the peers.

    python -m bench.bench_soft_dtw            # full grid
    python -m bench.bench_soft_dtw --quick    # a smoke run of the smallest shapes
    python -m bench.bench_soft_dtw --no-reference --threads 1   # skip the slow PyTorch reference rows
    python -m bench.bench_soft_dtw --gpu      # GPU session (make gpu-check): soft_dtw_gpu.*, short
                                              # timings, the slow reference capped at 5 s per call

Shapes (B, N=M) in {(64,32), (512,32), (64,512), (16,2048), (4,4096)}, d in {1, 64}; modes
`forward` (value only, no graph) and `forward+backward` (value, then gradient w.r.t. x); plus
DILATE forward+backward (gamma 0.01, alpha 0.5) on univariate series. Peers, measured in the same
run: pysdtw (its numba CPU path here, its CUDA kernel on a GPU) and tslearn's
SoftDTWLossPyTorch (numba, CPU). gamma = 1.0 for the soft-DTW rows (the peers' default).
Where precision="auto" computes float32 inputs in float64 (CPU, N > 2048) the float32 kernel is
timed as well (`abcc:cpu:fp32`). On the CPU the run ends with the OpIRBench scoring of the default
random test split (every metric, Persistence predictor), wall and process CPU time. The 1-minute
load average is recorded before and after (the machine may be shared).
Results: bench/results/soft_dtw_<cpu|cuda>.json and .md.
With ABCC_BENCH_DEADLINE set (bench.gpu_check), rows after the deadline are recorded as skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from abcc_fast.ops import backends
from abcc_fast.ops.soft_dtw import PRECISION_AUTO_LENGTH, dilate, soft_dtw

from .harness import RESULTS, machine_info, markdown_table, measure, past_deadline, write_results

SHAPES = [(64, 32), (512, 32), (64, 512), (16, 2048), (4, 4096)]
DIMS = [1, 64]
# Pure-PyTorch reference and the numba peers are slow: skip a row whose predicted time for one
# call exceeds this many seconds (the prediction uses the measured rate at a smaller shape).
PREDICT_CAP_S = 40.0
# ... and a row whose predicted peak memory (measured MB per cell at a smaller shape) exceeds this:
# tslearn materialises B x N x M x d in float64 (8 GB at B=64, N=512, d=64).
PREDICT_CAP_MB = 6000.0


def _peers(device: torch.device) -> dict:
    peers = {}
    try:
        import pysdtw

        sdtw = pysdtw.SoftDTW(gamma=1.0, use_cuda=device.type == "cuda")
        peers["pysdtw"] = lambda x, y: sdtw(x, y)
    except Exception as err:  # noqa: BLE001 - report any import/runtime failure
        print(f"pysdtw unavailable: {err}")
    if device.type == "cpu":
        try:
            from tslearn.metrics import SoftDTWLossPyTorch

            loss = SoftDTWLossPyTorch(gamma=1.0)
            peers["tslearn"] = lambda x, y: loss(x, y)
        except Exception as err:  # noqa: BLE001
            print(f"tslearn unavailable: {err}")
    return peers


def _ours(device: torch.device, reference: bool = True) -> list[str]:
    status = backends()
    native = ("cpu",) if device.type == "cpu" else ("triton", "cuda")
    return ["reference"] * reference + [b for b in native if status[b].available]


def _impls(device: torch.device, N: int, reference: bool) -> dict:
    impls = {f"abcc:{b}": (lambda b=b: (lambda a, c: soft_dtw(a, c, 1.0, backend=b)))()
             for b in _ours(device, reference)}
    if device.type == "cpu" and "abcc:cpu" in impls and N > PRECISION_AUTO_LENGTH:
        impls["abcc:cpu:fp32"] = lambda a, c: soft_dtw(a, c, 1.0, precision="float32", backend="cpu")
    return impls


def opirbench_scoring(threads: int) -> dict:
    """Scoring of the default random test split with every metric (Persistence predictor)."""
    from abcc_fast.data import default_dataset
    from abcc_fast.opirbench import ALL_METRICS, Persistence, evaluate

    ds = default_dataset()
    runs = []
    for _ in range(3):
        load = os.getloadavg()[0]
        c0, w0 = time.process_time(), time.perf_counter()
        r = evaluate(Persistence(), ds, "random", "test", metrics=ALL_METRICS, progress=False, num_threads=threads)
        runs.append(dict(wall_s=time.perf_counter() - w0, cpu_s=time.process_time() - c0, load_1m=load,
                         per_metric_s={k: round(v, 3) for k, v in r.timings.items()}))
        print(f"opirbench scoring, {threads} thread(s): wall {runs[-1]['wall_s']:.2f} s, cpu {runs[-1]['cpu_s']:.2f} s, "
              f"load {load:.1f}", flush=True)
    best = min(runs, key=lambda x: x["wall_s"])
    return dict(threads=threads, n_samples=r.n_samples, best_wall_s=best["wall_s"], best_cpu_s=best["cpu_s"],
                median_wall_s=sorted(x["wall_s"] for x in runs)[1], runs=runs,
                metrics={k: r.metrics[k] for k in ("dilate", "dilate_spec")})


def run(device: torch.device, quick: bool = False, checkpoint=None, reference: bool = True,
        gpu_session: bool = False) -> dict:
    """`reference`: include the (slow) PyTorch reference rows. `gpu_session`: shorter timings and a
    1 s cap on predicted per-call time (make gpu-check: on the first H200 run a 5 s cap let the
    reference rows at N >= 2048 use the time the DILATE rows needed)."""
    cap_s = 1.0 if gpu_session else PREDICT_CAP_S
    row_budget = 10.0 if gpu_session else 90.0
    torch.manual_seed(0)
    shapes = SHAPES[:2] if quick else SHAPES
    peers = _peers(device)
    # a peer's numba kernels can raise torch's thread count when their threading layer starts (seen
    # with tslearn: 1 -> 2 after its first backward), so every timed call restores the requested count
    threads = torch.get_num_threads()
    rows = []
    load_before = os.getloadavg()[0]
    rate = {}  # (impl, mode, d) -> cells/s measured at the largest shape so far, to predict cost
    mem_rate = {}  # (impl, mode, d) -> peak MB per cell, to predict memory
    for d in DIMS:
        for B, N in shapes:
            cells = B * N * N
            x = torch.randn(B, N, d, device=device)
            y = torch.randn(B, N, d, device=device)
            impls = _impls(device, N, reference)
            impls.update(peers)
            for mode in ("forward", "forward+backward"):
                for name, fn in impls.items():
                    key = (name, mode, d)
                    if past_deadline():
                        rows.append(dict(op="soft_dtw", B=B, N=N, d=d, mode=mode, impl=name,
                                         note="skipped: session deadline"))
                        continue
                    if key in rate and cells / rate[key] > cap_s:
                        rows.append(dict(op="soft_dtw", B=B, N=N, d=d, mode=mode, impl=name,
                                         note=f"skipped: predicted {cells / rate[key]:.0f} s per call"))
                        continue
                    if key in mem_rate and cells * mem_rate[key] > PREDICT_CAP_MB:
                        rows.append(dict(op="soft_dtw", B=B, N=N, d=d, mode=mode, impl=name,
                                         note=f"skipped: predicted {cells * mem_rate[key] / 1024:.0f} GB peak memory"))
                        continue
                    if mode == "forward":
                        def call(fn=fn):
                            with torch.no_grad():
                                fn(x, y)
                            torch.set_num_threads(threads)
                    else:
                        xg = x.clone().requires_grad_(True)

                        def call(fn=fn, xg=xg):
                            xg.grad = None
                            fn(xg, y).sum().backward()
                            torch.set_num_threads(threads)
                    try:
                        m = measure(call, device, budget=row_budget)
                    except Exception as err:  # noqa: BLE001 - a peer failing is a result too
                        rows.append(dict(op="soft_dtw", B=B, N=N, d=d, mode=mode, impl=name,
                                         note=f"failed: {type(err).__name__}: {str(err)[:120]}"))
                        continue
                    cps = cells / (m["time_ms"] / 1e3)
                    rate[key] = cps
                    if m["peak_mem_mb"] == m["peak_mem_mb"]:  # not NaN
                        mem_rate[key] = max(mem_rate.get(key, 0.0), m["peak_mem_mb"] / cells)
                    rows.append(dict(op="soft_dtw", B=B, N=N, d=d, mode=mode, impl=name, cells_per_s=cps, **m))
                    if checkpoint:
                        checkpoint(rows)
                    print(f"soft_dtw d={d} B={B} N={N} {mode:16s} {name:15s} {m['time_ms']:10.2f} ms "
                          f"{cps:9.3g} cells/s {m['peak_mem_mb']:8.1f} MB", flush=True)
    torch.set_num_threads(threads)
    # DILATE (univariate, gamma 0.01) forward+backward, ours only: no peer implements it
    for B, N in shapes:
        x = torch.randn(B, N, device=device)
        y = torch.randn(B, N, device=device)
        cells = B * N * N
        for b in _ours(device, reference):
            key = (f"abcc:{b}", "dilate", 1)
            if key in rate and cells / rate[key] > cap_s or past_deadline():
                note = "skipped: session deadline" if past_deadline() else \
                    f"skipped: predicted {cells / rate[key]:.0f} s per call"
                rows.append(dict(op="dilate", B=B, N=N, d=1, mode="forward+backward", impl=f"abcc:{b}", note=note))
                continue
            xg = x.clone().requires_grad_(True)

            def call(b=b, xg=xg):
                xg.grad = None
                dilate(xg, y, 0.5, 0.01, backend=b)[0].backward()
            m = measure(call, device, budget=row_budget)
            cps = cells / (m["time_ms"] / 1e3)
            rate[key] = cps
            rows.append(dict(op="dilate", B=B, N=N, d=1, mode="forward+backward", impl=f"abcc:{b}",
                             cells_per_s=cps, **m))
            print(f"dilate   d=1 B={B} N={N} forward+backward {'abcc:' + b:15s} {m['time_ms']:10.2f} ms "
                  f"{cps:9.3g} cells/s {m['peak_mem_mb']:8.1f} MB", flush=True)
    _add_ratios(rows)
    out = {"machine": machine_info(device), "gamma": 1.0, "dilate_gamma": 0.01, "rows": rows,
           "threads": torch.get_num_threads(), "load_1m_before": load_before, "load_1m_after": os.getloadavg()[0]}
    if device.type == "cpu" and not quick:
        out["opirbench_scoring"] = opirbench_scoring(torch.get_num_threads())
    return out


def _shape_key(r: dict) -> tuple:
    return r["op"], r["B"], r["N"], r["d"], r["mode"]


def _timed_groups(rows: list[dict]) -> dict:
    """Timed rows by (op, B, N, d, mode)."""
    groups: dict = {}
    for r in rows:
        if "time_ms" in r:
            groups.setdefault(_shape_key(r), []).append(r)
    return groups


def _best_peer_ms(group: list[dict]):
    return min((r["time_ms"] for r in group if not r["impl"].startswith("abcc:")), default=None)


def _add_ratios(rows: list[dict]) -> None:
    """speedup of each row vs the reference and vs the fastest peer in the same (op, B, N, d, mode)."""
    for group in _timed_groups(rows).values():
        ref = next((r["time_ms"] for r in group if r["impl"] == "abcc:reference"), None)
        peer = _best_peer_ms(group)
        for r in group:
            if ref:
                r["speedup_vs_reference"] = ref / r["time_ms"]
            if peer:
                r["speedup_vs_best_peer"] = peer / r["time_ms"]


def compare(old_name: str, new_name: str) -> tuple:
    """Our rows of two saved runs side by side (bench/results/<old>_vs_<new>.md): time and ratio to
    the best peer of the same run, so that machine-load differences between the runs show in the
    peers' columns rather than only in ours."""
    runs = [json.loads((RESULTS / f"{n}.json").read_text()) for n in (old_name, new_name)]
    old = {(_shape_key(r), r["impl"]): r for r in runs[0]["rows"] if "time_ms" in r}
    peers = [{k: _best_peer_ms(g) for k, g in _timed_groups(run["rows"]).items()} for run in runs]
    rows = []
    for r in runs[1]["rows"]:
        if "time_ms" not in r or not r["impl"].startswith("abcc:"):
            continue
        k = _shape_key(r)
        o = old.get((k, r["impl"]), {})
        rows.append(dict(op=r["op"], B=r["B"], N=r["N"], d=r["d"], mode=r["mode"], impl=r["impl"],
                         old_ms=o.get("time_ms"), new_ms=r["time_ms"], old_peer=peers[0].get(k),
                         new_peer=peers[1].get(k), old_x=o.get("speedup_vs_best_peer"),
                         new_x=r.get("speedup_vs_best_peer")))
    cols = [("op", "op", ""), ("B", "B", ""), ("N", "N=M", ""), ("d", "d", ""), ("mode", "mode", ""),
            ("impl", "implementation", ""), ("old_ms", "old (ms)", ".2f"), ("new_ms", "new (ms)", ".2f"),
            ("old_peer", "best peer, old run (ms)", ".2f"), ("new_peer", "best peer, new run (ms)", ".2f"),
            ("old_x", "old x best peer", ".1f"), ("new_x", "new x best peer", ".1f")]
    info = [run["machine"] for run in runs]
    md = (f"# soft-DTW, {old_name} (old) vs {new_name} (new)\n\n"
          f"Two runs of `bench.bench_soft_dtw`, each against the peers in its own run. Old: git "
          f"{info[0].get('git', '?')}, {info[0]['date']}, load {runs[0]['load_1m_before']:.1f} -> "
          f"{runs[0]['load_1m_after']:.1f}. New: git {info[1].get('git', '?')}, {info[1]['date']}, load "
          f"{runs[1]['load_1m_before']:.1f} -> {runs[1]['load_1m_after']:.1f}. {runs[1]['threads']} thread(s).\n\n"
          + markdown_table(rows, cols))
    for run, label in zip(runs, ("old", "new")):
        if "opirbench_scoring" in run:
            md += f"\nOpIRBench scoring, {label}: best wall {run['opirbench_scoring']['best_wall_s']:.2f} s\n"
    return write_results(f"{old_name}_vs_{new_name}", {"old": old_name, "new": new_name, "rows": rows}, md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                        help="write OLD_vs_NEW.md from two saved runs under bench/results/ and exit")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smallest shapes only (smoke run)")
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) PyTorch reference rows")
    parser.add_argument("--threads", type=int, default=0, help="torch / OpenMP threads (0: torch's default)")
    parser.add_argument("--gpu", action="store_true",
                        help="GPU session: needs CUDA, writes soft_dtw_gpu.json/.md (make gpu-check)")
    parser.add_argument("--out", default="",
                        help="results name under bench/results/ (default soft_dtw_<device>, soft_dtw_gpu with --gpu)")
    args = parser.parse_args()
    if args.compare:
        print("wrote", *compare(*args.compare))
        return
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        # the peers' numba kernels get the same number of threads (read when numba is first imported)
        os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("bench_soft_dtw --gpu: no CUDA device is visible")
    device = torch.device("cuda" if args.gpu else args.device)
    name = "soft_dtw_quick_" + device.type if args.quick else "soft_dtw_" + device.type
    if args.gpu:
        name = "soft_dtw_gpu"
    if args.out:
        name = args.out

    def checkpoint(rows):  # partial results survive a crash of a later row
        write_results(name + "_partial", {"machine": machine_info(device), "rows": rows}, "")

    result = run(device, quick=args.quick, checkpoint=checkpoint, reference=not args.no_reference,
                 gpu_session=args.gpu)
    cols = [("op", "op", ""), ("B", "B", ""), ("N", "N=M", ""), ("d", "d", ""), ("mode", "mode", ""),
            ("impl", "implementation", ""), ("time_ms", "time (ms)", ".2f"), ("cells_per_s", "cells/s", ".3g"),
            ("peak_mem_mb", "peak mem (MB)", ".1f"), ("speedup_vs_reference", "x reference", ".1f"),
            ("speedup_vs_best_peer", "x best peer", ".1f"), ("note", "note", "")]
    info = result["machine"]
    md = (f"# soft-DTW / DILATE benchmark ({device.type})\n\n"
          f"{info['date']}, {info.get('gpu', info['cpu'])}, {info['cpu_count']} cores, torch {info['torch']}, "
          f"git {info.get('git', '?')}. gamma = 1.0 (soft-DTW), 0.01 (DILATE). Median of repeated calls; "
          "peak memory = growth of peak RSS (CPU) or of max allocated (CUDA) during one call. "
          f"{result['threads']} thread(s); 1-minute load average {result['load_1m_before']:.1f} before, "
          f"{result['load_1m_after']:.1f} after.\n\n"
          + markdown_table(result["rows"], cols))
    if "opirbench_scoring" in result:
        sc = result["opirbench_scoring"]
        md += (f"\n\nOpIRBench scoring (default random test split, {sc['n_samples']} samples, every metric, "
               f"{sc['threads']} thread(s)): best wall {sc['best_wall_s']:.2f} s (median {sc['median_wall_s']:.2f} s), "
               f"process CPU {sc['best_cpu_s']:.2f} s; per metric (best run): {sc['runs'][0]['per_metric_s']}.\n")
    paths = write_results(name, result, md)
    for suffix in (".json", ".md"):
        (paths[0].parent / (name + "_partial" + suffix)).unlink(missing_ok=True)
    print("wrote", *paths)


if __name__ == "__main__":
    main()
