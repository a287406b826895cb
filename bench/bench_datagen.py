"""OpIRSim generation throughput: wall time of `abcc_fast.data.generate` (simulate + write shards +
sha256 + manifest) and of `load` (sha256 + validation) at a few sizes, default grid (T=32, W=512).

    python -m bench.bench_datagen            # 512, 2048 and the full default 7,118 samples
    python -m bench.bench_datagen --quick    # 512 and 2048 only

Writes bench/results/datagen_cpu.json with machine information. A benchmark, not a test."""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from bench.harness import RESULTS, machine_info


def _time_generate(n: int, seed: int) -> dict:
    from abcc_fast.data import generate, load

    tmp = Path(tempfile.mkdtemp(prefix="bench_datagen_"))
    try:
        t0 = time.perf_counter()
        path = generate(tmp / "d", n_samples=n, seed=seed, progress=False)
        t_gen = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in path.iterdir())
        t0 = time.perf_counter()
        ds = load(path)
        t_load = time.perf_counter() - t0
        assert len(ds) == n
        return {"samples": n, "T": 32, "W": 512, "generate_s": round(t_gen, 3), "load_s": round(t_load, 3),
                "samples_per_s": round(n / t_gen, 1), "bytes": size}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="skip the full 7,118-sample run")
    ap.add_argument("--seed", type=int, default=0)
    args, _ = ap.parse_known_args(argv)
    sizes = [512, 2048] + ([] if args.quick else [7118])
    import os
    load_before = os.getloadavg()
    rows = []
    for n in sizes:
        r = _time_generate(n, args.seed)
        print(f"{n:6d} samples: generate {r['generate_s']:7.2f} s ({r['samples_per_s']:.0f}/s), "
              f"load {r['load_s']:6.2f} s, {r['bytes'] / 2**20:.0f} MiB", flush=True)
        rows.append(r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "datagen_cpu.json"
    info = machine_info(torch.device("cpu"))
    # the 2 cores are shared: the load average says how contended the timings were
    info["load_average_1_5_15_before"] = [round(x, 2) for x in load_before]
    info["load_average_1_5_15_after"] = [round(x, 2) for x in os.getloadavg()]
    out.write_text(json.dumps({"suite": "datagen", "machine": info,
                               "target": "default 7,118 samples <= 60 s on 2 cores", "results": rows},
                              indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
