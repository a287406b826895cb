"""Calibrated uncertainty (abcc_fast.uncertainty): split-conformal scale calibration.

- synthetic heteroscedastic Gaussian errors with a spread that is wrong by a factor 3 and grows over
  frames: calibrated coverage of fresh data is nominal within a stated tolerance, raw is not;
- a tiny ABCC trained on a small generated dataset: calibrate on val, coverage on test end to end,
  in-sample conformal guarantee on val, JSON round trip;
- `abcc calibrate` and `abcc predict --samples` write the report, calibration.json and band files;
- bad input (samples < 2, missing/corrupt calibration, NaN, other weights, other noise): clear errors.
"""
from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from abcc_fast import uncertainty as unc
from abcc_fast.cli import main
from abcc_fast.uncertainty import Calibration, fit_calibration, interval_coverage

FIX = Path(__file__).parent / "fixtures"
STATIC, VOLTAGE = FIX / "predict_static.csv", FIX / "predict_voltage.csv"
COMPOSITION = "EC=0.53,DMC=0.38,VC=0.01,LiPF6=0.08"


# --------------------------------------------------------------------------------------------
# synthetic problem with known Gaussian errors
# --------------------------------------------------------------------------------------------
def _gaussian_problem(N, seed, T=6, W=48, spread_factor=0.3):
    """y = m + sigma * eps (eps ~ N(0,1)), sigma varying per cell and growing 4x over frames; the
    'model' spread is spread_factor * sigma (a wrong scale, like ABCC's input-sensitivity spread)."""
    g = torch.Generator().manual_seed(seed)
    sigma = (0.002 + 0.01 * torch.rand(N, T, W, generator=g)) * torch.linspace(0.5, 2.0, T)[None, :, None]
    center = torch.randn(N, T, W, generator=g)
    target = center + sigma * torch.randn(N, T, W, generator=g)
    return target, center, spread_factor * sigma


@pytest.mark.parametrize("per_frame", [True, False])
def test_calibration_reaches_nominal_coverage_on_fresh_gaussian_data(per_frame):
    cal = fit_calibration(*_gaussian_problem(300, seed=0), samples=8, noise=0.002, per_frame=per_frame)
    target, center, spread = _gaussian_problem(500, seed=1)
    for a in unc.LEVELS:
        lo, hi = cal.interval(center, spread, a)
        cov = float(interval_coverage(target, lo, hi).mean())
        # 500 x 5 x 48 cells, independent: binomial s.e. <= 0.0033; the conformal correction adds <= 0.003
        assert abs(cov - a) < 0.015, (a, cov)
    # the known answer: a scaled residual |eps| / 0.3 (floor aside) -> factor ~ z_a / 0.3 for the pooled case
    # (the floor enlarges the scale a little, so the factor is at most that)
    z90 = statistics.NormalDist().inv_cdf(0.95)
    assert 0.7 * z90 / 0.3 < cal.factors[cal.level_index(0.9)][3] < 1.05 * z90 / 0.3
    # the raw m +- z std band (spread too small by 3x) covers far less than nominal
    raw = float(interval_coverage(target, center - z90 * spread, center + z90 * spread).mean())
    assert raw < 0.5


def test_calibrated_factors_are_nested_and_in_sample_guarantee_holds():
    target, center, spread = _gaussian_problem(40, seed=2)
    cal = fit_calibration(target, center, spread, samples=4, noise=0.01)
    for t in range(cal.T):
        col = [row[t] for row in cal.factors]
        assert col == sorted(col)
    for a in unc.LEVELS:  # on its own calibration data coverage is >= nominal (the order-statistic choice)
        lo, hi = cal.interval(center, spread, a)
        assert float(interval_coverage(target, lo, hi).mean()) >= a - 1e-6


def test_calibration_json_round_trip(tmp_path):
    cal = fit_calibration(*_gaussian_problem(10, seed=3), samples=8, noise=0.002, split="random", part="val")
    path = cal.save(tmp_path)
    assert path == tmp_path / unc.CALIBRATION_FILE
    back = Calibration.load(tmp_path)
    assert back == cal
    assert json.loads(path.read_text())["method"] == unc.METHOD
    assert unc.load_calibration(tmp_path / "nowhere") is None


def test_bad_input_is_a_clear_error(tmp_path):
    target, center, spread = _gaussian_problem(10, seed=4)
    with pytest.raises(ValueError, match="samples >= 2"):
        fit_calibration(target, center, spread, samples=1, noise=0.002)
    with pytest.raises(ValueError, match="noise must be a positive"):
        fit_calibration(target, center, spread, samples=8, noise=float("nan"))
    bad = target.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf"):
        fit_calibration(bad, center, spread, samples=8, noise=0.002)
    with pytest.raises(ValueError, match=r"\[N, T, W\]"):
        fit_calibration(target[0], center[0], spread[0], samples=8, noise=0.002)
    with pytest.raises(FileNotFoundError, match="abcc calibrate"):
        Calibration.load(tmp_path)
    (tmp_path / unc.CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        unc.load_calibration(tmp_path)
    d = fit_calibration(target, center, spread, samples=8, noise=0.002).to_dict()
    d["factors"][0][0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        Calibration.from_dict(d)
    cal = Calibration.from_dict({**d, "factors": [[1.0] * d["T"]] * len(d["levels"])})
    with pytest.raises(ValueError, match="T=6"):
        cal.half_width(torch.ones(3, 5, 8), 0.5)
    with pytest.raises(ValueError, match="not fitted"):
        cal.level_index(0.95)
    with pytest.raises(ValueError, match="--noise 0.002"):
        unc.calibrated_bands(cal, center[0], spread[0], samples=8, noise=0.005)


class _NaNModel(torch.nn.Module):
    """A stand-in whose stochastic mode returns a NaN spread."""

    def predict(self, static, voltage, composition, electrode, *, samples=0, noise=0.0, wavenumber=None,
                time_s=None, generator=None):
        B, T = voltage.shape
        frames = static[:, None].expand(B, T, -1).clone()
        std = torch.full_like(frames, float("nan"))
        return {"frames": frames, "std": std, "samples": frames[None].expand(samples, -1, -1, -1)}


# --------------------------------------------------------------------------------------------
# a tiny trained ABCC, end to end
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from abcc_fast import ABCC, ABCCConfig
    from abcc_fast.data import generate, load
    from abcc_fast.train import TrainConfig, train

    root = tmp_path_factory.mktemp("unc")
    data = generate(root / "data", n_samples=120, T=8, W=64, seed=0, progress=False)
    ds = load(data)
    torch.manual_seed(0)
    model = ABCC(ABCCConfig.from_dataset(ds, "random", preset="tiny"))
    result = train(model, ds, split="random", config=TrainConfig.tiny(steps=20), out_dir=root / "run",
                   progress=False)
    from abcc_fast.train.predict import load_model

    model, _ = load_model(result.model_dir)
    return ds, data, Path(result.model_dir), model


def test_calibrate_and_coverage_end_to_end(trained, tmp_path):
    ds, _, model_dir, model = trained
    cal = unc.calibrate(model, ds, "random", "val", samples=4, noise=0.002, max_samples=None, batch_size=5,
                        model_dir=model_dir)
    n_val = len(ds.split("random", "val"))
    assert cal.n_samples == n_val and cal.T == 8 and cal.samples == 4
    assert cal.model_sha256 == unc.weights_sha256(model_dir)
    # in-sample: the same val samples and the same noise draws -> coverage >= nominal (conformal order statistic)
    own = unc.coverage(model, ds, "random", "val", calibration=cal, max_samples=None, batch_size=5, seed=0)
    for a, c in zip(own["levels"], own["calibrated"]["coverage"]):
        assert c >= a - 2e-3, (a, c)
    rep = unc.coverage(model, ds, "random", "test", calibration=cal, max_samples=None, batch_size=7)
    assert rep["n_samples"] == len(ds.split("random", "test")) and rep["n_cells"] == rep["n_samples"] * 7 * 64
    for key in ("calibrated", "raw_quantile", "raw_gaussian"):
        cov = rep[key]["coverage"]
        assert len(cov) == len(unc.LEVELS) and all(0.0 <= c <= 1.0 for c in cov)
        assert all(w >= 0 for w in rep[key]["mean_width_au"])
    cov = rep["calibrated"]["coverage"]
    assert cov == sorted(cov)                      # nested bands
    assert 0.6 < cov[unc.LEVELS.index(0.9)] <= 1.0  # 12 calibration samples: loose, but not raw-like
    assert len(rep["calibrated"]["per_frame"]["0.9"]) == 8
    # the report: markdown, JSON round trip, figure
    paths = unc.write_report(rep, tmp_path / "rep", calibration=cal)
    back = json.loads(paths["coverage.json"].read_text())
    assert back["calibrated"]["coverage"] == pytest.approx(cov)
    assert Calibration.from_dict(back["calibration_full"]) == cal
    assert "| 0.9 |" in paths["coverage.md"].read_text()
    assert paths["reliability.png"].stat().st_size > 1000


def test_model_bad_input(trained):
    ds, _, _, model = trained
    with pytest.raises(ValueError, match="samples >= 2"):
        unc.calibrate(model, ds, "random", samples=1, noise=0.002)
    with pytest.raises(ValueError, match="must be a Calibration"):
        unc.coverage(model, ds, "random", calibration=None)
    with pytest.raises(ValueError, match="NaN/Inf"):
        unc.calibrate(_NaNModel(), ds, "random", samples=4, noise=0.002, max_samples=4)


# --------------------------------------------------------------------------------------------
# the CLI: abcc calibrate, abcc predict --samples
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibrated_dir(trained, tmp_path_factory):
    """A copy of the trained model directory, calibrated by `abcc calibrate`, and its report dir."""
    _, data, model_dir, _ = trained
    root = tmp_path_factory.mktemp("unc_cli")
    mdir = root / "model"
    shutil.copytree(model_dir, mdir)
    rep = root / "report"
    rc = main(["calibrate", "--model", str(mdir), "--data", str(data), "--samples", "4", "--max-samples", "0",
               "--out", str(rep), "--no-progress"])
    assert rc == 0
    return mdir, rep


def _predict(mdir, out, *extra):
    return main(["predict", "--model", str(mdir), "--static", str(STATIC), "--voltage", str(VOLTAGE),
                 "--composition", COMPOSITION, "--electrode", "LTO", "--out", str(out), *extra])


def test_cli_calibrate_writes_calibration_and_report(calibrated_dir):
    mdir, rep = calibrated_dir
    cal = Calibration.load(mdir)
    assert cal.samples == 4 and cal.noise == 0.002 and cal.part == "val"
    for f in ("coverage.md", "coverage.json", "reliability.png"):
        assert (rep / f).is_file(), f
    assert json.loads((rep / "coverage.json").read_text())["part"] == "test"


def test_cli_predict_writes_calibrated_bands(calibrated_dir, tmp_path):
    mdir, _ = calibrated_dir
    out = tmp_path / "pred"
    assert _predict(mdir, out, "--samples", "4") == 0
    t = load_file(str(out / "frames.safetensors"))
    for k in ("lower_50", "upper_50", "lower_90", "upper_90", "std"):
        assert t[k].shape == (8, 64), k
    assert bool((t["lower_90"] <= t["lower_50"]).all() and (t["lower_50"] <= t["frames"]).all())
    assert bool((t["frames"] <= t["upper_50"]).all() and (t["upper_50"] <= t["upper_90"]).all())
    assert bool((t["upper_90"] > t["lower_90"]).all())
    for level in (50, 90):
        for side in ("lower", "upper"):
            with open(out / f"band_{level}_{side}.csv", newline="") as fh:
                rows = list(csv.reader(fh))
            assert rows[0] == ["wavenumber"] + [f"frame_{k}" for k in range(8)] and len(rows) == 65
            assert float(rows[5][3]) == pytest.approx(float(t[f"{side}_{level}"][2, 4]), rel=1e-5, abs=1e-7)
    assert (out / "figures" / "calibrated_bands.png").is_file()
    meta = json.loads((out / "prediction.json").read_text())
    assert meta["calibrated"] is True and meta["noise"] == 0.002 and meta["calibration"]["fitted_samples"] == 4
    # without --samples: no bands, nothing else changes
    out0 = tmp_path / "pred0"
    assert _predict(mdir, out0) == 0
    assert not (out0 / "band_50_lower.csv").exists()


def test_cli_predict_without_calibration_writes_no_bands(trained, tmp_path):
    _, _, model_dir, _ = trained
    if (model_dir / unc.CALIBRATION_FILE).exists():
        pytest.skip("the shared model dir was calibrated by another test")
    out = tmp_path / "pred"
    assert _predict(model_dir, out, "--samples", "3") == 0
    assert not (out / "band_90_upper.csv").exists()
    assert json.loads((out / "prediction.json").read_text())["calibrated"] is False


def test_cli_bad_input_is_a_clear_error_and_writes_nothing(calibrated_dir, tmp_path, capsys):
    mdir, _ = calibrated_dir
    out = tmp_path / "pred"
    assert _predict(mdir, out, "--samples", "1") == 2
    assert "need a spread of at least 2 samples" in capsys.readouterr().err
    assert _predict(mdir, out, "--samples", "4", "--noise", "0.01") == 2
    assert "--noise 0.002" in capsys.readouterr().err
    assert not out.exists()
    # a calibration fitted for other weights
    other = tmp_path / "other"
    shutil.copytree(mdir, other)
    d = json.loads((other / unc.CALIBRATION_FILE).read_text())
    d["model_sha256"] = "0" * 64
    (other / unc.CALIBRATION_FILE).write_text(json.dumps(d))
    assert _predict(other, out, "--samples", "4") == 2
    assert "other weights" in capsys.readouterr().err
    assert not out.exists()
    # abcc calibrate with too few samples stops before any work
    assert main(["calibrate", "--model", str(mdir), "--samples", "1", "--out", str(tmp_path / "r")]) == 2
    assert "samples >= 2" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
