"""OpIRBench baselines (abcc_fast.model.baselines): every baseline at its tiny config on a small
generated dataset -- shapes, a finite loss that goes down on a fixed batch, exact save/load, the
trainer, `abcc train --model`, `abcc bench`'s loader, and clear errors for bad input."""
from __future__ import annotations

import json

import pytest
import torch

from abcc_fast import data, opirbench
from abcc_fast.model.baselines import BASELINES, BaselineModel, BaselinePredictor, get
from abcc_fast.train import TrainConfig, train
from abcc_fast.train.predict import load_model
from abcc_fast.train.trainer import collate

NAMES = ["mlp", "cnn", "gru", "patchtst", "dlinear", "convlstm", "simvp", "cfm", "meanflow_noise"]
DETERMINISTIC = [n for n in NAMES if not BASELINES[n].stochastic]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    path = data.generate(tmp_path_factory.mktemp("baselines") / "ds", n_samples=48, T=8, W=64, seed=0,
                         progress=False)
    return data.load(path)


@pytest.fixture(scope="module")
def batch(ds):
    train_part = ds.split("random", "train")
    return collate([train_part[i] for i in range(8)])


def _model(name, ds, seed=0):
    torch.manual_seed(seed)
    return get(name).from_dataset(ds, "random", preset="tiny")


def _predict(model, b, **kw):
    return model.predict(b["static"], b["voltage"], b["composition"], b["electrode"], time_s=b["time_s"], **kw)


def test_registry_names_and_cli_choices():
    from abcc_fast.apps.train_cli import MODEL_NAMES

    assert list(BASELINES) == NAMES
    assert list(MODEL_NAMES) == ["abcc", *NAMES]
    for name, cls in BASELINES.items():
        assert cls.model_type == name and issubclass(cls, BaselineModel)
    with pytest.raises(ValueError, match="unknown baseline 'lstm'.*mlp"):
        get("lstm")


@pytest.mark.parametrize("name", NAMES)
def test_presets_are_json_and_build(name, ds):
    cls = BASELINES[name]
    for preset in ("tiny", "cpu_default", "gpu_default"):
        cfg = cls.config_class.from_dataset(ds, "random", preset=preset)
        back = cls.config_class.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back.to_dict() == cfg.to_dict()
        assert (cfg.W, cfg.T) == (64, 8)
        assert cfg.norm_std == pytest.approx(ds.norm_stats("random")[1])
    with pytest.raises(ValueError, match="preset"):
        cls.config_class.from_dataset(ds, "random", preset="huge")


@pytest.mark.parametrize("name", NAMES)
def test_gpu_preset_is_larger_and_trains(name, ds, batch):
    """gpu_default (the GPU suite's size) is a real, bigger architecture: it builds, its loss is
    finite and differentiable, and it has more parameters than cpu_default (DLinear: as many)."""
    cls = BASELINES[name]
    n = {p: sum(q.numel() for q in cls.from_dataset(ds, "random", preset=p).parameters())
         for p in ("cpu_default", "gpu_default")}
    assert n["gpu_default"] >= n["cpu_default"] if name == "dlinear" else n["gpu_default"] > n["cpu_default"]
    torch.manual_seed(0)
    model = cls.from_dataset(ds, "random", preset="gpu_default")
    loss, _ = model.training_loss(batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_finite_loss(name, ds, batch):
    model = _model(name, ds)
    loss, logs = model.training_loss(batch, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert {"loss", "mse"} <= set(logs) and all(v == v for v in logs.values())
    loss.backward()
    # every parameter takes part (DDP without find_unused_parameters), and the gradient is not all zero
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())
    out = _predict(model.eval(), batch)
    assert tuple(out["frames"].shape) == (8, 8, 64) and out["frames"].dtype == torch.float32
    assert torch.isfinite(out["frames"]).all()
    if name in DETERMINISTIC:  # zero-initialised heads: an untrained baseline is the persistence reference
        torch.testing.assert_close(out["frames"], batch["static"][:, None].expand(-1, 8, -1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases_on_a_fixed_batch(name, ds, batch):
    model = _model(name, ds).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def mse():  # the same draws before and after (generative baselines draw t and noise)
        with torch.no_grad():
            return model.training_loss(batch, generator=torch.Generator().manual_seed(123))[1]["mse"]

    before = mse()
    for step in range(30):
        loss, _ = model.training_loss(batch, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mse()
    assert after < 0.9 * before, f"{name}: mse {before:.4g} -> {after:.4g} after 30 steps"


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, ds, batch, tmp_path):
    model = _model(name, ds)
    with torch.no_grad():  # move off the zero init so the weights matter
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["model_type"] == name
    for loader in (BaselineModel, BASELINES[name]):
        loaded = loader.from_pretrained(tmp_path / "m")
        assert type(loaded) is BASELINES[name]
        assert torch.equal(_predict(loaded, batch)["frames"], _predict(model, batch)["frames"])
    other = next(c for n, c in BASELINES.items() if n != name)
    with pytest.raises(ValueError, match=f"holds a '{name}' model"):
        other.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize("name", ["cfm", "meanflow_noise"])
def test_generative_sampling_is_seeded(name, ds, batch):
    model = _model(name, ds).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    a = _predict(model, batch, generator=torch.Generator().manual_seed(5))["frames"]
    b = _predict(model, batch, generator=torch.Generator().manual_seed(5))["frames"]
    c = _predict(model, batch, generator=torch.Generator().manual_seed(6))["frames"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    out = _predict(model, batch, samples=3)
    assert tuple(out["samples"].shape) == (3, 8, 8, 64) and tuple(out["std"].shape) == (8, 8, 64)
    assert (out["std"] > 0).any()


def test_meanflow_jvp_matches_finite_differences(ds, batch):
    """du/dr along the path (tangent (v, 1, 0) on (z, r, tau)) against a central difference, float64."""
    model = _model("meanflow_noise", ds).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    b = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
    cond = model.conditioning(b["voltage"], b["composition"], b["electrode"], b["time_s"])
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 8, 64, generator=g, dtype=torch.float64)
    v = torch.randn(8, 8, 64, generator=g, dtype=torch.float64)
    r, tau = torch.full((8,), 0.3, dtype=torch.float64), torch.full((8,), 0.8, dtype=torch.float64)
    static_z = model._z(b["static"])
    jvp = model.du_dr(z, static_z, r, tau, v, cond)
    h = 1e-5
    with torch.no_grad():
        fd = (model.average_velocity(z + h * v, static_z, r + h, tau, cond)
              - model.average_velocity(z - h * v, static_z, r - h, tau, cond)) / (2 * h)
    assert jvp.abs().max() > 0
    torch.testing.assert_close(jvp, fd, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("name", ["gru", "cfm"])
def test_trainer_bench_and_predict_loader(name, ds, tmp_path):
    result = train(_model(name, ds), ds, split="random", out_dir=tmp_path / "run", progress=False,
                   config=TrainConfig.tiny(steps=4, eval_every=2, checkpoint_every=4, tensorboard=False,
                                           device="cpu"))
    assert result.steps_done == 4 and result.train_loss == result.train_loss
    model, info = load_model(result.model_dir)                     # abcc predict's loader
    assert type(model) is BASELINES[name] and not model.training and info["T"] == 8
    from abcc_fast.apps.bench_cli import load_model_predictor

    predictor = load_model_predictor(str(result.model_dir))        # abcc bench's loader
    assert isinstance(predictor, BaselinePredictor) and predictor.name == name
    res = opirbench.evaluate(predictor, ds, "random", "test", metrics=["mae", "mse"], progress=False)
    assert res.n_samples > 0 and all(v == v for v in res.metrics.values())
    # abcc predict end to end: CSV in, frames on disk (the model's own prediction for that sample)
    from abcc_fast.train.predict import predict_to_dir

    x = ds.split("random", "test")[0]
    comps, elecs = info["components"], info["electrodes"]
    names = [c if isinstance(c, str) else c["name"] for c in comps]
    composition = ",".join(f"{n}={float(f)}" for n, f in zip(names, x["composition"]) if f > 0)
    (tmp_path / "s.csv").write_text("wavenumber,absorbance\n" + "".join(
        f"{float(w)},{float(a)}\n" for w, a in zip(ds.wavenumber, x["static"])))
    (tmp_path / "v.csv").write_text("time_s,voltage\n" + "".join(
        f"{float(t)},{float(v)}\n" for t, v in zip(x["time_s"], x["voltage"])))
    predict_to_dir(result.model_dir, tmp_path / "s.csv", tmp_path / "v.csv", composition,
                   elecs[int(x["electrode"])], tmp_path / "pred", figures=False)
    from safetensors.torch import load_file

    frames = load_file(str(tmp_path / "pred" / "frames.safetensors"))["frames"]
    direct = model.predict(x["static"][None], x["voltage"][None], x["composition"][None], x["electrode"][None],
                           time_s=x["time_s"][None])["frames"][0]
    torch.testing.assert_close(frames, direct, atol=1e-4, rtol=1e-4)


def test_cli_train_model_flag(ds, tmp_path):
    from abcc_fast.cli import main

    rc = main(["train", "--model", "dlinear", "--preset", "tiny", "--data", str(ds.root), "--steps", "3",
               "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["model_type"] == "dlinear"


def test_bad_inputs_say_what_is_wrong(ds, batch, tmp_path):
    model = _model("mlp", ds).eval()
    s, v, c, e = batch["static"], batch["voltage"], batch["composition"], batch["electrode"]
    with pytest.raises(ValueError, match=r"MLPBaseline.predict: static has 32 wavenumber points.*W=64"):
        model.predict(s[:, :32], v, c, e)
    with pytest.raises(ValueError, match="wavenumber grid .* differs from the model's"):
        model.predict(s, v, c, e, wavenumber=ds.wavenumber + 5.0)
    bad = s.clone()
    bad[2, 7] = float("nan")
    with pytest.raises(ValueError, match="static contains 1 NaN/Inf values .*row 2"):
        model.predict(bad, v, c, e)
    with pytest.raises(ValueError, match="exactly T=8 frames"):
        model.predict(s, v[:, :5], c, e)
    with pytest.raises(ValueError, match="deterministic"):
        model.predict(s, v, c, e, samples=2)
    nan_batch = dict(batch, frames=batch["frames"].clone())
    nan_batch["frames"][0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match="'frames' contains NaN/Inf"):
        model.training_loss(nan_batch)
    with pytest.raises(ValueError, match="grid W=64"):
        model.training_loss(dict(batch, static=s[:, :32], frames=batch["frames"][..., :32]))
    # recurrent baselines roll out any number of frames
    out = _model("gru", ds).predict(s, v[:, :5], c, e)
    assert tuple(out["frames"].shape) == (8, 5, 64)
    not_baseline = tmp_path / "abcc_like"
    not_baseline.mkdir()
    (not_baseline / "config.json").write_text(json.dumps({"model_type": "abcc", "config": {}}))
    (not_baseline / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a baseline config"):
        BaselineModel.from_pretrained(not_baseline)

