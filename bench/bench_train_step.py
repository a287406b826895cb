"""Training-step cost of ABCC against the baselines, same batch, same process, interleaved.

Run: ``python -m bench.bench_train_step [--entries abcc,mlp,cnn] [--batch 8] [--threads 1]``;
writes bench/results/train_step_{cpu,gpu}.json/.md. Each entry's step is forward + backward of
``training_loss`` + an AdamW step on one batch of the default dataset's random-split training
part (with the SEI labels the trainer adds for ABCC; the baselines ignore them); the entries are timed in rounds (A, B, C, A, B, C, ...) so that a change of machine load hits
every entry alike, and the median over rounds is reported with the ratio to the first entry.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from abcc_fast.analysis.sei_labels import SeiLabelled, fitted_labels
from abcc_fast.data import default_dataset
from abcc_fast.model import ABCC, ABCCConfig
from abcc_fast.model import baselines as BL
from abcc_fast.train.trainer import TrainConfig, _autocast, collate

from .harness import machine_info, markdown_table, write_results


def build(entry: str, ds, preset: str):
    if entry == "abcc":
        return ABCC(ABCCConfig.from_dataset(ds, "random", preset=preset))
    return BL.get(entry).from_dataset(ds, "random", preset=preset)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", default="abcc,mlp,cnn,gru,simvp")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--preset", default="cpu_default")
    ap.add_argument("--batch-labels", action="store_true",
                    help="fit the SEI labels of the timed batch only (the step's cost does not depend on their "
                         "values; saves fitting the whole dataset, ~3 min, e.g. on a short GPU lease)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda: bf16 autocast, as the trainer runs it)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    t0 = time.perf_counter()

    def amp():                             # the trainer's own rule: bf16 autocast on CUDA, none on CPU
        return _autocast(device, TrainConfig())

    def phase(what):                       # where the time goes before the timing (first GPU run: > 90 s, unknown)
        print(f"[bench_train_step {time.perf_counter() - t0:.1f} s] {what}", file=sys.stderr, flush=True)
    ds = default_dataset(progress=False)
    phase("dataset loaded")
    if args.batch_labels:                  # the batch's own labels, fitted now (seconds, not minutes)
        part = ds.split("random", "train")  # once: a split part costs seconds to build
        items = [part[i] for i in range(args.batch)]
        labels = fitted_labels(ds, [int(it["index"]) for it in items])
        for it, label in zip(items, labels):
            it["sei_label"] = label
    else:                                  # ABCC's template-fit SEI labels, as the trainer adds them
        train = SeiLabelled(ds.split("random", "train"), ds, progress=False)
        items = [train[i] for i in range(args.batch)]
    batch = collate(items)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    phase("batch and SEI labels ready")
    entries = [e.strip() for e in args.entries.split(",") if e.strip()]
    models, opts = {}, {}
    for e in entries:
        torch.manual_seed(0)
        models[e] = build(e, ds, args.preset).to(device)
        opts[e] = torch.optim.AdamW(models[e].parameters(), lr=1e-4)
    phase("models built")
    times = {e: [] for e in entries}

    def step(e):
        g = torch.Generator().manual_seed(0)
        with amp():
            loss, _ = models[e].training_loss(batch, generator=g)
        opts[e].zero_grad(set_to_none=True)
        loss.backward()
        opts[e].step()

    for e in entries:                      # warm-up (on a GPU: the first call compiles the Triton kernels)
        step(e)
        if device.type == "cuda":
            torch.cuda.synchronize()
        phase(f"warm-up step of {e} done")
    for _ in range(args.rounds):
        for e in entries:
            t = time.perf_counter()
            step(e)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[e].append(time.perf_counter() - t)
    ref = statistics.median(times[entries[0]])
    rows = [{"entry": e, "params": sum(p.numel() for p in models[e].parameters()),
             "step_ms": 1e3 * statistics.median(times[e]), "ratio": statistics.median(times[e]) / ref}
            for e in entries]
    for r in rows:
        print(r, flush=True)
    info = machine_info(device)
    payload = {"machine": info, "batch": args.batch, "preset": args.preset, "rounds": args.rounds, "rows": rows}
    where = f"{info.get('gpu')}, bf16 autocast" if device.type == "cuda" else f"{args.threads} thread(s)"
    md = [f"# Training-step cost ({args.preset}, batch {args.batch}, {where})\n\n",
          f"Machine: {info.get('cpu')}, torch {info['torch']}, load average {info['load_average_1_5_15']}, "
          f"date {info['date']}. Median of {args.rounds} interleaved rounds; ratio to {entries[0]}.\n\n",
          f"Command: `python -m bench.bench_train_step --entries {args.entries} --batch {args.batch} "
          f"--threads {args.threads} --preset {args.preset} --device {args.device}"
          f"{' --batch-labels' if args.batch_labels else ''}`\n\n",
          markdown_table(rows, [("entry", "entry", ""), ("params", "parameters", "d"), ("step_ms", "ms/step", ".1f"),
                                ("ratio", f"x {entries[0]}", ".2f")])]
    write_results("train_step_gpu" if device.type == "cuda" else "train_step_cpu", payload, "".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
