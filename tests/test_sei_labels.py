"""SEI-stream labels from the template fit of the frames (``analysis.sei_labels``, ``w_sei_label``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import abcc_fast.data as data
from abcc_fast.analysis import estimate_streams, product_templates
from abcc_fast.analysis.pathway import components_of, default_products
from abcc_fast.analysis.sei_labels import (SeiLabelled, fit_coefficients, fitted_labels, label_templates,
                                           sei_label_coefficients, sei_labels)
from abcc_fast.model import ABCC, ABCCConfig
from abcc_fast.model.constraints import sei_label_term
from abcc_fast.train.trainer import TrainConfig, _training_set, train


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return data.load(data.generate(tmp_path_factory.mktemp("labels") / "ds", n_samples=24, T=8, W=64, seed=5,
                                   progress=False))


def test_labels_are_the_template_fit_of_each_sample(ds, tmp_path):
    """The stored coefficients on all film templates rebuild exactly the SEI stream that
    estimate_streams fits to the sample's frames with its own products; the cache is written
    once, read back identically, and rebuilt when damaged."""
    coef = sei_label_coefficients(ds, progress=False, cache_dir=tmp_path)
    assert coef.shape[:2] == (len(ds), ds.T) and (coef >= 0).all()
    wn = ds.wavenumber.double().numpy()
    for s in (0, 7, 23):
        comps = components_of(ds.composition[s].double().numpy(), ds.manifest["components"])
        tpl = product_templates(wn, default_products(wn, comps, 4.0), 4.0)
        want = estimate_streams(ds.frames[s].double().numpy(), wn, tpl, comps, 4.0)["sei"]
        got = (coef[s].double() @ label_templates(wn).double()).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max() + 1e-12)
    files = list((tmp_path / "sei_labels").glob("*.safetensors"))
    assert len(files) == 1
    torch.testing.assert_close(sei_label_coefficients(ds, cache_dir=tmp_path), coef)
    files[0].write_bytes(b"not a safetensors file")
    torch.testing.assert_close(sei_label_coefficients(ds, progress=False, cache_dir=tmp_path), coef)
    torch.testing.assert_close(fit_coefficients(ds, [3, 5], progress=False), coef[[3, 5]])


def test_a_split_part_reads_labels_by_global_index(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("ABCC_DATA_DIR", str(tmp_path))
    part = ds.split("random", "val")
    with pytest.raises(ValueError, match="call it once with the whole dataset"):
        sei_label_coefficients(part)
    coef = sei_label_coefficients(ds, progress=False)
    labelled = SeiLabelled(part, ds, progress=False)
    item = labelled[1]
    torch.testing.assert_close(item["sei_label"], coef[int(part.index[1])] @ label_templates(ds.wavenumber.numpy()).float())
    torch.testing.assert_close(sei_labels(part, [1]), item["sei_label"][None])
    assert len(labelled) == len(part) and "frames" in item


def test_w_sei_label_trains_the_sei_stream_towards_the_labels(ds, tmp_path, monkeypatch):
    """The term is the SEI stream's squared distance to the labels (z-units, frames after tau = 0),
    abcc train supplies the labels, and a batch without them is refused with a clear message."""
    monkeypatch.setenv("ABCC_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = ABCC(ABCCConfig.from_dataset(ds, "random", preset="tiny", w_sei_label=10.0))
    train_set = _training_set(model, ds, "random", "train", 0)          # what train() draws from
    batch = {k: torch.stack([train_set[i][k] for i in range(4)]) for k in ("static", "frames", "voltage", "time_s",
                                                                          "composition", "electrode", "sei_label")}
    _, logs = model.training_loss(batch)
    assert logs["sei_label"] > 0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = lambda: torch.Generator().manual_seed(1)                       # the same trajectory frames each step
    first = None
    for _ in range(15):                                                 # the term alone pulls the stream to the labels
        traj = model._trajectory_loss(model._training_inputs(batch), gen(), {})
        term = sei_label_term(traj, batch["sei_label"], model.config.norm_std)
        first = float(term) if first is None else first
        opt.zero_grad()
        term.backward()
        opt.step()
    assert float(term) < 0.5 * first
    assert not isinstance(_training_set(ABCC(ABCCConfig.from_dataset(ds, "random", preset="tiny")), ds, "random",
                                        "train", 0), SeiLabelled)       # labels only when the term is on
    with pytest.raises(ValueError, match="needs the batch's 'sei_label'"):
        model.training_loss({k: v for k, v in batch.items() if k != "sei_label"})
    res = train(model, ds, split="random", out_dir=tmp_path / "run", progress=False,
                config=TrainConfig.tiny(steps=3, batch_size=4, eval_every=10 ** 9, checkpoint_every=10 ** 9))
    assert res.steps_done == 3
    assert "sei_label" in (tmp_path / "run" / "log.csv").read_text().splitlines()[0]


def test_relative_label_term_weighs_each_frame_by_its_label_energy():
    """sei_label_floor > 0: each frame's error over (its label energy + floor x the sample's largest),
    so the term does not change when a sample's film (stream and label) is scaled, and a small early
    film weighs like a large late one; floor 0 is the absolute form; a negative floor is refused."""
    g = torch.Generator().manual_seed(3)
    B, T, W = 3, 6, 16
    label = torch.rand(B, T, W, generator=g) * torch.linspace(0, 1, T)[None, :, None]   # films growing from 0
    idx = torch.tensor([[0, 1, 3, 5]] * B)
    sei = torch.gather(label, 1, idx[..., None].expand(-1, -1, W)) + 0.1 * torch.randn(B, 4, W, generator=g)
    traj = {"sei": sei, "idx": idx, "taus": idx / (T - 1)}
    e = label.pow(2).mean(-1)
    lab = torch.gather(label, 1, idx[..., None].expand(-1, -1, W))
    denom = torch.gather(e, 1, idx) + 0.01 * e.amax(1, keepdim=True) + 1e-10           # LABEL_ENERGY_MIN_AU2
    want = ((sei - lab).pow(2).mean(-1) / denom)[:, 1:].mean()
    torch.testing.assert_close(sei_label_term(traj, label, 1.0, 0.01), want)
    scale = torch.tensor([1.0, 0.1, 50.0])[:, None, None]                             # per-sample film sizes
    torch.testing.assert_close(sei_label_term({**traj, "sei": sei * scale}, label * scale, 1.0, 0.01), want, rtol=1e-4,
                               atol=0)
    torch.testing.assert_close(sei_label_term(traj, label, 2.0),
                               ((sei - lab / 2).pow(2).mean(-1))[:, 1:].mean())          # the absolute form
    none = sei_label_term({**traj, "sei": torch.full_like(sei, 1e-4)}, torch.zeros_like(label), 1.0, 0.01)
    torch.testing.assert_close(none, torch.tensor(1e-8 / 1e-10))                      # no film at all: finite
    with pytest.raises(ValueError, match="sei_label_floor must be >= 0"):
        ABCCConfig(sei_label_floor=-0.1).validate()


def test_training_loss_uses_the_relative_label_term(ds, tmp_path, monkeypatch):
    """ABCC.training_loss passes sei_label_floor and the config's norm_std to the term; the least
    denominator is in AU^2 (a model with another norm_std scores the same AU-level film alike)."""
    monkeypatch.setenv("ABCC_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = ABCC(ABCCConfig.from_dataset(ds, "random", preset="tiny", w_sei_label=10.0, sei_label_floor=0.01))
    train_set = _training_set(model, ds, "random", "train", 0, progress=False)
    batch = {k: torch.stack([train_set[i][k] for i in range(4)]) for k in ("static", "frames", "voltage", "time_s",
                                                                          "composition", "electrode", "sei_label")}
    _, logs = model.training_loss(batch, generator=torch.Generator().manual_seed(4))
    traj = model._trajectory_loss(model._training_inputs(batch), torch.Generator().manual_seed(4), {})
    want = sei_label_term(traj, batch["sei_label"], model.config.norm_std, 0.01)
    assert logs["sei_label"] == pytest.approx(float(want), rel=1e-5)
    assert float(want) != pytest.approx(float(sei_label_term(traj, batch["sei_label"], model.config.norm_std)))
    lab = torch.zeros(1, 3, 8)                                                         # no film at all
    traj0 = {"sei": torch.full((1, 3, 8), 1e-4), "idx": torch.tensor([[0, 1, 2]]), "taus": torch.tensor([[0, .5, 1]])}
    for std in (1.0, 0.1):        # the same film in AU: sei (z-units) = 1e-4 AU / std
        t = sei_label_term({**traj0, "sei": traj0["sei"] / std}, lab, std, 0.01)
        assert float(t) == pytest.approx(1e-8 / 1e-10, rel=1e-5)


def test_fitted_labels_equal_the_cached_labels(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("ABCC_DATA_DIR", str(tmp_path))
    rows = [3, 0, 7]
    torch.testing.assert_close(fitted_labels(ds, rows), sei_labels(ds, rows))
    part = ds.split("system", "test")          # a split part: its items carry their rows of the whole
    labelled = SeiLabelled(part, ds, progress=False)
    items = [part[i] for i in (2, 0)]
    got = fitted_labels(ds, [int(it["index"]) for it in items])
    torch.testing.assert_close(got, torch.stack([labelled[i]["sei_label"] for i in (2, 0)]))
    assert [int(it["index"]) for it in items] != [2, 0]


@pytest.mark.parametrize("preset", ["tiny", "cpu_default", "gpu_default"])
def test_training_loss_runs_under_bf16_autocast(ds, preset):
    """The trainer runs CUDA steps under bf16 autocast (TrainConfig.amp): every preset's loss (with the
    SEI labels) runs under CPU autocast with finite loss and gradients. CPU autocast lowers fewer ops
    than CUDA's: the mass term's solve that failed on the first GPU run passes here either way, so
    test_project_out_takes_bf16_operands holds that case."""
    torch.manual_seed(0)
    model = ABCC(ABCCConfig.from_dataset(ds, "random", preset=preset))
    part = ds.split("random", "train")
    items = [part[i] for i in range(3)]
    labels = fitted_labels(ds, [int(it["index"]) for it in items])
    batch = {k: torch.stack([it[k] for it in items]) for k in ("static", "frames", "voltage", "time_s",
                                                              "composition", "electrode")}
    batch["sei_label"] = labels
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.training_loss(batch, generator=torch.Generator().manual_seed(1))
    loss.backward()
    assert loss.dtype == torch.float32 and bool(torch.isfinite(loss))
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def test_project_out_takes_bf16_operands():
    """Under CUDA autocast the normal equations came out bf16 and linalg.solve refused them; the
    projection now runs in float32 whatever it is given."""
    from abcc_fast.model.constraints import project_out

    g = torch.Generator().manual_seed(0)
    res, nui = torch.randn(4, 10, generator=g), torch.randn(4, 10, 3, generator=g)
    want = project_out(res, nui)
    got = project_out(res.bfloat16(), nui.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.05)
    assert float((torch.linalg.matrix_rank(nui) - 3).abs().sum()) == 0
    assert float(torch.einsum("bt,btj->bj", want, nui).abs().max()) < 1e-4   # orthogonal to the nuisance
