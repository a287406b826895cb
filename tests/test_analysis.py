"""abcc_fast.analysis: NNLS product amounts, onsets, order, streams estimate, CLI, chemometrics."""
import json
import math

import numpy as np
import pytest
import torch

from abcc_fast.analysis import (analyze, check_products, estimate_streams, fit_amounts, formation_order, onsets,
                                product_templates, reachable_products)
from abcc_fast.analysis import chemometrics
from abcc_fast.analysis.evaluation import compare_onsets, evaluate, true_amounts
from abcc_fast.cli import main
from abcc_fast.data import chemistry as chem

WN = np.linspace(700.0, 1900.0, 256)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    import abcc_fast.data as data

    path = tmp_path_factory.mktemp("analysis") / "ds"
    data.generate(path, n_samples=20, T=8, W=64, seed=3, progress=False)
    return path


# ---------------------------------------------------------------------------------------------
# NNLS on the product templates
# ---------------------------------------------------------------------------------------------
def _mixture(tpl, amounts, rng):
    """Spectra [N, W] of known per-product amounts [N, P], each split over two random aging states."""
    J = tpl.n_states
    N, P = amounts.shape
    coef = np.zeros((N, P * J))
    for i in range(N):
        for p in range(P):
            j = rng.integers(0, J - 1)
            w = rng.random()
            coef[i, p * J + j] = amounts[i, p] * (1 - w)
            coef[i, p * J + j + 1] = amounts[i, p] * w
    return coef @ tpl.matrix


def test_nnls_recovers_known_amounts_exactly_without_noise():
    tpl = product_templates(WN, ["Li2CO3", "LEDC", "LMC", "polyVC", "ROLi"])
    rng = np.random.default_rng(0)
    amounts = rng.uniform(0.0, 0.1, (12, 5)) * (rng.random((12, 5)) > 0.3)
    out = fit_amounts(_mixture(tpl, amounts, rng), tpl)
    np.testing.assert_allclose(out["amounts"], amounts, atol=1e-7)
    assert out["residual_rms"].max() < 1e-8


def test_nnls_error_is_bounded_with_noise():
    tpl = product_templates(WN, ["Li2CO3", "LEDC", "polyVC", "SOx"])
    rng = np.random.default_rng(1)
    amounts = rng.uniform(0.02, 0.1, (20, 4))
    sigma = 1e-4                                                    # AU, a good MCT ATR
    noisy = _mixture(tpl, amounts, rng) + sigma * rng.standard_normal((20, WN.size))
    err = np.abs(fit_amounts(noisy, tpl)["amounts"] - amounts)
    # a band of ~0.05 AU per mol/L over tens of points: amount noise ~ 1e-4 / 0.05 / sqrt(30) ~ 4e-4 mol/L
    assert err.max() < 5e-3 and err.mean() < 1.5e-3
    # and it is a real bound: 30x the noise breaks it
    worse = _mixture(tpl, amounts, rng) + 30 * sigma * rng.standard_normal((20, WN.size))
    assert np.abs(fit_amounts(worse, tpl)["amounts"] - amounts).mean() > 1.5e-3


def test_products_and_templates_validation():
    assert reachable_products(["EC", "DMC", "LiPF6"]) == ["Li2CO3", "LEDC", "LMC", "ROLi", "LixPOyFz"]
    assert "LEC" in reachable_products(["EMC", "LiPF6"])           # via transesterification -> DEC
    with pytest.raises(ValueError, match="unknown SEI product.*LEDX.*known film products"):
        check_products(["LEDC", "LEDX"])
    with pytest.raises(ValueError, match="soluble"):
        check_products(["DMDOHC"])
    with pytest.raises(ValueError, match="no band on this grid"):
        product_templates(np.linspace(2400.0, 3100.0, 64), ["Li2CO3"])


# ---------------------------------------------------------------------------------------------
# onsets and order
# ---------------------------------------------------------------------------------------------
def test_onset_of_a_sigmoid_growth_curve():
    V = np.linspace(3.0, 0.0, 301)                                    # linear sweep, 10 mV per frame
    early = 1.0 / (1.0 + np.exp((V - 1.3) / 0.03))                     # e.g. VC reduction
    late = 0.5 / (1.0 + np.exp((V - 0.8) / 0.02))                      # e.g. EC -> LEDC
    tiny = 1e-5 * early
    res = onsets(np.stack([late, early, tiny], 1), V, products=["LEDC", "polyVC", "LMC"], detect_au=1e-3)
    # n / n_max = 0.1  <=>  V = E0 + w ln 9
    assert res[0]["onset_voltage"] == pytest.approx(0.8 + 0.02 * math.log(9), abs=2e-3)
    assert res[1]["onset_voltage"] == pytest.approx(1.3 + 0.03 * math.log(9), abs=2e-3)
    assert not res[2]["detected"] and res[2]["onset_voltage"] is None
    assert formation_order(res) == [["polyVC"], ["LEDC"]]
    half = onsets(late[:, None], V, fraction=0.5)[0]
    assert half["onset_voltage"] == pytest.approx(0.8, abs=2e-3)
    # noise-based threshold: the same curve is not "formed" when the fit noise is larger than it
    assert not onsets(late[:, None] * 1e-3, V, noise_au=1e-3)[0]["detected"]
    with pytest.raises(ValueError, match="fraction"):
        onsets(late[:, None], V, fraction=1.5)


def test_onset_comparison_counts_order_and_misses():
    mk = lambda p, f, det=True: {"product": p, "detected": det, "onset_frame": f if det else None,  # noqa: E731
                                 "onset_voltage": 3.0 - 0.1 * f if det else None}
    truth = [mk("polyVC", 1.0), mk("LEDC", 5.0), mk("LMC", 5.3)]
    good = compare_onsets([mk("polyVC", 1.2), mk("LEDC", 4.0), mk("LMC", 6.0)], truth)
    assert good["pairs"] == 2 and good["pairs_correct"] == 2 and good["within_tol"] == 2   # LMC-LEDC: a tie
    bad = compare_onsets([mk("polyVC", 6.0), mk("LEDC", 4.0), mk("LMC", 0, det=False)], truth)
    assert bad["pairs_correct"] == 0 and bad["detected"] == 2 and bad["false"] == 0


def test_order_on_a_simulated_vc_system():
    """System 6 (LP30 + VC | graphite): poly(VC) from VC reduction (~1.3 V) forms before EC-derived LEDC
    (~0.8 V); from the truth streams and from the frames alone."""
    from abcc_fast.data.simulator import OpIRSim, SimConfig

    sim = OpIRSim(SimConfig(T=24, W=256, systems=[6]))
    out = sim.simulate(np.arange(4), seed=2, overrides={"protocol": "galvanostatic", "c_rate": 0.1,
                                                         "vc_wt": 0.5, "rate_scale": 2.0},
                       return_extras=True)
    comps = ["EC", "DMC", "VC", "LiPF6"]
    checked = {True: 0, False: 0}
    for s in range(4):
        truth_n = out["n_film"][s]
        for streams in (True, False):
            res = analyze(out["frames"][s], out["voltage"][s], sim.wavenumber, time_s=out["time_s"][s],
                          solvent=out["solvent"][s] if streams else None, sei=out["sei"][s] if streams else None,
                          components=comps)
            vc, ledc = res.onset("polyVC"), res.onset("LEDC")
            if not (vc["detected"] and ledc["detected"]):
                continue
            assert vc["onset_frame"] < ledc["onset_frame"] and vc["onset_voltage"] > ledc["onset_voltage"]
            checked[streams] += 1
        # the fitted amounts of the truth stream are the simulator's film amounts
        res = analyze(out["frames"][s], out["voltage"][s], sim.wavenumber, solvent=out["solvent"][s],
                      sei=out["sei"][s], components=comps)
        idx = [chem.FILM_SPECIES.index(p) for p in res.products]
        np.testing.assert_allclose(res.amounts, truth_n[:, idx], atol=1e-6)
    assert checked[True] >= 2 and checked[False] >= 2       # samples where VC leaves room for LEDC


def test_frames_only_estimate_beats_no_decomposition():
    from abcc_fast.data.simulator import OpIRSim, SimConfig

    sim = OpIRSim(SimConfig(T=12, W=256, systems=[1, 5, 6]))
    out = sim.simulate(np.arange(6), seed=0)
    for s in range(6):
        comps = [n for n, c in zip(chem.COMPONENT_NAMES, out["composition"][s]) if c > 0]
        tpl = product_templates(sim.wavenumber, reachable_products(comps))
        est = estimate_streams(out["frames"][s], sim.wavenumber, tpl, comps)
        err = np.abs(est["sei"][1:] - out["sei"][s, 1:]).mean()
        scale = np.abs(out["sei"][s, 1:]).mean()
        assert err < 0.5 * scale, (s, err, scale)
        assert np.all(est["sei"][0] == 0)


def test_batched_input_and_centroids_reuse_opirbench(small_dataset):
    import abcc_fast.data as data
    from abcc_fast.opirbench.metrics import band_centroids

    ds = data.load(small_dataset)
    res = analyze(ds.frames[:3], ds.voltage[:3], ds.wavenumber, time_s=ds.time_s[:3], solvent=ds.solvent[:3],
                  sei=ds.sei[:3], products=["LEDC", "Li2CO3"])
    assert isinstance(res, list) and len(res) == 3 and res[0].amounts.shape == (ds.T, 2)
    ref = band_centroids(ds.frames[1], ds.wavenumber, chem.MARKER_WINDOWS).numpy()
    np.testing.assert_allclose(res[1].centroids["centroid"], ref)
    np.testing.assert_allclose(res[1].centroids["drift"][0], 0.0)


# ---------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------
def test_cli_dataset_sample_and_prediction_dir(small_dataset, tmp_path, capsys):
    import abcc_fast.data as data
    from safetensors.torch import save_file

    out = tmp_path / "a1"
    assert main(["analyze", "--data", str(small_dataset), "--sample", "5", "--out", str(out)]) == 0
    rep = json.loads((out / "analysis.json").read_text())
    assert rep["source"] == "streams" and rep["input"]["sample"] == 5
    for f in ("growth_curves.png", "centroid_drift.png", "decomposition.png"):
        assert (out / "figures" / f).stat().st_size > 1000
    assert "## Formation order" in (out / "analysis.md").read_text()
    # truth streams: the analysis reproduces the true onsets exactly (same definition on true amounts)
    truth = {o["product"]: o for o in rep["truth"]["onsets"]}
    for o in rep["onsets"]:
        assert o["detected"] == truth[o["product"]]["detected"]
        if o["detected"]:
            assert o["onset_voltage"] == pytest.approx(truth[o["product"]]["onset_voltage"], abs=1e-4)

    # the same sample written as an `abcc predict` directory (with streams) gives the same analysis
    ds = data.load(small_dataset)
    x = ds[5]
    pred = tmp_path / "pred"
    pred.mkdir()
    save_file({k: x[k].contiguous() for k in ("frames", "wavenumber", "voltage", "time_s", "solvent", "sei")},
              str(pred / "frames.safetensors"))
    comp = {n: float(c) for n, c in zip(ds.manifest["components"], x["composition"]) if c > 0}
    (pred / "prediction.json").write_text(json.dumps({"composition": comp, "electrode": "graphite"}))
    out2 = tmp_path / "a2"
    assert main(["analyze", str(pred), "--out", str(out2), "--no-figures"]) == 0
    rep2 = json.loads((out2 / "analysis.json").read_text())
    assert rep2["order"] == rep["order"] and rep2["products"] == rep["products"]
    assert main(["analyze", str(pred), "--source", "frames", "--out", str(tmp_path / "a3"), "--no-figures"]) == 0
    assert json.loads((tmp_path / "a3" / "analysis.json").read_text())["source"] == "frames (template fit)"


def test_cli_bad_input_says_what_and_how(small_dataset, tmp_path, capsys):
    from safetensors.torch import save_file

    def fails(argv, *needles):
        out = tmp_path / "never"
        assert main(argv + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        for n in needles:
            assert n in err, err
        assert not out.exists()

    fails(["analyze", str(tmp_path / "missing")], "not found", "abcc predict")
    fails(["analyze", "--data", str(small_dataset), "--sample", "99"], "out of range", "0..19")
    fails(["analyze", "--data", str(small_dataset)], "--sample")
    fails(["analyze", "--data", str(small_dataset), "--sample", "1", "--products", "LEDC,Unobtainium"],
          "Unobtainium", "known film products")
    fails(["analyze"], "nothing to analyse")
    bad = tmp_path / "bad"
    bad.mkdir()
    wn = torch.linspace(700, 1900, 64)
    frames = torch.rand(6, 64)
    frames[2, 7] = float("nan")
    save_file({"frames": frames, "wavenumber": wn, "voltage": torch.linspace(3, 0, 6)}, str(bad / "frames.safetensors"))
    fails(["analyze", str(bad)], "NaN", "frames")
    save_file({"frames": torch.rand(6, 60), "wavenumber": wn, "voltage": torch.linspace(3, 0, 6)},
              str(bad / "frames.safetensors"))
    fails(["analyze", str(bad)], "60 wavenumber points", "64")
    save_file({"frames": torch.rand(6, 64), "wavenumber": wn.flip(0), "voltage": torch.linspace(3, 0, 6)},
              str(bad / "frames.safetensors"))
    fails(["analyze", str(bad)], "ascending")
    fails(["analyze", "--evaluate", "--methods", "pca:frames:2", "--data", str(small_dataset)], "method:mode:k")


# ---------------------------------------------------------------------------------------------
# chemometrics and the evaluation
# ---------------------------------------------------------------------------------------------
def test_mcr_and_nmf_separate_a_two_component_mixture():
    """D = c_solvent S_solvent + c_sei S_sei with non-negative, distinct spectra: both factorisations
    find the SEI component (oracle assignment) to a few % of its scale."""
    solvent = 0.5 * np.exp(-((WN - 1780) / 15) ** 2) + 0.3 * np.exp(-((WN - 1160) / 20) ** 2)
    sei = 0.01 * np.exp(-((WN - 1650) / 40) ** 2) + 0.006 * np.exp(-((WN - 1420) / 50) ** 2)
    T = 16
    grow = 1 / (1 + np.exp(-(np.arange(T) - 6.0)))
    grow -= grow[0]
    D = (1 - 0.1 * grow)[:, None] * solvent + grow[:, None] * sei
    true_sei = grow[:, None] * sei
    for method in ("mcr_als", "nmf"):
        dec = chemometrics.decompose(D, method, 2, "frames")
        split = chemometrics.split_sei(dec["parts"], dec["total"], true_sei)
        assert split["mae_sei"] < 0.05 * np.abs(true_sei[1:]).mean(), method
        np.testing.assert_allclose(split["sei"] + split["solvent"], dec["total"], atol=1e-12)
    with pytest.raises(ValueError, match="unknown decomposition"):
        chemometrics.decompose(D, "pca", 2)


def test_evaluate_on_a_tiny_dataset_with_a_tiny_model(small_dataset, tmp_path):
    import abcc_fast.data as data
    from abcc_fast.model import ABCC, ABCCConfig

    ds = data.load(small_dataset)
    n_true = true_amounts(ds.extent, ds.manifest)
    assert n_true.shape == (len(ds), ds.T, len(chem.FILM_SPECIES)) and (n_true >= -1e-9).all()
    model = ABCC(ABCCConfig.from_dataset(ds, "random", preset="tiny"))     # untrained: checks the path only
    model_dir = model.save_pretrained(tmp_path / "model")
    from abcc_fast.train import StreamsPredictor      # what `abcc analyze --evaluate --model DIR` wires in

    res = evaluate(ds, n=4, split="random", part="train", model=StreamsPredictor(model_dir),
                   chemometric_methods=[("nmf", "difference", 2), ("mcr_als", "frames", 2)], progress=False)
    rows = {r["method"]: r for r in res["rows"]}
    assert len(rows) == 7 and res["config"]["n_samples"] == 4      # the model's streams and its frames' fit
    truth = rows["truth streams + NNLS"]
    assert truth["decomp_sei"] < 1e-6
    if truth["products_formed"]:
        assert truth["recall"] == 1.0 and truth["onset_mae_V"] < 1e-6 and truth["false_products"] == 0
    model_row = [r for k, r in rows.items() if k.startswith("model ")][0]
    assert np.isfinite(model_row["decomp"]) and model_row["decomp"] > 0
    zero = rows["no decomposition (SEI = 0)"]
    assert zero["decomp_sei"] == pytest.approx(float(ds.subset(res["config"]["sample_indices"]).sei[:, 1:].abs().mean()),
                                               rel=1e-4)
    from abcc_fast.analysis import table_markdown, write_evaluation

    paths = write_evaluation(res, tmp_path / "ev")
    assert "| truth streams + NNLS |" in paths["md"].read_text() and json.loads(paths["json"].read_text())["rows"]
    assert "MCR-ALS" in table_markdown(res)


def ds_of(path):
    import abcc_fast.data as data

    return data.load(path)


def test_evaluate_scores_the_simulator_oracle_beside_the_methods(small_dataset, tmp_path, capsys):
    """`abcc analyze --evaluate --oracle M`: the oracle's streams (it reads the global indices) get a
    row; their SEI is closer to the truth than SEI = 0; a negative M, --oracle without --evaluate and
    two models of one name are refused."""
    assert main(["analyze", "--evaluate", "--data", str(small_dataset), "--n", "3", "--split", "random",
                 "--part", "train", "--methods", "none", "--oracle", "2", "--no-progress",
                 "--out", str(tmp_path / "ev")]) == 0
    res = json.loads(next((tmp_path / "ev").glob("*.json")).read_text())
    rows = {r["method"]: r for r in res["rows"]}
    assert list(rows) == ["truth streams + NNLS", "template fit (frames)", "no decomposition (SEI = 0)",
                          "model oracle (M=2)", "model oracle (M=2), template fit of its frames"]
    assert rows["model oracle (M=2)"]["decomp_sei"] < rows["no decomposition (SEI = 0)"]["decomp_sei"]
    assert res["config"]["model"] == "oracle (M=2)"
    capsys.readouterr()
    assert main(["analyze", "--evaluate", "--data", str(small_dataset), "--oracle", "-1",
                 "--out", str(tmp_path / "ev2")]) != 0
    assert "--oracle takes the number of replicates" in capsys.readouterr().err
    assert main(["analyze", "--data", str(small_dataset), "--sample", "0", "--oracle", "4",
                 "--out", str(tmp_path / "ev3")]) != 0
    assert "--oracle scores streams against synthetic truth: it needs --evaluate" in capsys.readouterr().err
    with pytest.raises(ValueError, match="two models share a name"):
        evaluate(ds_of(small_dataset), n=2, split="random", part="train", model=[lambda b: b, lambda b: b],
                 chemometric_methods=[], progress=False)


def test_a_model_returning_the_true_frames_gets_the_frames_template_fit_row(small_dataset):
    """The row "<model>, template fit of its frames" runs the frames template fit on the model's
    predicted frames: a predictor that returns the measured frames scores exactly like the
    "template fit (frames)" row; one without frames gets no such row."""
    ds = ds_of(small_dataset)

    class TrueFrames:
        name, needs_index = "true frames", True

        def __call__(self, batch):
            i = batch["index"]
            return {"frames": ds.frames[i], "solvent": ds.solvent[i], "sei": ds.sei[i]}

    res = evaluate(ds, n=4, split="random", part="train", model=[TrueFrames(), _StreamsOnly()],
                   chemometric_methods=[], progress=False)
    rows = {r["method"]: r for r in res["rows"]}
    fit, ref = rows["model true frames, template fit of its frames"], rows["template fit (frames)"]
    for key in ("decomp", "onset_within_tol", "recall", "false_products", "order_pairs"):
        assert fit[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9) or (np.isnan(fit[key]) and np.isnan(ref[key]))
    assert "model streams only" in rows and "model streams only, template fit of its frames" not in rows


class _StreamsOnly:
    name, needs_index = "streams only", False

    def __call__(self, batch):
        z = torch.zeros_like(batch["static"])[:, None].expand(-1, batch["voltage"].shape[1], -1)
        return {"solvent": z, "sei": z}


def test_evaluate_refuses_a_model_of_another_grid(small_dataset, tmp_path):
    """A saved model scores only the grid and frames it was trained on: StreamsPredictor says so."""
    import abcc_fast.data as data
    from abcc_fast.model import ABCC, ABCCConfig
    from abcc_fast.train import StreamsPredictor

    ds = data.load(small_dataset)
    other = data.load(data.generate(tmp_path / "wide", n_samples=12, T=8, W=48, seed=1, progress=False))
    model_dir = ABCC(ABCCConfig.from_dataset(other, "random", preset="tiny")).save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="48-point grid.*the dataset has 64 points.*evaluate it on its own dataset"):
        evaluate(ds, n=2, split="random", part="train", model=StreamsPredictor(model_dir), chemometric_methods=[],
                 progress=False)
