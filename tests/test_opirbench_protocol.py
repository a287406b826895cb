"""OpIRBench protocol: evaluate, references, errors, model loading, leaderboard files, `abcc bench`."""
import csv
import hashlib
import json

import numpy as np
import pytest
import torch

from abcc_fast.data import write_dataset
from abcc_fast.opirbench import (ALL_METRICS, METRICS_VERSION, Frame0, NoModelLoader, Persistence, evaluate,
                                 load_predictor, register_model_loader, write_leaderboard)
from abcc_fast.opirbench import protocol
from abcc_fast.opirbench.toy import toy_dataset

FAST = ("mae", "mse", "mae_au", "peak_shift", "decomp")


@pytest.fixture(scope="module")
def ds():
    return toy_dataset(60, T=8, W=128, n_systems=10, seed=3)


@pytest.fixture(scope="module")
def ds_dir(ds, tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "toy", ds.to_tensors(), ds.manifest)


class Oracle:
    """Returns the true frames and streams (looked up by the sample's static spectrum)."""

    name = "oracle"

    def __init__(self, ds, noise=0.0):
        self.ds, self.noise = ds, noise

    def __call__(self, batch):
        assert "frames" not in batch and "frame0" not in batch  # no leak of the truth
        rows = [int(torch.nonzero((self.ds.static == s).all(1))[0]) for s in batch["static"]]
        out = {k: getattr(self.ds, k)[rows].clone() for k in ("frames", "solvent", "sei")}
        if self.noise:
            out["frames"] += self.noise
        return out


def test_oracle_scores_zero_and_references_positive(ds):
    r = evaluate(Oracle(ds), ds, "random", progress=False)
    assert r.n_samples == len(ds.split("random", "test"))
    for k in ("mae", "mse", "mae_au", "peak_shift", "decomp"):
        assert r.metrics[k] == 0.0
    for ref in (Persistence(), Frame0()):
        rr = evaluate(ref, ds, "random", progress=False)
        assert rr.metrics["mae"] > 0 and rr.metrics["dilate"] > r.metrics["dilate"]
        assert set(rr.metrics) >= {"dilate_shape", "dilate_temporal", "dilate_spec_shape", "decomp_sei"}
    assert r.metrics_version == METRICS_VERSION


def test_metrics_use_training_split_stats(ds):
    mean, std = ds.norm_stats("system")
    r = evaluate(Oracle(ds, noise=0.01), ds, "system", metrics=["mae", "mae_au"], progress=False)
    assert r.metrics["mae_au"] == pytest.approx(0.01, rel=1e-3)
    assert r.metrics["mae"] == pytest.approx(0.01 / std, rel=1e-3)


def test_references_are_what_they_say(ds):
    sub = ds.split("random", "test")
    batch = {k: getattr(sub, k)[:3] for k in protocol.INPUT_FIELDS}
    batch["frame0"] = sub.frames[:3, 0]
    p = Persistence()(batch)["frames"]
    f = Frame0()(batch)["frames"]
    assert p.shape == f.shape == sub.frames[:3].shape
    assert torch.equal(p[:, 5], sub.static[:3]) and torch.equal(f[:, 5], sub.frames[:3, 0])


def test_frame0_only_given_to_predictors_that_ask(ds):
    seen = []

    def spy(batch):
        seen.append(set(batch))
        return Persistence()(batch)

    evaluate(spy, ds, "random", metrics=["mae"], progress=False)
    spy.needs_frame0 = True
    evaluate(spy, ds, "random", metrics=["mae"], progress=False)
    assert "frame0" not in seen[0] and "frame0" in seen[-1]
    assert all("frames" not in s for s in seen)


def test_batch_size_does_not_change_scores(ds):
    a = evaluate(Frame0(), ds, "random", metrics=ALL_METRICS, batch_size=1, progress=False)
    b = evaluate(Frame0(), ds, "random", metrics=ALL_METRICS, batch_size=64, progress=False)
    for k in a.metrics:
        assert a.metrics[k] == pytest.approx(b.metrics[k], rel=1e-5, abs=1e-7), k
    per = a.per_system()
    assert set(per) == set(np.unique(a.system).tolist())


def test_num_threads_is_restored(ds):
    before = torch.get_num_threads()
    r = evaluate(Persistence(), ds, "random", metrics=["mae"], progress=False, num_threads=1)
    assert torch.get_num_threads() == before and r.metrics["mae"] > 0
    with pytest.raises(ValueError, match="num_threads"):
        evaluate(Persistence(), ds, "random", metrics=["mae"], progress=False, num_threads=0)


def test_loso_reports_mean_and_std(ds):
    r = evaluate(Persistence(), ds, "loso", metrics=["mae"], progress=False)
    assert len(r.folds) == 10 and r.n_samples == len(ds)
    vals = [f.metrics["mae"] for f in r.folds]
    assert r.metrics["mae"] == pytest.approx(np.mean(vals))
    assert r.metrics["mae_std"] == pytest.approx(np.std(vals, ddof=1))


def test_inner_folds_evaluate_like_loso(ds):
    r = evaluate(Persistence(), ds, "inner", metrics=["mae"], progress=False)
    held = set(ds.manifest["splits"]["system"]["held_out_indices"])
    assert len(r.folds) == 8 and r.n_samples == int((~torch.isin(ds.system, torch.tensor(sorted(held)))).sum())
    assert r.metrics["mae"] == pytest.approx(np.mean([f.metrics["mae"] for f in r.folds]))
    with pytest.raises(ValueError, match="unknown split"):
        evaluate(Persistence(), ds, "inner2", metrics=["mae"], progress=False)


@pytest.mark.parametrize("bad, match", [
    (lambda b: {"frames": b["static"].unsqueeze(1)}, "has shape"),
    (lambda b: {"frames": Persistence()(b)["frames"] * float("nan")}, "NaN/Inf"),
    (lambda b: b["static"], "must return a dict"),
    (lambda b: {"frames": Persistence()(b)["frames"].numpy()}, "torch.Tensor"),
    (lambda b: {"frames": Persistence()(b)["frames"], "sei": b["static"]}, "'sei' has shape"),
])
def test_bad_predictions_are_rejected(ds, bad, match):
    with pytest.raises(ValueError, match=match):
        evaluate(bad, ds, "random", metrics=["mae"], progress=False)


def test_bad_names_are_rejected(ds, tmp_path):
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(Persistence(), ds, "random", metrics=["mae", "r2"], progress=False)
    with pytest.raises(ValueError, match="unknown split"):
        evaluate(Persistence(), ds, "temporal", progress=False)
    with pytest.raises(ValueError, match="part must be"):
        evaluate(Persistence(), ds, "random", "holdout", progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        load_predictor("persistance")
    path = tmp_path / "ckpt"
    path.mkdir()
    # OpIRBench loads no model itself: a path no registered loader takes says how to load it
    with pytest.raises(NoModelLoader, match=r"abcc_fast\.train\.load_predictor\(path\)"):
        load_predictor(str(path))


def test_names_and_paths_accepted(ds_dir):
    r = evaluate("frame0", str(ds_dir), "random", metrics=["mae"], progress=False)
    assert r.model == "frame0" and r.oracle_frame0 and r.metrics["mae"] > 0


def test_registered_model_loader(tmp_path):
    path = tmp_path / "mine.ckpt"
    path.write_text("x")

    @register_model_loader
    def loader(p):
        return Frame0() if p.endswith(".ckpt") else None

    try:
        assert isinstance(load_predictor(str(path)), Frame0)
        assert isinstance(load_predictor("persistence"), Persistence)
    finally:
        protocol._MODEL_LOADERS.remove(loader)


def test_leaderboard_files(ds, ds_dir, tmp_path):
    from abcc_fast.data import load

    disk = load(ds_dir)
    results = [evaluate(p, disk, "system", metrics=FAST, progress=False) for p in (Persistence(), Frame0())]
    paths = write_leaderboard(results, disk, tmp_path / "lb", "system")
    board = json.loads(paths["json"].read_text())
    assert board["dataset"]["manifest_sha256"] == hashlib.sha256((ds_dir / "manifest.json").read_bytes()).hexdigest()
    assert board["split"] == "system" and board["metrics_version"] == METRICS_VERSION
    assert board["dataset"]["seed"] == 3
    assert [r["model"] for r in board["rows"]] == ["persistence", "frame0"]
    assert all(len(r["config_hash"]) == 16 and r["wall_time_s"] >= 0 for r in board["rows"])
    rows = list(csv.DictReader(paths["csv"].open()))
    assert float(rows[1]["mae"]) == pytest.approx(results[1].metrics["mae"])
    md = paths["md"].read_text()
    assert "| persistence | reference |" in md and "| frame0 | reference |" in md
    assert not list((tmp_path / "lb").glob("*.tmp"))
    # MSE per frame: JSON (frames 1..T-1), CSV columns, Markdown table of frames 1-4 and the later groups
    T = disk.frames.shape[1]
    assert len(board["rows"][1]["mse_per_frame"]) == T - 1
    assert float(rows[1]["mse_f3"]) == pytest.approx(board["rows"][1]["mse_per_frame"][2])
    assert "### MSE per frame" in md and "| model | frame 1 | frame 2 | frame 3 | frame 4 | frame 5-7 |" in md


def test_per_frame_mse(ds):
    """The MSE of each frame k = 1..T-1 (z-units): its mean over frames is the mse column; a model wrong
    in one frame only is wrong in that frame's entry only."""
    class OffInFrame2(Oracle):
        def __call__(self, batch):
            out = super().__call__(batch)
            out["frames"][:, 2] += 0.05
            return out

    r = evaluate(OffInFrame2(ds), ds, "random", metrics=["mse"], progress=False)
    per = r.per_frame["mse"]
    T = ds.frames.shape[1]
    _, std = ds.norm_stats("random")
    assert per.shape == (T - 1,) and per.mean() == pytest.approx(r.metrics["mse"], rel=1e-6)
    assert per[1] == pytest.approx((0.05 / std) ** 2, rel=1e-4)          # frame 2
    assert np.all(np.delete(per, 1) == 0.0)
    assert evaluate(Persistence(), ds, "random", metrics=["mae"], progress=False).per_frame == {}
    loso = evaluate(Persistence(), ds, "loso", metrics=["mse"], progress=False)
    assert loso.per_frame["mse"].mean() == pytest.approx(loso.metrics["mse"], rel=1e-6)


def test_frame_groups():
    assert protocol.frame_groups(31) == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 8), (9, 16), (17, 31)]
    assert protocol.frame_groups(7) == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 7)]
    assert protocol.frame_groups(3) == [(1, 1), (2, 2), (3, 3)]
    assert protocol.group_means([1.0, 2.0, 3.0, 4.0, 5.0, 7.0]) == {"1": 1.0, "2": 2.0, "3": 3.0, "4": 4.0, "5-6": 6.0}


def test_abcc_bench_cli(ds_dir, tmp_path, capsys):
    from abcc_fast.cli import main

    out = tmp_path / "bench"
    rc = main(["bench", "--data", str(ds_dir), "--split", "random", "--out", str(out), "--no-progress",
               "--metrics", "mae,mse,peak_shift", "--threads", "1"])
    assert rc == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert [r["model"] for r in board["rows"]] == ["persistence", "frame0"]
    figs = sorted(p.name for p in (out / "figures").glob("*.png"))
    for kind in ("heatmap_true", "waterfall_true", "difference_persistence", "centroid_drift_frame0",
                 "mse_per_frame"):
        assert any(kind in f for f in figs), (kind, figs)
    assert "leaderboard" in capsys.readouterr().out
    assert main(["bench", "--data", str(ds_dir), "--model", "nonexistent_model", "--out", str(out)]) == 2
    assert main(["bench", "--data", str(ds_dir), "--metrics", "mae,bogus", "--out", str(out), "--no-figures"]) == 2
