"""End to end with the real ABCC (tiny config): `abcc train` -> `abcc predict` on fixture CSVs ->
`abcc bench --model DIR`; and bad input to predict/train: a clear error, nothing written."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from abcc_fast.cli import main
from abcc_fast.data import generate

FIX = Path(__file__).parent / "fixtures"
STATIC, VOLTAGE = FIX / "predict_static.csv", FIX / "predict_voltage.csv"
COMPOSITION = "EC=0.53,DMC=0.38,VC=0.01,LiPF6=0.08"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny dataset (T=8 like the fixture voltage table, W=64) and a tiny ABCC trained 4 steps by the CLI."""
    root = tmp_path_factory.mktemp("e2e")
    data = generate(root / "data", n_samples=80, T=8, W=64, seed=0, progress=False)
    run = root / "run"
    rc = main(["train", "--data", str(data), "--split", "random", "--preset", "tiny", "--steps", "4",
               "--out", str(run), "--no-progress"])
    assert rc == 0
    return data, run


def _predict(trained, out, *extra, static=STATIC, voltage=VOLTAGE, composition=COMPOSITION, electrode="LTO"):
    _, run = trained
    return main(["predict", "--model", str(run / "model"), "--static", str(static), "--voltage", str(voltage),
                 "--composition", composition, "--electrode", electrode, "--out", str(out), *extra])


def test_train_writes_a_resumable_run(trained):
    _, run = trained
    for f in ("model/model.safetensors", "model/config.json", "model/training_data.json", "log.csv",
              "train_config.json", "train_result.json", "checkpoints/LATEST"):
        assert (run / f).is_file(), f
    result = json.loads((run / "train_result.json").read_text())
    assert result["steps_done"] == 4 and result["stopped_by"] == "steps" and result["capped"] is False
    assert result["steps_budget"] == 4 and result["s_per_step"] > 0        # the wall clock beside the steps
    # without --resume an existing run is not clobbered
    assert main(["train", "--data", str(trained[0]), "--preset", "tiny", "--steps", "4", "--out", str(run),
                 "--no-progress"]) == 2


def test_predict_writes_frames_streams_samples_and_figures(trained, tmp_path):
    out = tmp_path / "pred"
    assert _predict(trained, out, "--streams", "--samples", "3") == 0
    t = load_file(str(out / "frames.safetensors"))
    assert t["frames"].shape == (8, 64) and t["wavenumber"].shape == (64,)
    assert t["solvent"].shape == t["sei"].shape == (8, 64) and t["samples"].shape == (3, 8, 64)
    assert all(torch.isfinite(v).all() for v in t.values())
    with open(out / "frames.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["wavenumber"] + [f"frame_{k}" for k in range(8)] and len(rows) == 65
    assert float(rows[1][0]) == pytest.approx(float(t["wavenumber"][0]), abs=1e-3)
    assert float(rows[5][3]) == pytest.approx(float(t["frames"][2, 4]), rel=1e-5, abs=1e-7)
    for f in ("operando_heatmap.png", "solvent_stream.png", "sei_stream.png", "uncertainty_last_frame.png"):
        assert (out / "figures" / f).stat().st_size > 1000, f
    meta = json.loads((out / "prediction.json").read_text())
    assert meta["electrode"] == "LTO" and set(meta["composition"]) == {"EC", "DMC", "VC", "LiPF6"}


def test_bench_scores_the_trained_model(trained, tmp_path):
    data, run = trained
    out = tmp_path / "bench"
    assert main(["bench", "--model", str(run / "model"), "--data", str(data), "--split", "random",
                 "--metrics", "mae,mse,decomp", "--out", str(out), "--no-figures", "--no-progress"]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    rows = {r["model"]: r for r in board["rows"]}
    assert set(rows) == {"persistence", "frame0", "model"}
    assert rows["model"]["mae"] is not None and rows["model"]["n_samples"] == rows["persistence"]["n_samples"]


@pytest.mark.parametrize("case, match", [
    ("missing", "not found"),
    ("nan", "NaN"),
    ("grid", "outside the measured range"),
    ("rows", "T=8 frames"),
    ("component", "unknown component 'XYZ'.*EC"),
    ("electrode", "unknown electrode 'Pt'.*graphite"),
    ("model", "model directory not found"),
])
def test_predict_bad_input_is_a_clear_error_and_writes_nothing(trained, tmp_path, capsys, case, match):
    static, voltage, comp, elec = STATIC, VOLTAGE, COMPOSITION, "LTO"
    lines = STATIC.read_text().splitlines()
    if case == "missing":
        static = tmp_path / "nope.csv"
    elif case == "nan":
        static = tmp_path / "nan.csv"
        static.write_text("\n".join(lines[:10] + [lines[10].split(",")[0] + ",nan"] + lines[11:]) + "\n")
    elif case == "grid":  # covers 1000-1500 cm^-1 only; the model's grid is 700-1900
        static = tmp_path / "narrow.csv"
        static.write_text("\n".join([lines[0]] + [l for l in lines[1:] if 1000 <= float(l.split(",")[0]) <= 1500]))
    elif case == "rows":
        voltage = tmp_path / "v.csv"
        voltage.write_text("\n".join(VOLTAGE.read_text().splitlines()[:5]) + "\n")
    elif case == "component":
        comp = "EC=0.5,XYZ=0.5"
    elif case == "electrode":
        elec = "Pt"
    out = tmp_path / "out"
    if case == "model":
        rc = main(["predict", "--model", str(tmp_path / "no_model"), "--static", str(static), "--voltage",
                   str(voltage), "--composition", comp, "--electrode", elec, "--out", str(out)])
    else:
        rc = _predict(trained, out, static=static, voltage=voltage, composition=comp, electrode=elec)
    assert rc == 2
    err = capsys.readouterr().err
    assert "abcc predict: error:" in err
    import re
    assert re.search(match, err), err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary left behind


def test_train_bad_input(trained, tmp_path, capsys):
    data, run = trained
    assert main(["train", "--data", str(tmp_path / "missing"), "--preset", "tiny", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert "dataset directory not found" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--split", "nosuch", "--preset", "tiny", "--out",
                 str(tmp_path / "r2"), "--no-progress"]) == 2
    assert "nosuch" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    ck = broken / "checkpoints" / (broken / "checkpoints" / "LATEST").read_text().strip()
    (ck / "model.safetensors").write_bytes(b"\x01\x02 not safetensors")
    assert main(["train", "--data", str(data), "--preset", "tiny", "--steps", "6", "--out", str(broken),
                 "--resume", "--no-progress"]) == 2
    assert "model.safetensors is corrupt" in capsys.readouterr().err
    # a corrupt model directory is a clear error for predict too
    (broken / "model" / "model.safetensors").write_bytes(b"junk")
    assert main(["predict", "--model", str(broken / "model"), "--static", str(STATIC), "--voltage", str(VOLTAGE),
                 "--composition", COMPOSITION, "--electrode", "LTO", "--out", str(tmp_path / "p")]) == 2
    assert "model.safetensors is corrupt" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
