"""MeanFlow benchmarks: training-step cost of ABCC's chemical flow against flow matching, and
inference throughput. Run: ``python -m bench.bench_meanflow [--quick] [--gpu]``; writes
bench/results/meanflow_<device>.json/.md (``--gpu``: meanflow_gpu.*, the make gpu-check session;
with ABCC_BENCH_DEADLINE set, sections after the deadline are left out and what is done written).

1. Core step (same network, same N queries (x_r, r, tau), forward + backward):
     flow matching      u = net(q); loss = mse(u, v)
     MeanFlow full      + du_dr = JVP of net with tangent (v, 1, 0, dV/dr) on all N rows
                        (torch.func.jvp, detached parameters: ABCC's DDP-safe form)
     MeanFlow fused     (u, du_dr) from ONE torch.func.jvp whose primal carries the gradient
                        (one primal+tangent pass; not DDP-hook friendly)
     MeanFlow subset    JVP only on the r != tau rows (jvp_fraction of N), as ABCC trains
   Targets: full <= 1.35x, subset <= 1.15x flow matching.
2. ABCC.training_loss step (trajectories + MeanFlow sources + constraints) with jvp_mode none / full
   (the identity's JVP runs once per source for all its decoded taus).
3. Inference: ABCC.predict spectra/s (frames predicted per second) with the reference ops and,
   where they run (CUDA), the fused ones; plus meanflow_integrate alone.
CPU numbers use one thread per process on the shared 2-core machine unless --threads is given.
"""
from __future__ import annotations

import argparse
import sys

import torch

from abcc_fast.model import ABCC, ABCCConfig
from abcc_fast.ops import backends, meanflow_integrate, meanflow_target

from .harness import machine_info, markdown_table, measure, past_deadline, write_results


def make_config(preset: str, device, **kw) -> ABCCConfig:
    W, T = 512, 32
    wn = [700.0 + 1200.0 * i / (W - 1) for i in range(W)]
    windows = {"EC_CO_1755_1815": [1755.0, 1815.0], "PF6_820_880": [820.0, 880.0]}
    # sei_from_extents off: this times the network's per-(r, tau) velocity and its JVP, which the
    # extent-driven SEI stream (integrated over the whole protocol) does not have; the options that act
    # on that stream go with it (the real preset's step on real data: bench/bench_train_step.py)
    kw.setdefault("sei_from_extents", False)
    if not kw["sei_from_extents"]:
        kw.setdefault("extent_passivation", 0.0)
        kw.setdefault("extent_chemistry", False)
        kw.setdefault("w_sei_label", 0.0)   # the synthetic batch has no template-fit labels
    return ABCCConfig.preset(preset, W=W, T=T, n_components=15, n_electrodes=5, n_reactions=18, wavenumber=wn,
                             marker_windows=windows, norm_mean=0.07, norm_std=0.14, **kw)


def make_batch(B: int, cfg: ABCCConfig, device) -> dict:
    g = torch.Generator().manual_seed(0)
    W, T = cfg.W, cfg.T
    nu = torch.tensor(cfg.wavenumber)
    tau = torch.linspace(0, 1, T)
    centers = 700 + 1200 * torch.rand(B, 12, generator=g)
    amps = 0.5 * torch.rand(B, 12, generator=g)
    static = (amps[..., None] * torch.exp(-0.5 * ((nu - centers[..., None]) / 8.0) ** 2)).sum(1)
    drift = 0.05 * torch.rand(B, 1, W, generator=g) * tau[None, :, None]
    frames = static[:, None] + drift + 0.002 * torch.randn(B, T, W, generator=g)
    return {k: v.to(device) for k, v in dict(
        static=static, frames=frames, voltage=(3.0 - 2.8 * tau).expand(B, T).contiguous(),
        time_s=(36000.0 * tau).expand(B, T).contiguous(),
        composition=torch.softmax(torch.randn(B, 15, generator=g), -1),
        electrode=torch.randint(0, 5, (B,), generator=g)).items()}


def core_queries(model: ABCC, batch: dict, n_per_sample: int, jvp_fraction: float, device):
    """N = B * n_per_sample MeanFlow queries drawn like ABCC's pairs."""
    from abcc_fast.model.series import interpolate, time_derivative
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    B = batch["static"].shape[0]
    frames = (batch["frames"] - cfg.norm_mean) / cfg.norm_std
    static = (batch["static"] - cfg.norm_mean) / cfg.norm_std
    r = torch.rand(B, n_per_sample, generator=g).to(device)
    jump = torch.zeros(B, n_per_sample, dtype=torch.bool)
    jump.view(-1)[torch.randperm(B * n_per_sample, generator=g)[:round(jvp_fraction * B * n_per_sample)]] = True
    jump = jump.to(device)
    tau = torch.where(jump, r + (1 - r) * torch.rand(B, n_per_sample, generator=g).to(device), r)
    state = model.protocol_state(batch["voltage"], batch["time_s"])          # [B, T, n_state]
    q = dict(x=interpolate(frames, r).flatten(0, 1), static=static.repeat_interleave(n_per_sample, 0),
             r=r.flatten(), tau=tau.flatten(), state_r=interpolate(state, r).flatten(0, 1),
             state_tau=interpolate(state, tau).flatten(0, 1),
             composition=model.context(batch["composition"], batch["time_s"], batch["voltage"])
             .repeat_interleave(n_per_sample, 0),
             electrode=batch["electrode"].repeat_interleave(n_per_sample, 0))
    v = interpolate(time_derivative(frames), r).flatten(0, 1)
    dv = interpolate(time_derivative(state), r).flatten(0, 1)
    return q, v, dv, jump.flatten()


def _args(q, rows=None):
    keys = ("x", "static", "r", "tau", "state_r", "state_tau", "composition", "electrode")
    return [q[k] if rows is None else q[k][rows] for k in keys]


def core_steps(model: ABCC, q, v, dv, jump):
    rows = torch.nonzero(jump).reshape(-1)

    def fm():
        us, uz, ub = model.velocity(*_args(q))
        loss = (us + uz + ub - v).pow(2).mean()
        loss.backward()

    def mf(rows_):
        def step():
            us, uz, ub = model.velocity(*_args(q))
            u = us + uz + ub
            du = torch.zeros_like(u)
            if rows_ is None:
                du = model._total_velocity_jvp(*_args(q), v=v, dstate_dr=dv)
            elif rows_.numel():
                du[rows_] = model._total_velocity_jvp(*_args(q, rows_), v=v[rows_], dstate_dr=dv[rows_])
            loss, _, _ = meanflow_target(u, v, du, q["r"], q["tau"])
            loss.backward()
        return step

    def mf_fused():
        a = _args(q)

        def u_total(x_, r_, vr_):
            us, uz, ub = model.velocity(x_, a[1], r_, a[3], vr_, a[5], a[6], a[7])
            return us + uz + ub
        u, du = torch.func.jvp(u_total, (a[0], a[2], a[4]), (v, torch.ones_like(a[2]), dv))
        loss, _, _ = meanflow_target(u, v, du.detach(), q["r"], q["tau"])
        loss.backward()

    return {"flow matching": fm, "MeanFlow full (detached JVP)": mf(None), "MeanFlow full (fused primal+JVP)": mf_fused,
            "MeanFlow subset (r != tau rows)": mf(rows)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny preset only, short timings")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machine)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--gpu", action="store_true",
                    help="GPU session: needs CUDA, shorter timings, writes meanflow_gpu.json/.md (make gpu-check)")
    args = ap.parse_args(argv)
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("bench_meanflow --gpu: no CUDA device is visible")
    device = torch.device("cuda" if args.gpu else args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    presets = ["tiny"] if args.quick else (["tiny", "cpu_default"] if device.type == "cpu" else ["cpu_default", "gpu_default"])
    min_time = 0.5 if args.quick or args.gpu else 2.0
    B = 8 if device.type == "cpu" else 64
    jvp_fraction = 0.25

    rows_core, rows_train, rows_inf = [], [], []
    skipped = []
    for preset in presets:
        if past_deadline():
            skipped.append(f"preset {preset}: session deadline")
            continue
        cfg = make_config(preset, device)
        model = ABCC(cfg).to(device)
        with torch.no_grad():  # non-zero heads, so that every path does real work
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
        batch = make_batch(B, cfg, device)
        n_q = 16 if device.type == "cpu" else 32
        q, v, dv, jump = core_queries(model, batch, n_q, jvp_fraction, device)
        base = None
        for name, fn in core_steps(model, q, v, dv, jump).items():
            def step():
                model.zero_grad(set_to_none=True)
                fn()
            m = measure(step, device, min_time=min_time, max_reps=30, budget=120)
            base = base or m["time_ms"]
            rows_core.append({"preset": preset, "queries": int(q["x"].shape[0]), "step": name,
                              "time_ms": m["time_ms"], "ratio": m["time_ms"] / base, "peak_mem_mb": m["peak_mem_mb"]})
            print(rows_core[-1], flush=True)
        base = None
        for mode in ("none", "full"):
            cfg_m = make_config(preset, device, jvp_mode=mode)
            model_m = ABCC(cfg_m).to(device)
            model_m.load_state_dict(model.state_dict())

            def step():
                model_m.zero_grad(set_to_none=True)
                loss, _ = model_m.training_loss(batch, generator=torch.Generator().manual_seed(0))
                loss.backward()
            m = measure(step, device, min_time=min_time, max_reps=20, budget=120)
            base = base or m["time_ms"]
            rows_train.append({"preset": preset, "batch": B, "jvp_mode": mode, "time_ms": m["time_ms"],
                               "ratio": m["time_ms"] / base, "peak_mem_mb": m["peak_mem_mb"]})
            print(rows_train[-1], flush=True)
        # inference: predict all T frames of B_inf samples
        if past_deadline():
            skipped.append(f"preset {preset} inference: session deadline")
            continue
        B_inf = 32 if device.type == "cpu" else 512
        inf_batch = make_batch(B_inf, cfg, device)
        ops = ["reference"] + [b for b in ("cuda", "triton") if device.type == "cuda" and backends()[b].available]
        for ops_backend in ops:
            attn = "reference" if ops_backend == "reference" else None
            cfg_i = make_config(preset, device, ops_backend=ops_backend, attention_backend=attn)
            model_i = ABCC(cfg_i).to(device).eval()
            model_i.load_state_dict(model.state_dict())
            m = measure(lambda: model_i.predict(inf_batch["static"], inf_batch["voltage"], inf_batch["composition"],
                                                inf_batch["electrode"], time_s=inf_batch["time_s"],
                                                return_streams=True),
                        device, min_time=min_time, max_reps=20, budget=120)
            rows_inf.append({"preset": preset, "what": f"ABCC.predict (ops {ops_backend}, attention {attn or 'auto'})",
                             "spectra": B_inf * cfg.T, "time_ms": m["time_ms"],
                             "spectra_per_s": B_inf * cfg.T / (m["time_ms"] / 1e3)})
            print(rows_inf[-1], flush=True)
    # the integration op alone (all frames from one state), reference vs fused where they run
    Bi, T, W = (256, 32, 512)
    x0 = torch.randn(Bi, W, device=device)
    uy, uz = torch.randn(Bi, T, W, device=device), torch.randn(Bi, T, W, device=device)
    taus = torch.linspace(0, 1, T, device=device)
    for b in ["reference"] + [b for b in ("cuda", "triton") if device.type == "cuda" and backends()[b].available]:
        if past_deadline():
            skipped.append(f"meanflow_integrate ({b}): session deadline")
            continue
        m = measure(lambda: meanflow_integrate(x0, uy, uz, 0.0, taus, backend=b), device, min_time=min_time,
                    max_reps=50, budget=60)
        rows_inf.append({"preset": "-", "what": f"meanflow_integrate alone ({b}), B={Bi}", "spectra": Bi * T,
                         "time_ms": m["time_ms"], "spectra_per_s": Bi * T / (m["time_ms"] / 1e3)})
        print(rows_inf[-1], flush=True)

    info = machine_info(device)
    payload = {"machine": info, "jvp_fraction": jvp_fraction, "core": rows_core, "training_loss": rows_train,
               "inference": rows_inf,
               "targets": {"full_over_fm": 1.35, "subset_over_fm": 1.15}, "skipped": skipped}
    md = [f"# MeanFlow benchmarks ({device.type})\n", f"Machine: {info.get('cpu')} / {info.get('gpu', 'no GPU')}, "
          f"torch {info['torch']}, {info['torch_threads']} thread(s), date {info['date']}.\n",
          f"\n## Core step: same network, same N queries, forward + backward (jvp_fraction {jvp_fraction})\n\n"
          "Targets: MeanFlow full <= 1.35x, subset <= 1.15x flow matching.\n\n",
          markdown_table(rows_core, [("preset", "preset", ""), ("queries", "N", "d"), ("step", "step", ""),
                                     ("time_ms", "ms", ".1f"), ("ratio", "x FM", ".2f"), ("peak_mem_mb", "peak MB", ".0f")]),
          "\n## ABCC.training_loss step (trajectories + pairs + constraints)\n\n",
          markdown_table(rows_train, [("preset", "preset", ""), ("batch", "B", "d"), ("jvp_mode", "jvp_mode", ""),
                                      ("time_ms", "ms", ".1f"), ("ratio", "x none", ".2f"),
                                      ("peak_mem_mb", "peak MB", ".0f")]),
          "\n## Inference\n\n",
          markdown_table(rows_inf, [("preset", "preset", ""), ("what", "what", ""), ("spectra", "spectra", "d"),
                                    ("time_ms", "ms", ".1f"), ("spectra_per_s", "spectra/s", ".0f")])]
    if device.type == "cpu":
        md.append("\nFused MeanFlow ops run on CUDA tensors only (Triton on CPU is the interpreter, the CUDA "
                  "kernels need a GPU): on CPU the reference backend is the one that runs.\n")
    if skipped:
        md.append("\nNot run (time limit): " + "; ".join(skipped) + ".\n")
    write_results("meanflow_gpu" if args.gpu else f"meanflow_{device.type}", payload, "".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
