"""ABCC ablation switches and the ``abcc bench --all`` suite, on tiny data."""
import csv
import dataclasses
import json

import pytest
import torch

from abcc_fast.model import ABCC, ABCCConfig
from abcc_fast.model.config import ABLATIONS
from abcc_fast.ops.meanflow import meanflow_integrate_reference

pytestmark = pytest.mark.usefixtures("one_thread")

W, T, C = 64, 6, 3


def _cfg(**kw):
    return ABCCConfig.tiny(W=W, T=T, n_components=C, n_electrodes=2, n_reactions=2, **kw)


def _model(cfg=None, seed=0):
    torch.manual_seed(seed)
    m = ABCC(cfg or _cfg()).eval()
    with torch.no_grad():  # zero-initialised heads would make every check trivial
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def _inputs(B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, W, generator=g), 0.5 + torch.rand(B, T, generator=g), torch.rand(B, C, generator=g),
            torch.tensor([0, 1, 0][:B]))


def _batch(B=3):
    static, volt, comp, elec = _inputs(B)
    return dict(static=static, frames=static[:, None] + 0.01 * torch.rand(B, T, W), voltage=volt, composition=comp,
                electrode=elec, time_s=torch.linspace(0, 7200, T).expand(B, T))


# -- ablation switches ----------------------------------------------------------------------------
def test_one_stream_gives_zero_sei_stream():
    m = _model(_cfg().ablation("one_stream"))
    out = m.predict(*_inputs(), return_streams=True, samples=2, noise=0.01)
    assert torch.equal(out["sei"], torch.zeros_like(out["sei"]))
    assert torch.allclose(out["frames"], out["solvent"] + out["baseline"], atol=1e-6)
    args = [torch.rand(3, W), torch.rand(3, W), torch.rand(3), torch.rand(3)]
    state = m.protocol_state(torch.rand(3, T) + 0.5)[:, 0]
    ctx = m.context(torch.rand(3, C), None, torch.rand(3, T))
    _, u_sei, _ = m.velocity(*args, state, state, ctx, torch.tensor([0, 1, 0]))
    assert not u_sei.any()
    two = _model(_cfg())  # the default keeps two streams: its SEI velocity is not zero
    assert two.velocity(*args, state, state, ctx, torch.tensor([0, 1, 0]))[1].abs().max() > 0
    loss, logs = m.training_loss(_batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert not {"sei_nonneg", "sei_growth", "sei_sparsity", "mass", "solvent_new_bands"} & set(logs)


def test_steps1_bit_identical_and_matches_one_jump():
    m = _model()
    static, volt, comp, elec = _inputs()
    a = m.predict(static, volt, comp, elec, return_streams=True, samples=2, noise=0.01,
                  generator=torch.Generator().manual_seed(0))
    b = m.predict(static, volt, comp, elec, return_streams=True, samples=2, noise=0.01, steps=1,
                  generator=torch.Generator().manual_seed(0))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # independent reconstruction of the one-jump path: x_k = static + tau_k (u_s + u_z) (SEI >= 0) + tau_k u_b
    cfg = m.config
    sz = (static - cfg.norm_mean) / cfg.norm_std
    taus = torch.linspace(0, 1, T)
    ctx = m.context(comp, None, volt)
    st = m.protocol_state(volt)
    rows = [m.velocity(sz, sz, torch.zeros(3), taus[k].expand(3), st[:, 0], st[:, k], ctx, elec) for k in range(T)]
    us, uz, ub = (torch.stack([r[i] for r in rows], 1) for i in range(3))
    f, _, _ = meanflow_integrate_reference(sz, us, uz, torch.zeros(3), taus.expand(3, T))
    ref = (f + taus[None, :, None] * ub) * cfg.norm_std + cfg.norm_mean
    torch.testing.assert_close(a["frames"], ref, atol=1e-5, rtol=1e-5)


def test_multistep_runs_finite_and_chains():
    m = _model()
    static, volt, comp, elec = _inputs()
    one = m.predict(static, volt, comp, elec, return_streams=True)
    for n in (2, 3, T - 1, 50):
        out = m.predict(static, volt, comp, elec, return_streams=True, steps=n, samples=2, noise=0.01)
        assert out["frames"].shape == (3, T, W) and out["samples"].shape == (2, 3, T, W)
        assert all(bool(torch.isfinite(v).all()) for v in out.values())
        assert bool((out["sei"] >= 0).all())
        torch.testing.assert_close(out["frames"], out["solvent"] + out["sei"] + out["baseline"], atol=1e-5, rtol=0)
        # the first segment (frames 0..g_1) is the one-step jump from r = 0
        g1 = round((T - 1) / min(n, T - 1))
        torch.testing.assert_close(out["frames"][:, :g1 + 1], one["frames"][:, :g1 + 1], atol=1e-6, rtol=0)
    two = m.predict(static, volt, comp, elec, steps=2)["frames"]
    assert (two - one["frames"]).abs().max() > 1e-6  # later segments jump from the chained state
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        m.predict(static, volt, comp, elec, steps=0)


def test_weight_presets_switch_terms_off():
    cfg = _cfg()
    assert cfg.ablation("abcc") == cfg
    np_, ns = cfg.ablation("no_physics"), cfg.ablation("no_spectrum")
    assert (np_.w_mass, np_.w_peak_drift, np_.w_peak_accel) == (0, 0, 0)
    assert np_.w_sei_nonneg == cfg.w_sei_nonneg > 0 and np_.w_smooth == cfg.w_smooth > 0
    assert (ns.w_sei_nonneg, ns.w_sei_growth, ns.w_smooth, ns.w_solvent_new_bands) == (0, 0, 0, 0)
    assert ns.w_mass == cfg.w_mass > 0 and ns.w_peak_drift == cfg.w_peak_drift > 0
    assert cfg.streams == 2 and cfg.ablation("one_stream").streams == 1
    cpu = ABCCConfig.cpu_default()                   # the labelled preset: the label ablations switch them off
    assert cpu.w_sei_label > 0 and cpu.sei_label_floor > 0
    assert cpu.ablation("no_labels").w_sei_label == 0 == cpu.ablation("one_stream").w_sei_label
    cpu.ablation("one_stream").validate()
    ne = cpu.ablation("no_extents")       # the free template SEI head, without the labels it cannot take
    ne.validate()
    assert cpu.sei_from_extents and not ne.sei_from_extents and ne.w_sei_label == 0 and ne.extent_passivation == 0
    assert ne.sei_basis == "templates" and ne.w_mass == cpu.w_mass and cfg.ablation("no_extents") == cfg
    with pytest.raises(ValueError, match="streams=1 does not have"):
        dataclasses.replace(cpu, streams=1).validate()
    for name in ABLATIONS:  # the defaults are unchanged by any preset
        cfg.ablation(name)
    assert cfg == _cfg()
    _, logs = ABCC(ns).training_loss(_batch())
    assert not {"sei_nonneg", "sei_growth", "smooth", "solvent_new_bands"} & set(logs) and "mass" in logs
    _, logs = ABCC(np_).training_loss(_batch())
    assert "mass" not in logs and "sei_nonneg" in logs
    assert ABCC(np_).extent_head is None
    with pytest.raises(ValueError, match="unknown ABCC ablation"):
        cfg.ablation("no_such")
    with pytest.raises(ValueError, match="streams must be 1"):
        _cfg(streams=3)
    # a config saved before the switch existed (no "streams" key) loads with two streams
    d = cfg.to_dict()
    d.pop("streams")
    assert ABCCConfig.from_dict(d).streams == 2


# -- the suite -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ds(tmp_path_factory):
    from abcc_fast.data import generate, load

    path = tmp_path_factory.mktemp("suite_data") / "ds"
    generate(path, n_samples=60, T=8, W=64, seed=0, progress=False)
    return load(path)


def test_suite_end_to_end_and_resume(tiny_ds, tmp_path, capsys):
    from abcc_fast.apps.suite import run_suite

    out = tmp_path / "bench"
    kw = dict(entries=["abcc", "abcc_steps2", "mlp"], splits=["random"], seeds=2, preset="tiny", steps=3,
              oracle_replicates=2, progress=False)
    paths = run_suite(out, tiny_ds, **kw)
    assert not paths["failures"]
    board = json.loads((out / "table.json").read_text())
    assert board["setup"]["train_config"]["steps"] == 3 and board["setup"]["seeds"] == [0, 1]
    assert board["setup"]["dataset_manifest_sha256"] and "machine" in board["setup"]
    rows = {r["entry"]: r for r in board["rows"]}
    assert set(rows) == {"persistence", "frame0", "oracle", "abcc", "abcc_steps2", "mlp"}
    assert rows["abcc"]["n_seeds"] == 2 and rows["abcc"]["mse_std"] >= 0
    assert rows["abcc_steps2"]["kind"] == "ablation" and rows["mlp"]["kind"] == "baseline"
    mses = [json.loads((out / "results" / "random" / "abcc" / f"seed{s}.json").read_text())["metrics"]["mse"]
            for s in (0, 1)]
    assert rows["abcc"]["mse_mean"] == pytest.approx(sum(mses) / 2)
    with open(out / "table.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert {"mse_mean", "mse_std", "dilate_mean", "dilate_std", "peak_shift_mean", "s_per_step_mean",
            "capped_runs", "mse_f1_mean", "mse_f4_std"} <= set(header)
    md = (out / "table.md").read_text()
    assert "±" in md and "split `random`" in md and "3 steps" in md and "capped" not in md
    assert "| f1 | f2 | f3 | f4 | lr | steps | s/step |" in md and "| entry | frame 1 | frame 2 |" in md
    assert (out / "figures" / "best3_random.png").stat().st_size > 0
    assert (out / "figures" / "mse_per_frame_random.png").stat().st_size > 0
    # MSE per frame (frames 1..T-1) in every result and, averaged over seeds, in the table
    per = [json.loads((out / "results" / "random" / "abcc" / f"seed{s}.json").read_text())["mse_per_frame"]
           for s in (0, 1)]
    assert len(per[0]) == tiny_ds.T - 1 and rows["abcc"]["mse_f2_mean"] == pytest.approx((per[0][1] + per[1][1]) / 2)
    assert rows["oracle"]["mse_per_frame_mean"] and rows["abcc"]["capped_runs"] == 0
    # abcc_steps2 scores the abcc run itself (no model of its own)
    assert not (out / "runs" / "random" / "abcc_steps2").exists()

    # resume: nothing is retrained or rescored
    results = sorted((out / "results").rglob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in results}
    capsys.readouterr()
    run_suite(out, tiny_ds, figures=False, **kw)
    log = capsys.readouterr().out
    assert log.count("(done, skipped)") == 6 and "training" not in log
    assert {p: p.stat().st_mtime_ns for p in results} == stamps

    # a different budget in the same directory is refused
    with pytest.raises(ValueError, match="different setup"):
        run_suite(out, tiny_ds, **{**kw, "steps": 4})


def test_suite_sweep_keeps_best_lr_for_every_entry(tiny_ds, tmp_path):
    """ABCC, its ablations and the baselines get the same lr sweep; abcc_steps<N> shares abcc's."""
    from abcc_fast.apps.suite import run_suite

    out = tmp_path / "bench"
    run_suite(out, tiny_ds, entries=["abcc", "abcc_one_stream", "abcc_steps2", "dlinear"], splits=["system"],
              seeds=1, preset="tiny", steps=2, sweep=True, sweep_lr=[1.0, 2.0], oracle_replicates=0, figures=False,
              progress=False)
    for entry in ("abcc", "abcc_one_stream", "dlinear"):
        rec = json.loads((out / "sweep" / "system" / f"{entry}.json").read_text())
        assert len(rec["settings"]) == 2 and rec["best_lr"] in rec["lrs"]
        best = min(rec["settings"], key=lambda r: r["val_mse"])
        assert rec["best_lr"] == best["lr"]
        res = json.loads((out / "results" / "system" / entry / "seed0.json").read_text())
        assert res["training"]["lr"] == rec["best_lr"]
    steps2 = json.loads((out / "results" / "system" / "abcc_steps2" / "seed0.json").read_text())
    assert steps2["training"]["lr"] == json.loads((out / "sweep" / "system" / "abcc.json").read_text())["best_lr"]
    assert not (out / "sweep" / "system" / "abcc_steps2.json").exists()
    assert "validation sweep: every trained entry" in (out / "table.md").read_text()


def test_suite_capped_runs_and_older_setups(tiny_ds, tmp_path):
    """A wall-clock cap that ends runs early marks them capped in the table; a setup written by the
    older wall-clock-budget version still renders, and resuming it is refused with the reason."""
    from abcc_fast.apps import suite

    out = tmp_path / "bench"
    with pytest.warns(RuntimeWarning, match="wall-clock cap"):
        suite.run_suite(out, tiny_ds, entries=["mlp"], splits=["random"], seeds=1, preset="tiny", steps=100_000,
                        max_time_s=0.5, oracle_replicates=0, figures=False, progress=False)
    board = json.loads((out / "table.json").read_text())
    row = next(r for r in board["rows"] if r["entry"] == "mlp")
    assert row["capped_runs"] == 1 and row["steps_done_mean"] < 100_000
    md = (out / "table.md").read_text()
    assert "(capped: 1 run)" in md and "wall-clock safety cap 0.5 s" in md

    old = {k: v for k, v in board["setup"].items() if k not in ("budget_kind", "sweep_entries")}
    old["train_config"] = {**old["train_config"], "max_time_s": 330.0}
    assert "an older wall-clock budget" in suite.to_markdown(board["rows"], old)
    (out / "suite_setup.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="older version with a wall-clock budget"):
        suite.run_suite(out, tiny_ds, entries=["mlp"], splits=["random"], seeds=1, preset="tiny", steps=100_000,
                        max_time_s=0.5, oracle_replicates=0, figures=False, progress=False)


def test_suite_bad_input(tiny_ds, tmp_path):
    from abcc_fast.apps.suite import run_suite

    with pytest.raises(ValueError, match="unknown entry 'nope'.*abcc_no_physics"):
        run_suite(tmp_path / "b", tiny_ds, entries=["abcc", "nope"])
    with pytest.raises(ValueError, match="seeds must be an integer >= 1"):
        run_suite(tmp_path / "b", tiny_ds, entries=["abcc"], seeds=0)
    with pytest.raises(ValueError, match="splits must be among"):
        run_suite(tmp_path / "b", tiny_ds, entries=["abcc"], splits=["loso"])
    with pytest.raises(ValueError, match="unknown preset"):
        run_suite(tmp_path / "b", tiny_ds, entries=["abcc"], preset="huge")


def test_suite_leaves_out_ablations_that_change_nothing(tiny_ds, tmp_path):
    """An ablation whose overrides are the preset's own settings is the abcc model under another name:
    not trained, and the table says why."""
    from abcc_fast.apps.suite import run_suite, unchanged_ablations

    # the tiny preset already trains from MeanFlow sources (mf_pairs=1) and has no SEI labels
    skipped = unchanged_ablations(["abcc", "abcc_mf_sources", "abcc_no_labels", "abcc_one_stream", "mlp"], tiny_ds,
                                  {"abcc": "tiny", "baseline": "tiny"})
    assert set(skipped) == {"abcc_mf_sources", "abcc_no_labels"} and "preset tiny" in skipped["abcc_no_labels"]
    assert unchanged_ablations(["abcc_no_labels"], tiny_ds, {"abcc": "cpu_default", "baseline": "cpu_default"}) == {}
    out = tmp_path / "b"
    run_suite(out, tiny_ds, entries=["abcc", "abcc_no_labels"], splits=["random"], seeds=1, preset="tiny", steps=2,
              oracle_replicates=0, figures=False, progress=False)
    board = json.loads((out / "table.json").read_text())
    assert {r["entry"] for r in board["rows"]} == {"persistence", "frame0", "abcc"}
    assert board["setup"]["entries"] == ["abcc"] and "abcc_no_labels" in board["setup"]["unchanged_ablations"]
    assert "`abcc_no_labels` not run: the same configuration as abcc" in (out / "table.md").read_text()
    assert not (out / "runs" / "random" / "abcc_no_labels").exists()
    with pytest.raises(ValueError, match="same model as abcc in preset tiny: abcc_no_labels"):
        run_suite(tmp_path / "c", tiny_ds, entries=["abcc_no_labels"], preset="tiny")


def test_cli_bench_all_bad_input(tmp_path, capsys):
    from abcc_fast.cli import main

    assert main(["bench", "--all", "--entries", "abcc,bogus", "--out", str(tmp_path / "o")]) == 2
    assert "unknown entry 'bogus'" in capsys.readouterr().err
    assert main(["bench", "--all", "--seeds", "0", "--out", str(tmp_path / "o")]) == 2
    assert "seeds must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was loaded or written


def test_resume_compares_the_dataset_identity(tmp_path):
    """A suite resumed on another CPU (other shard bytes, same identity) joins; another identity does not;
    a setup from before identities is compared by the manifest's sha256."""
    from abcc_fast.apps.suite import _RESUME_KEYS, _write_setup

    base = {k: "same" for k in _RESUME_KEYS}
    base.update(dataset_identity="id-a", dataset_manifest_sha256="sha-a")
    _write_setup(tmp_path, base)
    _write_setup(tmp_path, {**base, "dataset_manifest_sha256": "sha-b"})          # other bytes, same identity
    with pytest.raises(ValueError, match="dataset_identity differ"):
        _write_setup(tmp_path, {**base, "dataset_identity": "id-b"})
    old = {k: v for k, v in base.items() if k != "dataset_identity"}                  # written before identities
    (tmp_path / "suite_setup.json").write_text(json.dumps(old))
    _write_setup(tmp_path, base)
    (tmp_path / "suite_setup.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="dataset_manifest_sha256 differ"):
        _write_setup(tmp_path, {**base, "dataset_manifest_sha256": "sha-b"})
