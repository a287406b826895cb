"""The simulator oracle: hidden draws reveal nothing through the inputs, and their conditional mean
is a lower bound that beats the references and single re-simulations."""
import json

import numpy as np
import pytest
import torch

from abcc_fast.data import generate, load
from abcc_fast.data import chemistry as chem
from abcc_fast.data.draws import (CONTACT_LO, CONTACT_SPAN, CONTACT_UNIFORM, HIDDEN_DRAWS, HIDDEN_UNIFORMS, N_UNIFORM,
                                  STATIC_GAIN_MAX, STATIC_GAIN_UNIFORM, UNIFORMS, _redraw_static_gain, columns,
                                  conditional_randoms, draw_randoms, sample_parameters)
from abcc_fast.data.simulator import OpIRSim, SimConfig
from abcc_fast.opirbench import Persistence, SimulatorOracle, evaluate, training_knowledge

T, W = 8, 64


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sim") / "d", n_samples=60, T=T, W=W, seed=5, progress=False)


@pytest.fixture(scope="module")
def ds(ds_path):
    return load(ds_path)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_draw_columns_are_pinned():
    """The named draws sit where they always did: the columns are the bytes of every generated dataset
    (a moved column changes every sample), and the hidden set named in HIDDEN_DRAWS is the one the
    oracle and the recorded results used."""
    K = len(chem.REACTIONS)
    assert HIDDEN_UNIFORMS == tuple(sorted({22, 23, 24, 29, 30, 37, 39, 78, 79, 80, 81, 82, 83, 84}
                                           | set(range(40, 40 + K)) | set(range(60, 60 + K))))
    assert columns(*HIDDEN_DRAWS) == HIDDEN_UNIFORMS and (CONTACT_UNIFORM, STATIC_GAIN_UNIFORM) == (32, 85)
    single = {n: d.column for n, d in UNIFORMS.items() if d.width == 1}
    assert single == {"electrode": 0, "salt": 1, "salt_molar": 2, "vc_present": 5, "vc_amount": 6,
                      "fec_present": 7, "fec_amount": 8, "additive_amount": 9, "extra_salt_amount": 10,
                      "solvation_number": 11, "protocol": 12, "c_rate": 13, "gitt_duty": 14, "gitt_period": 15,
                      "scan_rate": 16, "x_end": 17, "v_up": 18, "eta": 19, "tau_eta": 20, "tau_x": 21,
                      "polarisation": 22, "tau_pol": 23, "rate_scale": 24, "L_max": 29, "aging": 30, "crystal": 31,
                      "contact": 32, "noise_sigma": 33, "static_noise_factor": 34, "baseline_scale": 35,
                      "electrode_term": 37, "atmosphere": 38, "reseat": 39, "gain_drift": 78, "reseat_pos": 79,
                      "tau_leave": 80, "transest_scale": 81, "crack": 82, "fresh": 83, "electrode_slope": 84,
                      "static_gain": 85}
    assert columns("solvent_jitter", "rate_jitter", "onset_jitter", "extra_components") == tuple(
        [3, 4] + list(range(40, 40 + K)) + list(range(60, 60 + K)) + list(range(86, 96)))
    # by name or by column, the same draws are redrawn
    a = conditional_randoms(0, np.arange(3), T, W, 2, hidden=("polarisation", "tau_pol"), frame_normals=False)
    b = conditional_randoms(0, np.arange(3), T, W, 2, hidden=(22, 23), frame_normals=False)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="unknown draw"):
        columns("polarization")


def test_hidden_draws_change_no_input():
    """Redrawing every hidden uniform and the operando normals leaves static, protocol, composition
    and electrode unchanged (up to float32 rounding of batch-size-dependent matrix products), and
    does change the frames (they are hidden, not unused)."""
    sim = OpIRSim(SimConfig(T=T, W=W))
    idx = np.arange(20)
    base = sim.simulate(idx, seed=1)
    other = sim.simulate(np.tile(idx, 2), seed=1, randoms=conditional_randoms(1, idx, T, W, replicates=2))
    for k in ("static", "voltage", "time_s", "composition", "electrode", "system"):
        for m in range(2):
            np.testing.assert_allclose(other[k][m * 20:(m + 1) * 20], base[k], rtol=0, atol=1e-6, err_msg=k)
    assert np.abs(other["frames"][:20] - base["frames"]).max() > 1e-3
    assert np.abs(other["frames"][:20] - other["frames"][20:]).max() > 1e-3


def test_conditional_randoms_keep_visible_draws_and_ignore_batching():
    idx = np.array([3, 7, 11])
    U, Z, noise = draw_randoms(2, idx, T, W)
    Ur, Zr, nr = conditional_randoms(2, idx, T, W, replicates=3)
    split = [CONTACT_UNIFORM, STATIC_GAIN_UNIFORM]          # redrawn with their product kept
    visible = np.setdiff1d(np.arange(U.shape[1]), list(HIDDEN_UNIFORMS) + split)
    for m in range(3):
        rows = slice(m * 3, (m + 1) * 3)
        np.testing.assert_array_equal(Ur[rows][:, visible], U[:, visible])
        np.testing.assert_allclose(_scale(Ur[rows]), _scale(U), rtol=1e-12)
        assert not np.allclose(Ur[rows][:, split], U[:, split])
        np.testing.assert_array_equal(Zr[rows][:, T], Z[:, T])          # the static spectrum's normals
        np.testing.assert_array_equal(nr[rows][:, T], noise[:, T])
        assert not np.allclose(Ur[rows][:, list(HIDDEN_UNIFORMS)], U[:, list(HIDDEN_UNIFORMS)])
        assert not nr[rows][:, :T].any()                                 # frame noise: its mean, 0
    U2, Z2, _ = conditional_randoms(2, idx[1:], T, W, replicates=3)       # other batch, same draws
    np.testing.assert_array_equal(U2.reshape(3, 2, -1), Ur.reshape(3, 3, -1)[:, 1:])
    np.testing.assert_array_equal(Z2.reshape(3, 2, T + 1, -1), Zr.reshape(3, 3, T + 1, -1)[:, 1:])


def _scale(U):
    """contact x (1 + static_gain): what the static spectrum reveals of the two."""
    params = sample_parameters(U, np.zeros(U.shape[0], dtype=np.int64))
    return params["contact"] * (1 + params["static_gain"])


def test_static_gain_redraw_keeps_every_input_and_follows_its_posterior():
    """static_gain scales only the static spectrum, contact also the frames: the redraw keeps their
    product (so every input, bitwise up to float32 rounding) and changes the frames; its draws follow
    the prior conditioned on the product (checked against rejection from the prior)."""
    sim = OpIRSim(SimConfig(T=T, W=W))
    idx = np.arange(20)
    base = sim.simulate(idx, seed=1)
    only_gain = conditional_randoms(1, idx, T, W, replicates=2, hidden=(), frame_normals=False, static_gain=True)
    other = sim.simulate(np.tile(idx, 2), seed=1, randoms=only_gain)
    for k in ("static", "voltage", "time_s", "composition", "electrode", "system"):
        np.testing.assert_allclose(other[k][:20], base[k], rtol=0, atol=1e-6, err_msg=k)
    assert np.abs(other["frames"][:20] - base["frames"]).max() > 1e-4
    # posterior of static_gain given the product, against prior draws whose product falls in a bin
    rng = np.random.default_rng(0)
    c = CONTACT_LO + CONTACT_SPAN * rng.random(2_000_000)
    g = STATIC_GAIN_MAX * (2 * rng.random(2_000_000) - 1)
    for target in (0.86, 1.0, 1.14):
        near = g[np.abs(c * (1 + g) - target) < 3e-4]
        U = np.zeros((100_000, N_UNIFORM))
        U[:, CONTACT_UNIFORM], U[:, STATIC_GAIN_UNIFORM] = (target - CONTACT_LO) / CONTACT_SPAN, 0.5
        _redraw_static_gain(U, rng.random(len(U)))
        drawn = STATIC_GAIN_MAX * (2 * U[:, STATIC_GAIN_UNIFORM] - 1)
        np.testing.assert_allclose(np.quantile(drawn, [0.1, 0.5, 0.9]), np.quantile(near, [0.1, 0.5, 0.9]),
                                   atol=8e-4)
        np.testing.assert_allclose(_scale(U), target, rtol=1e-12)


def test_oracle_mean_beats_references_and_single_draws(ds):
    pers = evaluate(Persistence(), ds, "random", metrics=["mse", "decomp"], progress=False)
    one = evaluate(SimulatorOracle(ds.manifest, replicates=1), ds, "random", metrics=["mse"], progress=False)
    many = evaluate(SimulatorOracle(ds.manifest, replicates=12), ds, "random", metrics=["mse", "decomp"],
                    progress=False)
    assert many.metrics["mse"] < one.metrics["mse"] < pers.metrics["mse"]
    assert many.metrics["mse"] < 0.5 * pers.metrics["mse"]
    assert many.metrics["decomp"] < pers.metrics["decomp"]
    assert many.model == "oracle (M=12)" and many.config_hash != one.config_hash


def test_oracle_refuses_foreign_or_modified_data(ds):
    with pytest.raises(ValueError, match="needs an OpIRSim dataset"):
        SimulatorOracle({"generator": {"name": "imported"}})
    bad = {**ds.manifest, "generator": {**ds.manifest["generator"], "version": "0.0.1"}}
    with pytest.raises(ValueError, match="regenerate the dataset"):
        SimulatorOracle(bad)
    oracle = SimulatorOracle(ds.manifest, replicates=2)
    sub = ds.split("random", "test")
    batch = {"static": sub.static[:2] + 0.01, "index": sub.index[:2]}
    with pytest.raises(ValueError, match="re-simulated static spectra differ"):
        oracle(batch)
    with pytest.raises(ValueError, match="needs batch\\['index'\\]"):
        oracle({"static": sub.static[:2]})


def test_conditional_randoms_by_source():
    """A subset of the hidden draws can be redrawn alone (bench/bench_oracle.py splits the error by
    source); draws that shape the inputs cannot."""
    idx = np.array([1, 2])
    U, Z, noise = draw_randoms(0, idx, T, W)
    Ur, Zr, nr = conditional_randoms(0, idx, T, W, replicates=2, hidden=(22, 23), frame_normals=False,
                                     frame_noise=True)
    others = np.setdiff1d(np.arange(U.shape[1]), [22, 23])
    np.testing.assert_array_equal(Ur[:2][:, others], U[:, others])   # a named subset: no static-gain redraw
    np.testing.assert_array_equal(Zr[:2], Z)
    assert not np.allclose(Ur[:2][:, [22, 23]], U[:, [22, 23]]) and nr[:, :T].std() > 0.5
    with pytest.raises(ValueError, match="shape the inputs"):
        conditional_randoms(0, idx, T, W, replicates=2, hidden=(0, 22))


def test_training_knowledge_lists_the_held_out_electrode_chemistry(ds):
    """The system split holds out LP30|Cu and EC:DEC+FEC|Si: EC on Cu, DEC dimerisation on Si and Si
    cracking occur in no training cell; the random split's training part shows every effect."""
    assert training_knowledge(ds, "random")["unseen"] == []
    know = training_knowledge(ds, "system")
    assert sorted(know["unseen"]) == ["DEC_dimerisation on Si", "EC_to_Li2CO3 on Cu", "crack (Si)"]
    assert know["overrides"] == {"crack": 0.0}
    assert ("DEC_dimerisation", "Si") not in know["modifiers"] and ("EC_to_Li2CO3", "Li") in know["modifiers"]
    with pytest.raises(ValueError, match="no training samples"):
        training_knowledge(ds.split("system", "test"), "system")


def test_transfer_oracle_changes_only_the_cells_with_unseen_chemistry(ds):
    """Re-simulated without what training cannot show, the oracle moves on the Si and Cu cells only,
    and not at all where nothing is left out."""
    sub = ds.split("system", "test")
    batch = {"static": sub.static, "index": sub.index}
    full = SimulatorOracle(ds.manifest, replicates=2)(batch)["frames"]
    know = training_knowledge(ds, "system")
    oracle = SimulatorOracle(ds.manifest, replicates=2, knowledge=know)
    lim = oracle(batch)["frames"]
    electrodes = np.array(ds.manifest["electrodes"])[sub.electrode.numpy()]
    moved = (lim - full).abs().amax(dim=(1, 2)).numpy()
    assert (moved[electrodes == "Si"] > 1e-4).all() and (moved[electrodes == "Cu"] > 0).all()
    assert "training electrode chemistry" in oracle.name and oracle.config["left_out"] == know["unseen"]
    same = SimulatorOracle(ds.manifest, replicates=2, knowledge=training_knowledge(ds, "random"))(batch)["frames"]
    assert torch.equal(same, full)


def test_abcc_bench_cli_transfer_oracle(ds_path, tmp_path, capsys):
    """--transfer-oracle adds the oracle without the held-out systems' own electrode chemistry; it
    needs --oracle and one training part (not all loso folds at once)."""
    from abcc_fast.cli import main

    out = tmp_path / "bench"
    rc = main(["bench", "--data", str(ds_path), "--split", "system", "--out", str(out), "--no-progress",
               "--metrics", "mse", "--threads", "1", "--oracle", "2", "--transfer-oracle", "--no-figures"])
    assert rc == 0
    rows = json.loads((out / "leaderboard.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["persistence", "frame0", "oracle (M=2)",
                                          "oracle (M=2, training electrode chemistry)"]
    assert "left out" in capsys.readouterr().out
    assert main(["bench", "--data", str(ds_path), "--transfer-oracle", "--out", str(out), "--no-figures"]) == 2
    assert main(["bench", "--data", str(ds_path), "--split", "loso", "--oracle", "2", "--transfer-oracle",
                 "--out", str(out), "--no-figures"]) == 2
