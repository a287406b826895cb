"""`make gpu-check`: the first session on a GPU machine, in one command (written for <= 9 minutes on
one H100/H200, with a CUDA build of torch, triton, cmake and ninja already installed; no network).

Steps, in this order (the summary bench/results/gpu_check_gpu.json/.md is rewritten after each):
  1. build abcc_fast._C with its CUDA kernels (setup.py build_ext --inplace, ABCC_CUDA=ON, CMake tree
     build/cmake-cuda), once, then check in a fresh process that it loads and has CUDA;
  2. the GPU tests: the device-aware test files in parallel pytest processes (Triton compiles each
     kernel on first use; the processes share its cache), ahead-of-time compile tests deselected;
  3. the GPU benchmarks, shortest first, each the existing suite with --gpu: MeanFlow / ABCC training
     step (bench_meanflow), attention primal / JVP / backward vs SDPA and torch.func.jvp through the
     math backend (bench_attention), soft-DTW / DILATE vs pysdtw's CUDA path when installed
     (bench_soft_dtw). They write bench/results/{meanflow,attention,soft_dtw}_gpu.{json,md}.
A global deadline (--minutes, default 8.5) bounds everything: each step gets at most what is left,
the benchmarks stop adding rows at their share of it and write what they have, and the summary
says what did not run. Exit status: 0 all ran and passed, 1 a step failed or timed out, 2 no GPU.

    python -m bench.gpu_check              # the whole session (make gpu-check)
    python -m bench.gpu_check --dry-run    # no GPU needed: print the plan, import every part

The soft-DTW peer pysdtw (pure Python over numba's CUDA) was missing on the first H200 machine; where
pip cannot reach an index there, bring its wheel (`pip download --no-deps pysdtw==0.0.5 -d WHEELS`
where pip works, then `pip install --no-deps WHEELS/pysdtw-*.whl` there) to get the speed-up column.
The repository's tracked files were 92 MiB at the first run, over the 64 MiB its machine could
receive; the superseded results' figures have since been pruned (about 31 MiB on 2026-12-05), so
the tree travels as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SUMMARY = "gpu_check_gpu"

# Parallel pytest groups; "-k=EXPR" narrows a group (and-ed with TEST_FILTER). Split by what the first
# H200 run (2026-12-04) measured: the long soft-DTW walks ~100 s, the attention file > 170 s of Triton
# compiling in one process (its GPU-backend parametrisation ~150 s per dtype). "sm90" tests compile
# kernels ahead of time for CI without a GPU; here the kernels are compiled and run for real.
TEST_GROUPS = [
    ["tests/test_soft_dtw_cuda.py", "-k=precision_targets"],
    ["tests/test_soft_dtw_cuda.py", "-k=not precision_targets"],
    ["tests/test_two_stream_attention.py", "-k=not gpu_backends_match_reference"],
    ["tests/test_two_stream_attention.py", "-k=gpu_backends_match_reference and dtype0"],
    ["tests/test_two_stream_attention.py", "-k=gpu_backends_match_reference and dtype1"],
    ["tests/test_two_stream_attention.py", "-k=gpu_backends_match_reference and dtype2"],
    ["tests/test_soft_dtw_backends.py", "tests/test_meanflow.py",
     "tests/test_model.py::test_reference_backends_are_a_drop_in"],
    ["tests/test_gpu_devices.py", "tests/test_native_bindings.py"],
]
TEST_FILTER = "not sm90"
# (module, share of the time left when it starts); the last one runs to the global deadline.
BENCHES = [("bench.bench_meanflow", 0.25), ("bench.bench_attention", 0.45), ("bench.bench_soft_dtw", 1.0)]
BUILD_LIMIT_S = 240.0   # the H200 build took 44-64 s on 16 cores
TEST_LIMIT_S = 240.0
RESERVE_FOR_BENCH_S = 150.0
MARGIN_S = 15.0  # time a suite needs after its deadline to write its files


class Session:
    def __init__(self, minutes: float):
        self.t0 = time.time()
        self.deadline = self.t0 + 60.0 * minutes
        self.report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.t0)),
                             "minutes": minutes, "steps": {}, "ok": True}

    def left(self) -> float:
        return self.deadline - time.time()

    def record(self, step: str, **info) -> None:
        self.report["steps"][step] = info
        if info.get("status") not in ("ok", "skipped"):
            self.report["ok"] = False
        self.report["elapsed_s"] = round(time.time() - self.t0, 1)
        write_summary(self.report)


def _run(cmd, limit_s: float, env=None, log: Path | None = None) -> tuple[int | None, float, str]:
    """(return code or None on time-out, seconds, output tail)."""
    t = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1.0, limit_s))
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        rc = None
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
    if log is not None:
        log.write_text(out)
    return rc, round(time.time() - t, 1), out[-2000:]


# ---------------------------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------------------------
def build(s: Session) -> None:
    env = dict(os.environ, ABCC_CUDA="ON", ABCC_BUILD_DIR=str(ROOT / "build" / "cmake-cuda"),
               ABCC_BUILD_JOBS=str(os.cpu_count() or 8))
    log = ROOT / "build" / "gpu_check_build.log"  # the whole log; the summary keeps its tail
    log.parent.mkdir(parents=True, exist_ok=True)
    rc, secs, tail = _run([sys.executable, "setup.py", "build_ext", "--inplace"], min(BUILD_LIMIT_S, s.left()), env,
                          log=log)
    if rc != 0:
        s.record("build", status="timeout" if rc is None else "failed", seconds=secs, tail=tail, log=str(log))
        return
    probe = "import abcc_fast.ops as o, abcc_fast._C as C; assert C.has_cuda(); print(o.backends_report())"
    rc2, _, out = _run([sys.executable, "-c", probe], 120)
    s.record("build", status="ok" if rc2 == 0 else "failed", seconds=secs,
             backends=out.strip().splitlines()[-4:] if rc2 == 0 else None, tail=None if rc2 == 0 else out)


def _junit_summary(path: Path) -> dict:
    if not path.exists():
        return {"report": "missing"}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed": []}
    for suite in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            out[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None:
                msg = (bad.get("message") or "").splitlines()
                out["failed"].append(f"{case.get('classname')}::{case.get('name')}: {msg[0][:200] if msg else ''}")
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    return out


def _default_sigint() -> None:
    """In the test child, before exec: SIGINT back to its default. A session started in the background
    (`nohup ... &`) ignores SIGINT, children inherit that, and the interrupt that stops a group past its
    time limit (and makes pytest write its report) would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _group_args(group: list) -> tuple[list, str]:
    """(test paths, -k expression) of one TEST_GROUPS entry."""
    files = [g for g in group if not g.startswith("-k=")]
    extra = [f"({g[3:]})" for g in group if g.startswith("-k=")]
    return files, " and ".join([TEST_FILTER, *extra])


def run_tests(s: Session) -> None:
    limit = min(TEST_LIMIT_S, s.left() - RESERVE_FOR_BENCH_S)
    if limit < min(30.0, TEST_LIMIT_S):
        s.record("tests", status="skipped", reason=f"only {s.left():.0f} s left after the build")
        return
    tmp = Path(tempfile.mkdtemp(prefix="abcc_gpu_tests_"))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if s.report["steps"].get("build", {}).get("status") == "ok":
        env["ABCC_CUDA_CHECKED"] = "1"  # the real CUDA build just compiled the bindings' CUDA half
    procs = []
    t = time.time()
    for i, group in enumerate(TEST_GROUPS):
        files, k = _group_args(group)
        xml = tmp / f"group{i}.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", k, f"--junitxml={xml}", *files]
        log = open(tmp / f"group{i}.log", "w")
        procs.append((group, xml, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                   preexec_fn=_default_sigint)))
    groups, status = [], "ok"
    for group, xml, proc in procs:
        try:
            rc = proc.wait(timeout=max(1.0, limit - (time.time() - t)))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # pytest stops and still writes its JUnit report
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = None
        summary = _junit_summary(xml)
        summary.update(files=group, returncode=rc)
        if rc is None:
            status = "timeout"
        elif rc != 0 and status == "ok":
            status = "failed"
        groups.append(summary)
    s.record("tests", status=status, seconds=round(time.time() - t, 1), groups=groups, logs=str(tmp))


def run_benches(s: Session) -> None:
    for module, share in BENCHES:
        left = s.left()
        if left < 2 * MARGIN_S:
            s.record(module, status="skipped", reason="global deadline")
            continue
        end = time.time() + share * left - MARGIN_S
        env = dict(os.environ, ABCC_BENCH_DEADLINE=str(end))
        env.pop("TRITON_INTERPRET", None)
        rc, secs, tail = _run([sys.executable, "-m", module, "--gpu"], end - time.time() + 2 * MARGIN_S, env)
        status = "ok" if rc == 0 else ("timeout" if rc is None else "failed")
        s.record(module, status=status, seconds=secs, tail=None if rc == 0 else tail)


# ---------------------------------------------------------------------------------------------
# summary: the figures the targets name, pulled out of the suites' results
# ---------------------------------------------------------------------------------------------
def _load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def headline() -> dict:
    out = {}
    sd = _load("soft_dtw_gpu")
    if sd:
        rows = [r for r in sd["rows"] if r.get("op") == "soft_dtw" and r.get("B") == 64 and r.get("N") == 512
                and r.get("d") == 1 and r.get("mode") == "forward+backward" and "time_ms" in r]
        times = {r["impl"]: r["time_ms"] for r in rows}
        peer = times.get("pysdtw")
        out["soft_dtw_B64_N512_fwd_bwd_ms"] = times
        if peer:
            out["soft_dtw_speedup_vs_pysdtw_cuda"] = {k: peer / v for k, v in times.items() if k.startswith("abcc:")}
        else:
            out["soft_dtw_speedup_vs_pysdtw_cuda"] = "pysdtw not measured (not installed, or it failed)"
    at = _load("attention_gpu")
    if at:
        out["attention_N1024"] = [r for r in at.get("ratios", []) if r.get("N") == 1024]
        if "bf16_tangent_rel_error" in at:
            out["attention_bf16_tangent_rel_error"] = at["bf16_tangent_rel_error"]
    mf = _load("meanflow_gpu")
    if mf:
        out["abcc_training_step_ms"] = [{k: r[k] for k in ("preset", "batch", "jvp_mode", "time_ms")}
                                        for r in mf.get("training_loss", [])]
    return out


def write_summary(report: dict) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.harness import write_results

    report = dict(report, headline=headline())
    lines = [f"# GPU check ({report.get('gpu', '?')})\n",
             f"Started {report['started']}, {report.get('elapsed_s', 0)} s of a {report['minutes']} min budget; "
             f"overall: {'ok' if report['ok'] else 'NOT ok'}.\n", "\n| step | status | seconds | detail |",
             "|---|---|---|---|"]
    for step, info in report["steps"].items():
        detail = ""
        if step == "tests" and "groups" in info:
            detail = "; ".join(f"{' '.join(g['files'])}: {g.get('passed', '?')} passed, "
                               f"{g.get('failures', 0) + g.get('errors', 0)} failed, {g.get('skipped', 0)} skipped"
                               for g in info["groups"])
        elif info.get("reason"):
            detail = info["reason"]
        lines.append(f"| {step} | {info.get('status')} | {info.get('seconds', '')} | {detail} |")
    failed = [f for g in report["steps"].get("tests", {}).get("groups", []) for f in g.get("failed", [])]
    if failed:
        lines += ["\n## Failed tests\n"] + [f"- {f}" for f in failed]
    lines += ["\n## Headline figures\n", "```json", json.dumps(report["headline"], indent=2), "```", ""]
    write_results(SUMMARY, report, "\n".join(lines))


# ---------------------------------------------------------------------------------------------
def plan() -> str:
    rows = ["1. build: ABCC_CUDA=ON python setup.py build_ext --inplace (build/cmake-cuda), "
            f"at most {BUILD_LIMIT_S:.0f} s",
            f"2. tests ({len(TEST_GROUPS)} parallel pytest processes, each -k '{TEST_FILTER}' and its own, at most "
            f"{TEST_LIMIT_S:.0f} s):"]
    rows += [f"     {' '.join(g)}" for g in TEST_GROUPS]
    rows.append("3. benchmarks, each with --gpu: " + ", ".join(f"{m} ({share:.0%} of the time left)"
                                                             for m, share in BENCHES))
    rows.append(f"summary: bench/results/{SUMMARY}.json/.md")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=8.5, help="global time limit (default 8.5)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and import every part; no GPU needed")
    ap.add_argument("--skip-build", action="store_true", help="use the abcc_fast._C already built")
    args = ap.parse_args(argv)
    if args.dry_run:
        import importlib

        for module, _ in BENCHES:
            importlib.import_module(module)
        missing = [f for g in TEST_GROUPS for f in _group_args(g)[0] if not (ROOT / f.split("::")[0]).exists()]
        if missing:
            print("gpu_check: missing test files:", missing, file=sys.stderr)
            return 1
        print(plan())
        return 0
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device is visible (torch {torch.__version__}, built with CUDA "
              f"{torch.version.cuda or 'none'}); this command needs a GPU and a CUDA build of torch. "
              "Use `python -m bench.gpu_check --dry-run` to check it without one.", file=sys.stderr)
        return 2
    s = Session(args.minutes)
    s.report["gpu"] = torch.cuda.get_device_name()
    s.report["torch"] = f"{torch.__version__} (CUDA {torch.version.cuda})"
    print(plan(), flush=True)
    if args.skip_build:
        s.record("build", status="skipped", reason="--skip-build")
    else:
        build(s)
    print("build:", s.report["steps"]["build"].get("status"), flush=True)
    run_tests(s)
    print("tests:", s.report["steps"]["tests"].get("status"), flush=True)
    run_benches(s)
    write_summary(s.report)
    print(f"gpu_check: {'ok' if s.report['ok'] else 'NOT ok'} in {time.time() - s.t0:.0f} s; "
          f"see bench/results/{SUMMARY}.md", flush=True)
    return 0 if s.report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
