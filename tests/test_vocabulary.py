"""Open vocabulary: component templates from chemistry, band JSON and measured
spectra; the templates composition encoding of ABCC; OpIRSim with a JSON component; a held-out component."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from abcc_fast import vocabulary as V
from abcc_fast.data import chemistry as chem
from abcc_fast.data import simulator as S
from abcc_fast.model import ABCC, ABCCConfig

W, T = 64, 8
WN = np.linspace(700.0, 1900.0, W)
NEW = {"name": "NEWSOLV", "kind": "solvent", "molar_mass": 110.0, "density": 1.05,
       "bands": [{"position": 1610, "height": 1.0, "fwhm": 20, "eta": 0.6, "bound_position": 1590},
                 {"position": 1230, "height": 0.4, "fwhm": 30, "bound_position": 1255},
                 {"position": 980, "height": 0.3, "fwhm": 15}]}


def _tiny(encoding="templates", **kw):
    cfg = ABCCConfig.tiny(W=W, T=T, n_components=len(chem.COMPONENT_NAMES), components=list(chem.COMPONENT_NAMES),
                          wavenumber=list(WN), n_electrodes=5, n_reactions=len(chem.REACTIONS),
                          composition_encoding=encoding, profile_points=4, **kw)
    torch.manual_seed(0)
    return ABCC(cfg)


# ---------------------------------------------------------------------------------------------
# templates and their validation
# ---------------------------------------------------------------------------------------------
def test_known_template_is_the_simulator_rendering():
    t = V.known_template("EC", WN)
    for state in ("free", "bound"):
        ref = S.render_species("EC", WN, state, atr=True, resolution=4.0)
        np.testing.assert_allclose(getattr(t, state), ref, rtol=1e-12, atol=1e-15)
    assert not np.allclose(t.free, t.bound)   # EC's bound spectrum differs (C=O collapse, ring shifts)


def test_json_component_loads_and_renders(tmp_path):
    f = tmp_path / "new.json"
    f.write_text(json.dumps(NEW))
    t = V.load_template(f, WN)
    assert t.name == "NEWSOLV" and t.kind == "solvent" and t.component is not None
    assert WN[np.argmax(t.free)] == pytest.approx(1610, abs=25)
    assert WN[np.argmax(t.bound)] == pytest.approx(1590, abs=25)
    # area exchange: the bound band keeps the free band's area
    assert np.trapezoid(t.bound, WN) == pytest.approx(np.trapezoid(t.free, WN), rel=0.05)
    # neat-liquid default: strongest band 0.8 AU at the neat molarity (before the ATR factor)
    assert t.component.component.peak_per_molar == pytest.approx(0.8 / (1000 * 1.05 / 110.0))
    bank = V.TemplateBank(WN)
    assert bank.add(NEW) == "NEWSOLV" and bank.matrix(["EC", "NEWSOLV"]).shape == (2, 2, W)


@pytest.mark.parametrize("patch, msg", [
    ({"name": None}, "'name'"),
    ({"name": "EC"}, "already a known component"),
    ({"kind": "polymer"}, "'kind' must be one of"),
    ({"molar_mass": None}, "missing the required field 'molar_mass'"), ({"molar_mass": "heavy"}, "'molar_mass' must be a number"),
    ({"density": float("nan")}, "must be finite"),
    ({"bands": []}, "non-empty list"),
    ({"bands": [{"position": 17450, "height": 1, "fwhm": 20}]}, "must be <= 5000"),
    ({"bands": [{"position": 50, "height": 1, "fwhm": 20}]}, "must be >= 200"),
    ({"bands": [{"position": 1745, "fwhm": 20}]}, "missing the required field 'height'"),
    ({"bands": [{"position": 1745, "height": 1, "fwhm": 0}]}, "'fwhm' = 0.0 must be > 0"),
    ({"bands": [{"position": 1745, "height": 1, "fwhm": 20, "eta": 2}]}, "'eta' = 2.0 must be <= 1"),
    ({"bands": [{"position": 1745, "height": 1, "fwhm": 20, "width": 3}]}, "unknown field"),
    ({"colour": "red"}, "unknown field"),
    ({"reactions": [{"name": "X_red", "produces": {"unobtainium": 1}, "electrons": 1, "onset_V": 1,
                     "width_V": 0.1, "rate": 0.1}]}, "unknown species 'unobtainium'"),
    ({"reactions": [{"name": "X_red", "produces": {"LEC": 1}, "electrons": 1, "onset_V": 9,
                     "width_V": 0.1, "rate": 0.1}]}, "'onset_V' = 9.0 must be <= 5"),
])
def test_json_component_errors(tmp_path, patch, msg):
    d = {**NEW, **patch}
    for k, v in patch.items():
        if v is None:
            del d[k]
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=msg) as err:
        V.load_component(f)
    assert str(f) in str(err.value)


def test_json_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        V.load_component(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        V.load_component(tmp_path / "x.json")


def test_measured_spectrum_template(tmp_path):
    wn = np.linspace(4000, 600, 1701)          # descending export, wider than the grid
    y = 0.5 * np.exp(-((wn - 1650) / 15) ** 2) + 0.01
    f = tmp_path / "mysolv.csv"
    f.write_text("wavenumber,absorbance\n" + "\n".join(f"{a},{b}" for a, b in zip(wn, y)))
    t = V.load_template(f, WN)
    assert t.name == "mysolv" and t.measured and t.component is None
    np.testing.assert_allclose(t.free, np.interp(WN, wn[::-1], y[::-1]))
    assert V.load_template(f"OTHER={f}", WN).name == "OTHER"
    # grid outside the measured range, and a bad cell: importer's messages
    g = tmp_path / "short.csv"
    g.write_text("wavenumber,absorbance\n1000,0.1\n1500,0.2\n")
    with pytest.raises(ValueError, match="outside the measured"):
        V.load_template(g, WN)
    g.write_text("wavenumber,absorbance\n1000,0.1\n1500,abc\n")
    with pytest.raises(ValueError, match="not a number"):
        V.load_template(g, WN)
    with pytest.raises(ValueError, match="bands"):   # the simulator needs bands, not a measured spectrum
        V.simulate_with([t], [0], config=S.SimConfig(T=4, W=W))


# ---------------------------------------------------------------------------------------------
# the templates composition encoding
# ---------------------------------------------------------------------------------------------
def test_composition_embedding_depends_on_the_template():
    model = _tiny()
    C = len(chem.COMPONENT_NAMES)
    x = torch.zeros(2, C + 1)
    x[:, chem.COMPONENT_NAMES.index("EC")] = 0.5
    x[:, C] = 0.5                                                  # half the new component
    a = torch.from_numpy(V.as_template(NEW, WN).array())[None]
    other = {**NEW, "bands": [{"position": 1100, "height": 1.0, "fwhm": 60}]}
    b = torch.from_numpy(V.as_template(other, WN).array())[None]
    ea, eb = model.composition_embedding(x, a), model.composition_embedding(x, b)
    assert ea.shape == (2, model.config.template_dim)
    assert (ea - eb).abs().max() > 1e-4                            # another template, another embedding
    # linear in the composition: sum_i x_i E(t_i)
    e_ec = model.composition_embedding(torch.eye(C + 1)[[chem.COMPONENT_NAMES.index("EC")]], a)
    e_new = model.composition_embedding(torch.eye(C + 1)[[C]], a)
    torch.testing.assert_close(ea[:1], 0.5 * e_ec + 0.5 * e_new, rtol=1e-5, atol=1e-6)
    # a known component's embedding comes from its stored template: changing it changes the embedding
    before = model.composition_embedding(torch.eye(C)[[0]])
    tpl = model.component_templates.clone()
    tpl[0] = tpl[chem.COMPONENT_NAMES.index("DME")]
    model.set_component_templates(tpl)
    assert (model.composition_embedding(torch.eye(C)[[0]]) - before).abs().max() > 1e-4


def test_templates_model_save_load_and_predict_api(tmp_path):
    model = _tiny()
    static, volt = torch.rand(2, W) * 0.1, torch.linspace(2.0, 0.1, T).expand(2, T)
    elec = torch.tensor([0, 0])
    names = ["EC", "DMC", "LiPF6", "NEWSOLV"]
    x = torch.tensor([[0.4, 0.4, 0.1, 0.1]] * 2)
    out = model.predict(static, volt, x, elec, components=names, extra_components=[NEW])
    assert out["frames"].shape == (2, T, W) and torch.isfinite(out["frames"]).all()
    # the same composition given over the full vocabulary + the new component
    full = torch.zeros(2, len(chem.COMPONENT_NAMES) + 1)
    for j, n in enumerate(names[:3]):
        full[:, chem.COMPONENT_NAMES.index(n)] = x[:, j]
    full[:, -1] = 0.1
    out2 = model.predict(static, volt, full, elec, extra_components=[V.as_template(NEW, WN)])
    torch.testing.assert_close(out["frames"], out2["frames"])
    with pytest.raises(ValueError, match="unknown component 'NEWSOLV'.*extra_components"):
        model.predict(static, volt, x, elec, components=names)
    path = model.save_pretrained(tmp_path / "m")
    loaded = ABCC.from_pretrained(path)
    torch.testing.assert_close(loaded.component_templates, model.component_templates)
    out3 = loaded.predict(static, volt, x, elec, components=names, extra_components=[NEW])
    torch.testing.assert_close(out["frames"], out3["frames"])


def test_vocabulary_model_cannot_represent_a_new_component():
    model = _tiny("vocabulary")
    assert not hasattr(model, "component_templates")
    static, volt, elec = torch.rand(1, W), torch.linspace(2.0, 0.1, T)[None], torch.tensor([0])
    with pytest.raises(ValueError, match="fixed vocabulary.*cannot represent the new component"):
        model.predict(static, volt, torch.tensor([[0.9, 0.1]]), elec, components=["EC", "NEWSOLV"],
                      extra_components=[NEW])
    with pytest.raises(ValueError, match="unknown component 'NEWSOLV'.*cannot represent"):
        model.predict(static, volt, torch.tensor([[0.9, 0.1]]), elec, components=["EC", "NEWSOLV"])
    out = model.predict(static, volt, torch.tensor([[0.5, 0.5]]), elec, components=["EC", "DMC"])
    assert torch.isfinite(out["frames"]).all()
    with pytest.raises(ValueError, match="composition_encoding"):
        ABCCConfig.tiny(composition_encoding="onehot")


# ---------------------------------------------------------------------------------------------
# OpIRSim with a JSON component
# ---------------------------------------------------------------------------------------------
def test_opirsim_with_a_json_component(tmp_path):
    cfg = S.SimConfig(T=T, W=W, systems=[1])
    idx = np.arange(6)
    base = S.OpIRSim(cfg).simulate(idx, seed=3)
    dose = {"NEWSOLV": V.Dosage(prob=0.5, lo=10.0, hi=20.0)}
    out = V.simulate_with([NEW], idx, seed=3, config=cfg, dosage=dose)
    assert len(chem.COMPONENT_NAMES) == 15 and "NEWSOLV" not in chem.COMPONENTS   # tables restored
    x = out["composition"][:, -1]
    has = x > 0
    assert has.any() and (~has).any()
    # samples without it are the base simulator's, byte for byte; with it, its band is in the static spectrum
    np.testing.assert_array_equal(out["frames"][~has], base["frames"][~has])
    np.testing.assert_array_equal(out["composition"][~has, :15], base["composition"][~has])
    k = int(np.argmin(np.abs(WN - 1610)))
    assert np.all(out["static"][has, k] - base["static"][has, k] > 0.02)
    assert np.all(np.abs(out["solvent"][has] - base["solvent"][has]).max(axis=(1, 2)) > 0.01)
    # a dataset with the component in its vocabulary
    from abcc_fast.data.format import load

    path = V.generate_with([NEW], tmp_path / "ds", dosage=dose, n_samples=6, T=T, W=W, systems=[1], seed=3,
                           progress=False)
    ds = load(path)
    assert ds.manifest["components"][-1] == "NEWSOLV" and ds.composition.shape[1] == 16
    np.testing.assert_allclose(ds.composition.numpy(), out["composition"])
    # with a reaction, the component is consumed below its onset
    rx = {**NEW, "name": "NEWSOLV2", "reactions": [{"name": "NEWSOLV2_reduction", "produces": {"LEC": 1.0},
                                                    "electrons": 2, "onset_V": 1.2, "width_V": 0.05, "rate": 2.0}]}
    r = V.simulate_with([rx], idx[:2], seed=3, config=cfg, dosage={"NEWSOLV2": V.Dosage(1.0, 15, 15)},
                        return_extras=True)
    c = r["concentrations"][:, :, 15]
    assert np.all(c[:, -1] < c[:, 0]) and r["extent"].shape[-1] == len(chem.REACTIONS) + 1


def test_default_simulator_unchanged_after_extension():
    cfg = S.SimConfig(T=4, W=32)
    a = S.OpIRSim(cfg).simulate(np.arange(3), seed=1)
    V.simulate_with([NEW], np.arange(3), seed=1, config=cfg)
    b = S.OpIRSim(cfg).simulate(np.arange(3), seed=1)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# ---------------------------------------------------------------------------------------------
# a held-out component: trained without it, predicted with only its template
# ---------------------------------------------------------------------------------------------
def _batches(out, rows):
    C = len(chem.COMPONENT_NAMES)
    return {"static": torch.from_numpy(out["static"][rows]), "frames": torch.from_numpy(out["frames"][rows]),
            "voltage": torch.from_numpy(out["voltage"][rows]), "time_s": torch.from_numpy(out["time_s"][rows]),
            "composition": torch.from_numpy(out["composition"][rows, :C]),
            "electrode": torch.from_numpy(out["electrode"][rows])}


def test_held_out_component():
    cfg = S.SimConfig(T=T, W=W, systems=[1, 4, 6])
    out = V.simulate_with([NEW], np.arange(72), seed=5, config=cfg,
                          dosage={"NEWSOLV": V.Dosage(prob=0.3, lo=10.0, hi=25.0)})
    has = out["composition"][:, -1] > 0
    train, test = np.nonzero(~has)[0], np.nonzero(has)[0]
    assert len(train) >= 30 and len(test) >= 8
    fr = out["frames"][train]
    model = _tiny(norm_mean=float(fr.mean()), norm_std=float(fr.std()), volt_mean=float(out["voltage"].mean()),
                  volt_std=float(out["voltage"].std()))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for step in range(40):
        rows = train[torch.randperm(len(train), generator=g)[:16].numpy()]
        loss, logs = model.training_loss(_batches(out, rows), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["disp_traj"])
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    model.eval()
    b = _batches(out, test)
    full = torch.from_numpy(out["composition"][test])                 # 15 known + NEWSOLV
    with_x = model.predict(b["static"], b["voltage"], full, b["electrode"], time_s=b["time_s"],
                           extra_components=[NEW])["frames"]
    without = full[:, :15] / full[:, :15].sum(1, keepdim=True)       # the new component dropped
    dropped = model.predict(b["static"], b["voltage"], without, b["electrode"], time_s=b["time_s"])["frames"]
    assert torch.isfinite(with_x).all() and (with_x - dropped).abs().max() > 1e-7   # X's template is used
    # the vocabulary (one-hot) path cannot represent it at all
    vocab = _tiny("vocabulary")
    with pytest.raises(ValueError, match="cannot represent"):
        vocab.predict(b["static"], b["voltage"], full, b["electrode"], extra_components=[NEW])


def test_predict_cli_with_a_component_file(tmp_path):
    """`abcc predict --composition ...,NEWSOLV=0.1 --component-file new.json` on a saved templates model."""
    from abcc_fast.train.predict import predict_to_dir

    model = _tiny()
    mdir = model.save_pretrained(tmp_path / "model")
    (tmp_path / "new.json").write_text(json.dumps(NEW))
    (tmp_path / "static.csv").write_text("wavenumber,absorbance\n" + "\n".join(
        f"{w},{0.05 + 0.01 * np.sin(w / 50)}" for w in np.linspace(650, 1950, 200)))
    (tmp_path / "volt.csv").write_text("time_s,voltage\n" + "\n".join(
        f"{600 * i},{2.0 - 0.25 * i}" for i in range(T)))
    written = predict_to_dir(mdir, tmp_path / "static.csv", tmp_path / "volt.csv", "EC=0.4,DMC=0.5,NEWSOLV=0.1",
                             "graphite", tmp_path / "pred", figures=False, component_files=[tmp_path / "new.json"])
    meta = json.loads(written["prediction.json"].read_text())
    assert meta["composition"]["NEWSOLV"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown component 'NEWSOLV'"):
        predict_to_dir(mdir, tmp_path / "static.csv", tmp_path / "volt.csv", "EC=0.4,DMC=0.5,NEWSOLV=0.1",
                       "graphite", tmp_path / "pred2", figures=False)
    r = subprocess.run([sys.executable, "-m", "abcc_fast.cli", "predict", "--help"], capture_output=True, text=True)
    assert "--component-file" in r.stdout
