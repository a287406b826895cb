"""Every script in examples/ runs in its --quick mode and prints what it promises."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run(script: Path) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), "--quick"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{script.name} --quick failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_examples_are_covered_and_short():
    names = {p.name for p in EXAMPLES}
    assert {"train_forecaster_dilate.py", "score_your_model.py", "predict_measured.py"} <= names
    for p in EXAMPLES:
        assert "--quick" in p.read_text(), f"{p.name} needs a --quick mode for CI"


def test_train_forecaster_dilate():
    out = _run(ROOT / "examples" / "train_forecaster_dilate.py")
    rows = re.findall(r"trained with (\w+) .*DILATE ([\d.]+) -> ([\d.]+), MSE ([\d.]+) -> ([\d.]+)", out)
    assert [r[0] for r in rows] == ["DILATE", "MSE"], out
    for name, d0, d1, m0, m1 in rows:
        assert float(d1) < float(d0) and float(m1) < float(m0), f"{name} training did not lower both: {out}"
    dilate_row, mse_row = rows
    assert float(dilate_row[2]) < float(mse_row[2]), f"the DILATE-trained model should win on DILATE: {out}"


def test_score_your_model():
    out = _run(ROOT / "examples" / "score_your_model.py")
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out.splitlines()[2:] if line.strip()}
    assert set(rows) == {"voltage_slope", "persistence", "frame0"}, out
    for name, vals in rows.items():
        assert len(vals) == 4 and all(v == v and v >= 0 for v in vals), f"{name}: {vals}"


def test_predict_measured():
    from abcc_fast import pretrained

    if not pretrained.names():
        pytest.skip("no packaged weights in abcc_fast/pretrained (build them with `make pretrained`)")
    out = _run(ROOT / "examples" / "predict_measured.py")
    T = pretrained.card(pretrained.DEFAULT_NAME)["knows"]["T"]
    m = re.search(r"predicted (\d+) frames on (\d+) wavenumbers .*largest change ([\d.e-]+) AU at (\d+) cm\^-1", out)
    assert m and int(m.group(1)) == T, out
    assert 0 < float(m.group(3)) < 1 and 700 <= int(m.group(4)) <= 1900, out
    wrote = set(re.findall(r"^wrote (\S+)$", out, re.M))
    assert {"frames.csv", "frames.safetensors", "prediction.json", "voltage_frames.csv",
            "figures/operando_heatmap.png", "figures/sei_stream.png"} <= wrote, out


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_help(script):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--quick" in proc.stdout, proc.stderr
