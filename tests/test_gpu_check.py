"""The parts of `make gpu-check` (bench/gpu_check.py) that run without a GPU: the plan, the clear
refusal without a device, the test-group runner and its JUnit parsing, a failing step marking the
session as not ok, and the summary's headline figures."""
import json
import subprocess
import sys

import pytest
import torch

from bench import gpu_check, harness


def test_dry_run_imports_every_part_and_prints_the_plan():
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry-run"], cwd=gpu_check.ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "bench.bench_soft_dtw" in proc.stdout and "tests/test_soft_dtw_cuda.py" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_without_a_gpu_it_fails_clearly():
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check"], cwd=gpu_check.ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr


def test_session_records_tests_and_failing_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    monkeypatch.setattr(gpu_check, "RESULTS", tmp_path)
    (tmp_path / "t_demo.py").write_text("import pytest\n\ndef test_a():\n    pass\n\ndef test_b():\n    assert 1 == 2\n\n"
                                        "@pytest.mark.skip\ndef test_c():\n    pass\n")
    monkeypatch.setattr(gpu_check, "TEST_GROUPS", [[str(tmp_path / "t_demo.py")]])
    monkeypatch.setattr(gpu_check, "RESERVE_FOR_BENCH_S", 0.0)
    s = gpu_check.Session(minutes=3)
    gpu_check.run_tests(s)
    (group,) = s.report["steps"]["tests"]["groups"]
    assert (group["passed"], group["failures"], group["skipped"]) == (1, 1, 1)
    assert "test_b" in group["failed"][0] and s.report["ok"] is False
    summary = json.loads((tmp_path / f"{gpu_check.SUMMARY}.json").read_text())
    assert summary["steps"]["tests"]["status"] == "failed"
    assert "t_demo.py" in (tmp_path / f"{gpu_check.SUMMARY}.md").read_text()


def test_headline_picks_the_target_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "RESULTS", tmp_path)
    rows = [dict(op="soft_dtw", B=64, N=512, d=1, mode="forward+backward", impl=i, time_ms=t)
            for i, t in (("abcc:cuda", 2.0), ("abcc:triton", 4.0), ("pysdtw", 80.0))]
    rows.append(dict(op="soft_dtw", B=64, N=512, d=64, mode="forward+backward", impl="pysdtw", time_ms=1.0))
    (tmp_path / "soft_dtw_gpu.json").write_text(json.dumps({"rows": rows}))
    head = gpu_check.headline()
    assert head["soft_dtw_speedup_vs_pysdtw_cuda"] == {"abcc:cuda": 40.0, "abcc:triton": 20.0}


def test_a_group_past_its_time_limit_is_stopped_and_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    monkeypatch.setattr(gpu_check, "RESULTS", tmp_path)
    (tmp_path / "t_slow.py").write_text("import time\n\ndef test_fast():\n    pass\n\n"
                                        "def test_slow():\n    time.sleep(120)\n")
    monkeypatch.setattr(gpu_check, "TEST_GROUPS", [[str(tmp_path / "t_slow.py")]])
    monkeypatch.setattr(gpu_check, "RESERVE_FOR_BENCH_S", 0.0)
    monkeypatch.setattr(gpu_check, "TEST_LIMIT_S", 12.0)
    s = gpu_check.Session(minutes=3)
    gpu_check.run_tests(s)
    step = s.report["steps"]["tests"]
    assert step["status"] == "timeout" and step["seconds"] < 45
    assert step["groups"][0].get("passed") == 1  # the report written on interrupt counts what ran


def test_a_group_can_narrow_its_tests():
    assert gpu_check._group_args(["a.py", "b.py"]) == (["a.py", "b.py"], gpu_check.TEST_FILTER)
    files, k = gpu_check._group_args(["a.py", "-k=x and not y"])
    assert files == ["a.py"] and k == f"{gpu_check.TEST_FILTER} and (x and not y)"
