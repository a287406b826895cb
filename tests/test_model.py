"""ABCC (abcc_fast.model): chemical-flow loss, JVP, predict, persistence, drop-in backends, errors.

Batches are built from smooth random spectra (bands that deplete, shift and grow over tau), so the
tests need neither the simulator nor a GPU. Runtime: a few seconds on 2 CPU cores.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch

from abcc_fast.model import ABCC, ABCCConfig, load_predictor
from abcc_fast.model.backbone import context_size, sei_template_products, state_size
from abcc_fast.model.series import interpolate, time_derivative

W, T, C, E, K = 64, 6, 3, 2, 2
WN = [700.0 + 10.0 * i for i in range(W)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread avoids OpenMP spin-waits on a shared 2-core machine (10x faster)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_config(**kw):
    base = dict(W=W, T=T, n_components=C, n_electrodes=E, n_reactions=K, wavenumber=WN,
                marker_windows={"band_900": [850.0, 980.0], "band_1200": [1150.0, 1300.0]},
                components=["EC", "DMC", "LiPF6"], electrodes=["graphite", "Cu"],
                norm_mean=0.1, norm_std=0.2, volt_mean=1.5, volt_std=1.0)
    base.update(kw)
    return ABCCConfig.tiny(**base)


def make_batch(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    nu = torch.tensor(WN)
    tau = torch.linspace(0, 1, T)
    amp = 0.2 + 0.3 * torch.rand(B, 1, generator=g)
    center = 900.0 + 20 * torch.rand(B, 1, generator=g)
    def band(c, a, width=30.0):
        return a[..., None] * torch.exp(-0.5 * ((nu - c[..., None]) / width) ** 2)
    solvent = band(center + 3 * tau, amp * (1 - 0.3 * tau))                     # [B, T, W]
    sei = band(torch.full((B, T), 1230.0), 0.1 * tau.expand(B, T) ** 1.5)       # growing SEI band
    frames = solvent + sei + 0.02
    static = frames[:, 0] + 0.002 * torch.randn(B, W, generator=g)
    voltage = 3.0 - 2.5 * tau.expand(B, T)
    composition = torch.softmax(torch.randn(B, C, generator=g), -1)
    electrode = torch.randint(0, E, (B,), generator=g)
    return {"static": static, "frames": frames, "voltage": voltage, "time_s": 100 * tau.expand(B, T),
            "composition": composition, "electrode": electrode, "system": torch.zeros(B, dtype=torch.long)}


def randomised(model, scale=0.1, seed=0):
    """Non-zero weights everywhere (a fresh ABCC outputs exactly 0: zero-initialised heads)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def test_time_helpers():
    series = torch.tensor([[0.0, 1.0, 4.0, 9.0]])                      # x = (3 tau)^2 at tau = k/3
    d = time_derivative(series)
    assert d[0].tolist() == pytest.approx([3.0, 6.0, 12.0, 15.0])  # central (x_{k+1} - x_{k-1}) / (2/3), one-sided ends
    assert interpolate(series, torch.tensor([[0.0, 0.5, 1.0]]))[0].tolist() == pytest.approx([0.0, 2.5, 9.0])


def test_jvp_equals_finite_difference_of_the_network():
    """d/dr u along (x + s v, r + s, tau, s(r) + s ds/dr) by the JVP == central finite difference
    (s(r): the protocol state, V and the history exposures)."""
    torch.manual_seed(0)
    model = randomised(ABCC(make_config())).double()
    B = 3
    n_state, n_ctx = state_size(model.config), context_size(model.config)
    x, static, v = torch.randn(B, W).double(), torch.randn(B, W).double(), torch.randn(B, W).double()
    r, tau = torch.tensor([0.1, 0.3, 0.5]).double(), torch.tensor([0.6, 0.9, 0.7]).double()
    vr, vtau, dv = torch.rand(B, n_state).double(), torch.rand(B, n_state).double(), torch.randn(B, n_state).double()
    comp, elec = torch.rand(B, n_ctx).double(), torch.tensor([0, 1, 0])   # context: composition, duration, profile
    du_dr = model._total_velocity_jvp(x, static, r, tau, vr, vtau, comp, elec, v=v, dstate_dr=dv)
    h = 1e-5

    def u(s):
        us, uz, ub = model.velocity(x + s * v, static, r + s, tau, vr + s * dv, vtau, comp, elec)
        return us + uz + ub
    with torch.no_grad():
        fd = (u(h) - u(-h)) / (2 * h)
    assert du_dr.abs().max() > 1e-3
    torch.testing.assert_close(du_dr, fd, rtol=1e-5, atol=1e-7)


def test_source_jvp_for_all_taus_equals_finite_difference():
    """The training JVP (one forward-mode pass per source for all decoded taus) == the central finite
    difference of the decoded u along (x_r + s v, r + s, s(r) + s ds/dr), tau fixed."""
    torch.manual_seed(0)
    model = randomised(ABCC(make_config())).double()
    B, Q = 3, 5
    n_state, n_ctx = state_size(model.config), context_size(model.config)
    x, static, v = torch.randn(B, W).double(), torch.randn(B, W).double(), torch.randn(B, W).double()
    r = torch.tensor([0.1, 0.3, 0.5]).double()
    tau = r[:, None] + torch.rand(B, Q).double() * (1 - r[:, None])
    sr, dsr, stau = torch.rand(B, n_state).double(), torch.randn(B, n_state).double(), torch.rand(B, Q, n_state).double()
    comp, elec = torch.rand(B, n_ctx).double(), torch.tensor([0, 1, 0])
    du_dr = model._source_jvp(x, static, r, sr, comp, elec, tau, stau, v, dsr)
    h = 1e-5

    def u(s):
        enc = model.backbone.encode(x + s * v, static, r + s, sr + s * dsr, comp, elec)
        return sum(model.backbone.decode(enc, tau, stau))
    with torch.no_grad():
        fd = (u(h) - u(-h)) / (2 * h)
    assert du_dr.shape == (B, Q, W) and du_dr.abs().max() > 1e-3
    torch.testing.assert_close(du_dr, fd, rtol=1e-5, atol=1e-7)


def test_decoding_many_taus_equals_one_query_per_tau():
    """Encode once, decode Q taus == Q separate single-tau network queries (the velocity API)."""
    torch.manual_seed(0)
    model = randomised(ABCC(make_config())).double()
    B, Q = 2, 4
    n_state, n_ctx = state_size(model.config), context_size(model.config)
    x, static = torch.randn(B, W).double(), torch.randn(B, W).double()
    r = torch.tensor([0.0, 0.25]).double()
    tau = torch.rand(B, Q).double()
    sr, stau = torch.rand(B, n_state).double(), torch.rand(B, Q, n_state).double()
    comp, elec = torch.rand(B, n_ctx).double(), torch.tensor([1, 0])
    with torch.no_grad():
        enc = model.backbone.encode(x, static, r, sr, comp, elec)
        many = model.backbone.decode(enc, tau, stau)
        for q in range(Q):
            one = model.velocity(x, static, r, tau[:, q], sr, stau[:, q], comp, elec)
            for a, b in zip(many, one):
                torch.testing.assert_close(a[:, q], b, rtol=1e-10, atol=1e-12)


def test_identity_target_uses_the_jvp_and_the_denoised_velocity():
    """jvp_mode="none" (du/dr = 0) and identity_target="raw" each change the identity loss: the JVP
    and the low-rank velocity are really used."""
    batch = make_batch(4)

    def identity(**kw):
        torch.manual_seed(0)
        model = randomised(ABCC(make_config(mf_pairs=2, w_identity=1.0, adaptive_c=100.0, **kw)))
        return model.training_loss(batch, generator=torch.Generator().manual_seed(1))[1]["identity"]
    full = identity(jvp_mode="full", identity_rank=1)      # the test frames are smooth: rank 1 drops detail
    assert math.isfinite(full)
    assert identity(jvp_mode="none", identity_rank=1) != pytest.approx(full, rel=1e-4)
    assert identity(identity_target="raw") != pytest.approx(full, rel=1e-4)


def test_lowrank_frames_keeps_low_rank_changes_and_drops_noise():
    from abcc_fast.model.series import lowrank_frames
    g = torch.Generator().manual_seed(0)
    B, Tn, Wn, k = 6, 8, 40, 3
    static = torch.randn(B, Wn, generator=g)
    change = torch.randn(B * Tn, k, generator=g) @ torch.randn(k, Wn, generator=g)
    frames = static[:, None] + change.view(B, Tn, Wn)
    torch.testing.assert_close(lowrank_frames(frames, static, k), frames, rtol=1e-5, atol=1e-5)
    noisy = frames + 0.1 * torch.randn(B, Tn, Wn, generator=g)
    den = lowrank_frames(noisy, static, k)
    assert (den - frames).pow(2).mean() < 0.3 * (noisy - frames).pow(2).mean()


def test_training_loss_parts_and_gradients_reach_every_parameter():
    """All constraint terms are active and every parameter gets a gradient (DDP needs no
    find_unused_parameters); forward(batch) is training_loss(batch) (the DDP entry)."""
    torch.manual_seed(0)
    model = randomised(ABCC(make_config(w_identity=0.1)), scale=0.05)
    batch = make_batch(4)
    loss, parts = model(batch, generator=torch.Generator().manual_seed(0))
    for key in ("disp_traj", "disp_pairs", "identity", "sei_nonneg", "sei_growth", "sei_sparsity", "solvent_new_bands", "smooth",
                "mass", "peak_drift", "peak_accel", "loss"):
        assert key in parts and math.isfinite(parts[key]), key
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    loss2, _ = model.training_loss(batch, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, loss2)


def test_switching_constraints_off_removes_their_terms():
    off = {k: 0.0 for k in ("w_sei_nonneg", "w_sei_growth", "w_sei_sparsity", "w_mass", "w_peak_drift", "w_peak_accel", "w_smooth",
                            "w_solvent_new_bands", "w_identity")}
    model = ABCC(make_config(**off))
    assert model.extent_head is None
    _, parts = model.training_loss(make_batch(2))
    assert set(parts) == {"disp_traj", "disp_pairs", "loss"}


def test_tiny_model_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = ABCC(make_config(w_identity=0.0, mf_pairs=1))
    batch = make_batch(4, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = None
    for step in range(200):
        loss, parts = model.training_loss(batch, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if first is None:
            first = parts["disp_traj"]
    _, parts = model.training_loss(batch, generator=torch.Generator().manual_seed(0))
    assert parts["disp_traj"] < first / 10, (first, parts["disp_traj"])


def test_predict_shapes_streams_samples():
    torch.manual_seed(0)
    model = randomised(ABCC(make_config()))
    b = make_batch(3)
    out = model.predict(b["static"], b["voltage"], b["composition"], b["electrode"], return_streams=True,
                        samples=4, noise=0.01, generator=torch.Generator().manual_seed(0))
    assert all(out[k].shape == (3, T, W) for k in ("frames", "solvent", "sei", "baseline"))
    assert out["samples"].shape == (4, 3, T, W) and out["std"].shape == (3, T, W)
    torch.testing.assert_close(out["frames"], out["solvent"] + out["sei"] + out["baseline"])
    torch.testing.assert_close(out["frames"][:, 0], b["static"])        # tau = 0: the static spectrum
    assert (out["sei"] >= 0).all() and (out["sei"][:, 0] == 0).all()
    assert (out["std"][:, 1:] > 0).any()
    plain = model.predict(b["static"], b["voltage"], b["composition"], b["electrode"])
    assert set(plain) == {"frames"}
    torch.testing.assert_close(plain["frames"], out["frames"])          # samples do not move the mean call
    # chunked network calls give the same frames
    model.config.predict_chunk = 5
    torch.testing.assert_close(model.predict(b["static"], b["voltage"], b["composition"], b["electrode"])["frames"],
                               plain["frames"], rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = randomised(ABCC(make_config()))
    b = make_batch(2)
    out = model.predict(b["static"], b["voltage"], b["composition"], b["electrode"], return_streams=True)
    path = model.save_pretrained(tmp_path / "abcc")
    model.save_pretrained(tmp_path / "abcc")                            # overwrite in place, atomically
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    loaded = ABCC.from_pretrained(path)
    assert loaded.config == model.config
    again = loaded.predict(b["static"], b["voltage"], b["composition"], b["electrode"], return_streams=True)
    for k in out:
        assert torch.equal(out[k], again[k]), k
    predictor = load_predictor(str(path))
    res = predictor({**b, "wavenumber": torch.tensor(WN)})
    with_time = loaded.predict(b["static"], b["voltage"], b["composition"], b["electrode"], time_s=b["time_s"])
    assert torch.equal(res["frames"], with_time["frames"]) and "sei" in res
    assert not torch.equal(with_time["frames"], out["frames"])          # the protocol duration conditions
    with pytest.raises(FileNotFoundError, match="config.json"):
        ABCC.from_pretrained(tmp_path)


def test_reference_backends_are_a_drop_in():
    """The fused backends (triton: compiled on a GPU, else under the interpreter on CPU tensors)
    give the reference's outputs."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    ref = randomised(ABCC(make_config(ops_backend="reference", attention_backend="reference"))).to(dev)
    fused = ABCC(make_config(ops_backend="triton", attention_backend="triton")).to(dev)
    fused.load_state_dict(ref.state_dict())
    auto = ABCC(make_config()).to(dev)
    auto.load_state_dict(ref.state_dict())
    b = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in make_batch(2).items()}
    args = (b["static"], b["voltage"], b["composition"], b["electrode"])
    want = ref.predict(*args, return_streams=True)
    for m in (fused, auto):
        got = m.predict(*args, return_streams=True)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)
    loss_ref, _ = ref.training_loss(b, generator=torch.Generator().manual_seed(0))
    loss_fused, _ = fused.training_loss(b, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss_fused, loss_ref, rtol=1e-4, atol=1e-6)


def test_config_json_round_trip_and_presets():
    cfg = make_config()
    assert ABCCConfig.from_dict(__import__("json").loads(cfg.to_json())) == cfg
    for name in ("tiny", "cpu_default", "gpu_default"):
        c = ABCCConfig.preset(name)
        assert (c.dim // c.heads) in (32, 64, 128)          # the fused attention's head sizes
    with pytest.raises(ValueError, match="multiple of patch"):
        make_config(patch=7)
    with pytest.raises(ValueError, match="unknown ABCC preset"):
        ABCCConfig.preset("huge")


@pytest.mark.parametrize("case, match", [
    ("wrong_W", "wavenumber points but this model was trained on a grid of W=64"),
    ("wrong_grid", "differs from the model's"),
    ("nan_static", "static contains 1 NaN/Inf"),
    ("inf_voltage", "voltage contains 1 NaN/Inf"),
    ("unknown_electrode", "unknown electrode index 7"),
    ("composition_size", "composition has 4 entries but the model knows 3 components \\(EC, DMC, LiPF6\\)"),
    ("batch_mismatch", "voltage must be \\[B, T\\] with B=2"),
])
def test_bad_input_to_predict(case, match):
    model = ABCC(make_config())
    b = make_batch(2)
    args = dict(static=b["static"], voltage=b["voltage"], composition=b["composition"], electrode=b["electrode"])
    kw = {}
    if case == "wrong_W":
        args["static"] = torch.rand(2, 128)
    elif case == "wrong_grid":
        kw["wavenumber"] = torch.tensor(WN) + 3.0
    elif case == "nan_static":
        args["static"] = args["static"].clone()
        args["static"][1, 5] = float("nan")
    elif case == "inf_voltage":
        args["voltage"] = args["voltage"].clone()
        args["voltage"][0, 2] = float("inf")
    elif case == "unknown_electrode":
        args["electrode"] = torch.tensor([0, 7])
    elif case == "composition_size":
        args["composition"] = torch.rand(2, 4)
    elif case == "batch_mismatch":
        args["voltage"] = torch.rand(3, T)
    with pytest.raises(ValueError, match=match):
        model.predict(**args, **kw)


def test_from_dataset_and_a_collated_simulator_batch(tmp_path):
    """Config from an OpIRSim dataset; training_loss on default-collated samples (truth fields present
    but unused); predict through the OpIRBench loader with the dataset's batch keys."""
    from torch.utils.data import default_collate

    import abcc_fast.data as data
    ds = data.load(data.generate(tmp_path / "ds", n_samples=24, T=5, W=64, seed=3, progress=False))
    cfg = ABCCConfig.from_dataset(ds, "random", preset="tiny")
    assert (cfg.W, cfg.T, cfg.n_components) == (64, 5, ds.composition.shape[1])
    assert cfg.n_electrodes == len(ds.manifest["electrodes"]) and cfg.wavenumber == ds.wavenumber.tolist()
    model = ABCC(cfg)
    train = ds.split("random", "train")
    batch = default_collate([train[i] for i in range(4)])
    loss, parts = model.training_loss(batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and parts["disp_traj"] > 0
    loss.backward()
    path = model.save_pretrained(tmp_path / "m")
    out = load_predictor(str(path))({"static": train.static[:3], "voltage": train.voltage[:3],
                                     "time_s": train.time_s[:3], "composition": train.composition[:3],
                                     "electrode": train.electrode[:3], "system": train.system[:3],
                                     "wavenumber": ds.wavenumber})
    assert out["frames"].shape == (3, 5, 64)


def test_protocol_state_exposure_and_context():
    """State columns: V, asinh(dV/dt / 0.1 V/h), log(1 + hours below each level), log(1 + elapsed
    hours); the context holds the resampled voltage profile."""
    model = ABCC(make_config(history_levels=[1.0, 0.5], history_width=0.01, profile_points=4))
    hours = torch.arange(T, dtype=torch.float64)                       # one frame per hour
    voltage = torch.where(hours < 2, 2.0, 0.7).double()[None]          # 2 V for 2 h, then 0.7 V
    s = model.protocol_state(voltage, time_s=3600.0 * hours[None])
    assert s.shape == (1, T, 1 + 1 + 2 + 1)
    torch.testing.assert_close(s[0, :, 0], voltage[0])
    # dV/dt by central differences (-0.65 V/h at frames 1 and 2), smoothed [1, 2, 1] / 4, asinh(/0.1)
    rate = torch.tensor([0.0, -0.65, -0.65, 0.0, 0.0, 0.0]).double()
    pad = torch.cat([rate[:1], rate, rate[-1:]])
    smooth = 0.25 * pad[:-2] + 0.5 * pad[1:-1] + 0.25 * pad[2:]
    torch.testing.assert_close(s[0, :, 1], torch.asinh(smooth / 0.1))
    below_1v = torch.tensor([0.0, 0.0, 0.5] + [0.5 + k for k in range(1, T - 2)]).double()   # trapezoid edge
    torch.testing.assert_close(s[0, :, 2], below_1v.log1p(), atol=1e-6, rtol=0)
    assert s[0, :, 3].abs().max() < 1e-6                                # never below 0.5 V
    torch.testing.assert_close(s[0, :, 4], hours.log1p())
    ctx = model.context(torch.rand(1, C).double(), 3600.0 * hours[None], voltage)
    assert ctx.shape == (1, C + 1 + 4)
    torch.testing.assert_close(ctx[0, -4], torch.tensor(0.5).double())  # (2 V - mean 1.5) / std 1
    with pytest.raises(ValueError, match="pass voltage"):
        model.context(torch.rand(1, C).double(), None, None)


def test_sei_stream_in_the_span_of_product_templates():
    """sei_basis='templates': every SEI velocity is a combination of the film products' templates
    (so it cannot paint a sharp solvent band); without a grid the config is refused clearly."""
    grid = [700.0 + 1200.0 * i / 127 for i in range(128)]
    cfg = make_config(W=128, wavenumber=grid, sei_basis="templates", marker_windows={})
    model = randomised(ABCC(cfg)).double()
    A = model.backbone.head_sei.sei_templates.double()                 # [M, W]
    assert A.shape[1] == 128 and A.shape[0] >= 10
    B = 3

    def u_sei(m):
        g = torch.Generator().manual_seed(3)
        n_state, n_ctx = state_size(m.config), context_size(m.config)
        args = (torch.randn(B, 128, generator=g).double(), torch.randn(B, 128, generator=g).double(),
                torch.rand(B, generator=g).double(), torch.rand(B, generator=g).double(),
                torch.rand(B, n_state, generator=g).double(), torch.rand(B, n_state, generator=g).double(),
                torch.rand(B, n_ctx, generator=g).double(), torch.tensor([0, 1, 0]))
        with torch.no_grad():
            return m.velocity(*args)[1]

    def span_residual(z):
        return (A.T @ torch.linalg.lstsq(A.T, z.T).solution).T - z

    z = u_sei(model)
    assert z.abs().max() > 1e-4 and span_residual(z).abs().max() < 1e-8 * float(z.abs().max())
    free = randomised(ABCC(make_config(W=128, wavenumber=grid, marker_windows={}))).double()
    zf = u_sei(free)
    assert span_residual(zf).abs().max() > 1e-2 * float(zf.abs().max())   # the free head is not in that span
    with pytest.raises(ValueError, match="needs the model grid"):
        ABCC(ABCCConfig.tiny(W=64, T=4, n_components=3, n_electrodes=2, n_reactions=2, sei_basis="templates"))


def test_physics_solvent_basis_spans_the_simulated_solvent_change(tmp_path):
    """solvent_basis='physics': the electrolyte templates plus the static spectrum times nu', nu'^2
    span what OpIRSim's solvent stream does over a formation cycle (speciation, gain drift, the
    film's displacement), and every solvent velocity of the model lies in that span."""
    import abcc_fast.data as data
    from abcc_fast.model.backbone import solvent_template_matrix

    ds = data.load(data.generate(tmp_path / "ds", n_samples=12, T=6, W=128, seed=5, progress=False))
    cfg = ABCCConfig.from_dataset(ds, "random", preset="tiny", solvent_basis="physics", basis_rank=0)
    model = randomised(ABCC(cfg)).double()
    head = model.backbone.head_solvent
    A = solvent_template_matrix(cfg)
    static = torch.as_tensor(ds.static, dtype=torch.float64)
    z_static = (static - cfg.norm_mean) / cfg.norm_std
    solvent = torch.as_tensor(ds.solvent, dtype=torch.float64)
    worst = 0.0
    for b in range(static.shape[0]):
        basis = torch.cat([A, head.film_rows(z_static[b:b + 1])[0].double()])       # [E + 2, W]
        change = (solvent[b, 1:] - solvent[b, :1]).T                                # [W, T - 1]
        fit = basis.T @ torch.linalg.lstsq(basis.T, change).solution
        worst = max(worst, float((fit - change).pow(2).sum() / change.pow(2).sum().clamp_min(1e-30)))
    assert worst < 1e-3, worst                                   # measured 1e-4; without the film rows 1e-2
    B = 3
    g = torch.Generator().manual_seed(1)
    x, s = z_static[:B] + 0.1 * torch.randn(B, 128, generator=g, dtype=torch.float64), z_static[:B]
    n_state, n_ctx = state_size(cfg), context_size(cfg)
    with torch.no_grad():
        us = model.velocity(x, s, torch.rand(B, generator=g).double(), torch.rand(B, generator=g).double(),
                            torch.rand(B, n_state, generator=g).double(), torch.rand(B, n_state, generator=g).double(),
                            torch.rand(B, n_ctx, generator=g).double(), torch.zeros(B, dtype=torch.long))[0]
    assert us.abs().max() > 1e-4
    A = head.solvent_templates.double()                          # the buffer's float32 values
    for b in range(B):
        basis = torch.cat([A, head.film_rows(s[b:b + 1])[0].double()])
        fit = basis.T @ torch.linalg.lstsq(basis.T, us[b:b + 1].T).solution
        assert (fit.T - us[b]).abs().max() < 1e-8 * float(us[b].abs().max())
    with pytest.raises(ValueError, match="needs the model grid"):
        ABCC(ABCCConfig.tiny(W=64, T=4, n_components=3, n_electrodes=2, n_reactions=2, solvent_basis="physics"))


def test_film_constant_and_clean_static_rows(tmp_path):
    """film_constant: the physics head's film rows are the static spectrum times 1, nu', nu'^2;
    clean_static adds a row holding the static spectrum's part outside the span of the templates and
    the baseline polynomials (orthogonal to them; the rest of the static spectrum lies in it). The
    head's output is exactly templates and rows weighted by its coefficients. A config saved before
    the options loads without them."""
    import abcc_fast.data as data
    from abcc_fast.model.backbone import legendre_basis

    ds = data.load(data.generate(tmp_path / "ds", n_samples=6, T=5, W=128, seed=2, progress=False))
    cfg = ABCCConfig.from_dataset(ds, "random", preset="tiny", solvent_basis="physics", basis_rank=0,
                                  film_constant=True, clean_static=True)
    head = randomised(ABCC(cfg)).double().backbone.head_solvent
    s = (torch.as_tensor(ds.static[:3], dtype=torch.float64) - cfg.norm_mean) / cfg.norm_std
    rows = head.film_rows(s)                                                 # [3, 4, W]
    raw = (s * cfg.norm_std + cfg.norm_mean)[:, None] * head.film_weights.double()
    assert rows.shape[1] == 4 and torch.equal(head.film_weights[0], torch.ones(cfg.W))
    torch.testing.assert_close(rows[:, :3], raw / raw.abs().amax(-1, keepdim=True), rtol=1e-5, atol=1e-6)
    A = head.solvent_templates.double()
    span = torch.cat([A, legendre_basis(cfg.W, cfg.baseline_basis).double()])
    outside = rows[:, 3]
    assert float((outside @ span.T).abs().max()) < 1e-4 * float(outside.abs().max() * span.abs().max())
    fit = span.T @ torch.linalg.lstsq(span.T, (s - outside).T).solution     # the rest of static is in the span
    torch.testing.assert_close(fit.T, s - outside, rtol=0, atol=1e-4)
    tokens = torch.randn(3, head.n_tokens or 1, cfg.dim, dtype=torch.float64)
    e = torch.randn(3, 2, cfg.dim, dtype=torch.float64)
    with torch.no_grad():
        out, _ = head(tokens, e, s)
        coef = head.coef(head.readout(tokens, e, head.n_tokens)[0])
    E = A.shape[0]
    expected = coef[..., :E] @ A + torch.einsum("bqk,bkw->bqw", coef[..., E:E + 4], rows)
    torch.testing.assert_close(out, expected)
    saved = cfg.to_dict()
    saved.pop("film_constant"), saved.pop("clean_static")
    old = ABCCConfig.from_dict(saved)
    assert not old.film_constant and not old.clean_static
    with pytest.raises(ValueError, match="clean_static"):
        dataclasses.replace(cfg, solvent_basis="free").validate()


def test_solvent_shift_rows_are_the_templates_derivatives(tmp_path):
    """solvent_shift_rows: the physics head also holds d/dnu of every electrolyte template (unit peak),
    owned by the same component; a band shifted by a small fraction of a grid step then lies in the
    span to first order (without the rows it does not). The static spectrum's clean row is unchanged."""
    import abcc_fast.data as data

    ds = data.load(data.generate(tmp_path / "ds", n_samples=6, T=5, W=512, seed=2, progress=False))
    kw = dict(preset="tiny", solvent_basis="physics", basis_rank=0, film_constant=True, clean_static=True)
    plain = ABCC(ABCCConfig.from_dataset(ds, "random", **kw)).backbone.head_solvent
    head = ABCC(ABCCConfig.from_dataset(ds, "random", solvent_shift_rows=True, **kw)).backbone.head_solvent
    A = plain.solvent_templates.double()
    E, W = A.shape
    both = head.solvent_templates.double()
    assert both.shape == (2 * E, W) and torch.equal(head.solvent_templates[:E], plain.solvent_templates)
    d = torch.gradient(A, dim=1)[0]
    torch.testing.assert_close(both[E:], d / d.abs().amax(1, keepdim=True), rtol=1e-5, atol=1e-6)
    assert torch.equal(head.owners, torch.cat([plain.owners, plain.owners]))
    s = torch.as_tensor(ds.static[:2], dtype=torch.float64)
    torch.testing.assert_close(head.film_rows(s), plain.film_rows(s))
    # the strongest band shifted by 0.05 grid steps (band-limited shift), minus the band itself
    k = int(A.abs().amax(1).argmax())
    phase = np.exp(-2j * np.pi * np.fft.rfftfreq(W) * 0.05)
    change = torch.from_numpy(np.fft.irfft(np.fft.rfft(A[k].numpy()) * phase, W)) - A[k]

    def left(rows):
        fit = rows.T @ torch.linalg.lstsq(rows.T, change[:, None]).solution[:, 0]
        return float((change - fit).norm() / change.norm())
    assert left(both) < 0.1 and left(A) > 0.5                     # measured 0.05 and 0.82
    with pytest.raises(ValueError, match="solvent_shift_rows"):
        ABCCConfig.tiny(solvent_shift_rows=True).validate()


def test_solvent_present_only_uses_the_cells_own_components(tmp_path):
    """solvent_present_only: the rows of the components a cell holds or its reactions make (plus the
    soluble products and the film rows) still span OpIRSim's solvent change of that cell, and the
    model's solvent velocity lies in that smaller span: an absent component's bands (which overlap the
    SEI products') take no part."""
    import abcc_fast.data as data
    from abcc_fast.model.backbone import solvent_template_owners

    ds = data.load(data.generate(tmp_path / "ds", n_samples=12, T=6, W=128, seed=5, progress=False))
    cfg = ABCCConfig.from_dataset(ds, "random", preset="tiny", solvent_basis="physics", basis_rank=0,
                                  solvent_present_only=True)
    model = randomised(ABCC(cfg)).double()
    head = model.backbone.head_solvent
    owners = solvent_template_owners(cfg)
    assert torch.equal(head.owners, owners) and (owners >= 0).any() and (owners < 0).any()
    comp = torch.as_tensor(ds.composition, dtype=torch.float64)
    static = torch.as_tensor(ds.static, dtype=torch.float64)
    z_static = (static - cfg.norm_mean) / cfg.norm_std
    solvent = torch.as_tensor(ds.solvent, dtype=torch.float64)
    A = head.solvent_templates.double()
    mask = head.row_mask(model.backbone.reach(comp > 0)[0]).bool()
    assert (~mask).any(dim=1).all()                  # every cell lacks some component of the vocabulary

    def residual(b, target):                         # target [W, n] -> relative residual outside the cell's span
        basis = torch.cat([A[mask[b]], head.film_rows(z_static[b:b + 1])[0].double()])
        fit = basis.T @ torch.linalg.lstsq(basis.T, target).solution
        return float((fit - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-30))

    assert max(residual(b, (solvent[b, 1:] - solvent[b, :1]).T) for b in range(len(comp))) < 1e-3
    B = 3
    g = torch.Generator().manual_seed(1)
    x = z_static[:B] + 0.1 * torch.randn(B, 128, generator=g, dtype=torch.float64)
    n_state = state_size(cfg)
    ctx = torch.cat([comp[:B], torch.rand(B, context_size(cfg) - comp.shape[1], generator=g).double()], dim=1)
    with torch.no_grad():
        us = model.velocity(x, z_static[:B], torch.rand(B, generator=g).double(), torch.rand(B, generator=g).double(),
                            torch.rand(B, n_state, generator=g).double(), torch.rand(B, n_state, generator=g).double(),
                            ctx, torch.zeros(B, dtype=torch.long))[0]
    assert us.abs().max() > 1e-4
    assert max(residual(b, us[b:b + 1].T) for b in range(B)) < 1e-14
    off = randomised(ABCC(dataclasses.replace(cfg, solvent_present_only=False))).double()
    with torch.no_grad():
        uo = off.velocity(x, z_static[:B], torch.rand(B, generator=g).double(), torch.rand(B, generator=g).double(),
                          torch.rand(B, n_state, generator=g).double(), torch.rand(B, n_state, generator=g).double(),
                          ctx, torch.zeros(B, dtype=torch.long))[0]
    assert max(residual(b, uo[b:b + 1].T) for b in range(B)) > 1e-6   # without the option it leaves the span
    with pytest.raises(ValueError, match="need composition_encoding"):
        ABCCConfig.from_dataset(ds, "random", preset="tiny", solvent_basis="physics", solvent_present_only=True,
                                composition_encoding="templates").validate()


def test_sei_reachable_only_uses_the_products_the_cell_can_form(tmp_path):
    """sei_reachable_only: OpIRSim's SEI stream of each cell lies in the span of the templates of the
    products its reactions can reach, and so does the model's SEI velocity (not without the option)."""
    import abcc_fast.data as data
    from abcc_fast.data.templates import reachable_products

    ds = data.load(data.generate(tmp_path / "ds", n_samples=12, T=6, W=128, seed=5, progress=False))
    cfg = ABCCConfig.from_dataset(ds, "random", preset="tiny", sei_basis="templates", sei_reachable_only=True)
    model = randomised(ABCC(cfg)).double()
    head = model.backbone.head_sei
    comp = torch.as_tensor(ds.composition, dtype=torch.float64)
    names = sei_template_products(cfg)
    rows = head.row_mask(model.backbone.reach(comp > 0)[1]).bool()
    for b in range(len(comp)):
        can = set(reachable_products([n for n, x in zip(cfg.components, comp[b]) if x > 0]))
        assert rows[b].tolist() == [n in can for n in names]
    assert (~rows).any(dim=1).all()
    A = head.sei_templates.double()

    def residual(b, target):
        basis = A[rows[b]]
        fit = basis.T @ torch.linalg.lstsq(basis.T, target).solution
        return float((fit - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-30))

    sei = torch.as_tensor(ds.sei, dtype=torch.float64)
    z = (sei[:, 1:] - sei[:, :1]) / cfg.norm_std
    assert max(residual(b, z[b].T) for b in range(len(comp)) if z[b].abs().max() > 0) < 1e-6
    B, g = 3, torch.Generator().manual_seed(2)
    static = (torch.as_tensor(ds.static[:B], dtype=torch.float64) - cfg.norm_mean) / cfg.norm_std
    n_state = state_size(cfg)
    ctx = torch.cat([comp[:B], torch.rand(B, context_size(cfg) - comp.shape[1], generator=g).double()], dim=1)
    args = (static + 0.1, static, torch.rand(B, generator=g).double(), torch.rand(B, generator=g).double(),
            torch.rand(B, n_state, generator=g).double(), torch.rand(B, n_state, generator=g).double(), ctx,
            torch.zeros(B, dtype=torch.long))
    with torch.no_grad():
        uz = model.velocity(*args)[1]
        uz_off = randomised(ABCC(dataclasses.replace(cfg, sei_reachable_only=False))).double().velocity(*args)[1]
    assert uz.abs().max() > 1e-4
    assert max(residual(b, uz[b:b + 1].T) for b in range(B)) < 1e-14
    assert max(residual(b, uz_off[b:b + 1].T) for b in range(B)) > 1e-6


def test_mass_conservation_ignores_non_reaction_area_changes():
    """With nuisance columns (contact step, gain drift, current), a solvent-area change made only of
    them costs nothing; one the extents and nuisances cannot explain still does."""
    from abcc_fast.model import constraints as Cn

    g = torch.Generator().manual_seed(0)
    B, Tq, Wd = 3, 9, 16
    taus = torch.linspace(0, 1, Tq).expand(B, Tq).double()
    current = torch.randn(B, Tq, generator=g).double()
    nuisance = torch.stack([(taus > 0).double(), taus, current], dim=-1)
    static = torch.randn(B, Wd, generator=g).double()
    weights = torch.randn(B, 3, generator=g).double()
    area_change = (nuisance @ weights[..., None])[..., 0]                      # [B, T']
    solvent = static[:, None] - area_change[..., None]                          # its mean over W drops by that
    sei, extent = torch.zeros(B, Tq, Wd).double(), torch.zeros(B, Tq, 2).double()
    alpha = beta = torch.ones(2).double()
    assert Cn.mass_conservation(solvent, sei, static, extent, alpha, beta) > 1e-2
    assert Cn.mass_conservation(solvent, sei, static, extent, alpha, beta, nuisance) < 1e-10
    bump = torch.zeros(B, Tq).double()
    bump[:, Tq // 2] = 1.0                                                      # one frame only: no nuisance makes it
    off = Cn.mass_conservation(solvent - bump[..., None], sei, static, extent, alpha, beta, nuisance)
    assert off > 0.05


def test_peak_acceleration_penalises_only_what_the_data_do_not_show():
    """"excess" form: a prediction that kinks exactly where the data kink (a current switch) costs
    nothing; a wiggle the data do not have still costs (at most what the plain form charges); the
    plain form charges the true kink too."""
    from abcc_fast.model import constraints as Cn

    T = 9
    taus = torch.linspace(0, 1, T).expand(2, T).double()
    kink = torch.where(taus < 0.5, 0 * taus, 4.0 * (taus - 0.5))[..., None].expand(-1, -1, 3)  # [B, T, n]
    mask = torch.ones(2, 3).double()
    assert Cn.peak_acceleration(kink, taus, mask, T) > 0.03                    # the plain form fights the kink
    assert Cn.peak_acceleration(kink, taus, mask, T, data_cent=kink) == 0
    wiggle = torch.zeros_like(kink)
    wiggle[:, 4] = 0.3
    plain = Cn.peak_acceleration(wiggle, taus, mask, T)
    assert torch.isclose(Cn.peak_acceleration(wiggle, taus, mask, T, data_cent=torch.zeros_like(wiggle)), plain)
    excess = Cn.peak_acceleration(kink + wiggle, taus, mask, T, data_cent=kink)
    assert 0.1 * plain < excess <= plain + 1e-12
    assert Cn.peak_acceleration(kink, taus, mask * 0, T) == 0                     # windows without a band


def test_peak_drift_is_measured_from_the_static_spectrum(tmp_path):
    """The trajectory's tau = 0 point is the static spectrum on the prediction's side, so the data's
    drift starts there too: a model whose frames equal the data's has zero drift loss even when the
    static spectrum's band sits elsewhere than frame 0's."""
    cfg = ABCCConfig.tiny(W=64, T=4, n_components=3, n_electrodes=2, n_reactions=2,
                          wavenumber=torch.linspace(1000, 1100, 64).tolist(),
                          marker_windows={"band": [1020.0, 1080.0]}, w_peak_accel=0.0, w_mass=0.0,
                          w_sei_nonneg=0.0, w_sei_growth=0.0, w_sei_sparsity=0.0, w_smooth=0.0,
                          w_solvent_new_bands=0.0)
    model = ABCC(cfg)
    nu = torch.linspace(1000, 1100, 64)
    band = lambda c: torch.exp(-0.5 * ((nu - c) / 5.0) ** 2)
    static = band(1048.0)[None]
    frames = torch.stack([band(1050.0 + k) for k in range(4)])[None]            # frame 0 differs from static
    inp = dict(static_raw=static, static=model._z(static), frames=model._z(frames))
    traj = dict(frames_hat=model._z(torch.cat([static[:, None], frames[:, 1:]], 1)), frames_traj=model._z(frames),
                taus=torch.linspace(0, 1, 4)[None], solvent=torch.zeros(1, 4, 64), sei=torch.zeros(1, 4, 64))
    parts = {}
    model._constraint_losses(inp, traj, parts)
    assert float(parts["peak_drift"]) < 1e-6


def test_residual_off_sei_leaves_no_sei_template_in_the_residual(tmp_path):
    """residual_off_sei: the solvent head's learned residual rows, as used, are orthogonal to every SEI
    template (the electrolyte rows are untouched); without the option they are not. The span is not
    saved with the weights: a reloaded model rebuilds it and gives the same velocities."""
    import abcc_fast.data as data

    ds = data.load(data.generate(tmp_path / "ds", n_samples=8, T=5, W=128, seed=3, progress=False))
    cfg = ABCCConfig.from_dataset(ds, "random", preset="tiny", sei_basis="templates", solvent_basis="physics",
                                  basis_rank=6, residual_off_sei=True)
    model = randomised(ABCC(cfg)).double()
    head = model.backbone.head_solvent
    A = model.backbone.head_sei.sei_templates.double()                       # [M, W]
    tokens = torch.randn(2, model.backbone.n_tokens, cfg.dim, dtype=torch.float64)
    e = torch.randn(2, 3, cfg.dim, dtype=torch.float64)
    static = torch.randn(2, cfg.W, dtype=torch.float64)

    def residual_part(h):
        with torch.no_grad():
            full, _ = h(tokens, e, static)
            h.rank, saved = 0, h.rank
            no_res, _ = h(tokens, e, static)
            h.rank = saved
        return full - no_res                                                  # [2, 3, W]

    def cosine(r):                                                            # largest |cos| with a template
        return float(((r @ A.T) / (r.norm(dim=-1, keepdim=True) * A.norm(dim=-1))).abs().max())

    res = residual_part(head)
    assert res.abs().max() > 1e-4
    assert cosine(res) < 1e-5                                                 # the span is kept in float32
    off = randomised(ABCC(dataclasses.replace(cfg, residual_off_sei=False))).double()
    assert cosine(residual_part(off.backbone.head_solvent)) > 1e-2
    model.save_pretrained(tmp_path / "m")
    again = ABCC.from_pretrained(tmp_path / "m").double()
    torch.testing.assert_close(residual_part(again.backbone.head_solvent), res)
    with pytest.raises(ValueError, match="residual_off_sei"):
        dataclasses.replace(cfg, solvent_basis="free").validate()


def test_sei_from_extents_is_a_growing_combination_of_reaction_spectra(tmp_path):
    """sei_from_extents: the SEI stream is xi(tau) @ P with xi >= 0 non-decreasing and P >= 0 mixes
    of the SEI templates: non-negative, growing, in the templates' span and 0 at tau = 0 by
    construction; chained jumps give the same stream as one jump; it trains, saves and loads;
    the per-pair velocity API and the identity term refuse it clearly."""
    grid = [700.0 + 1200.0 * i / 127 for i in range(128)]
    cfg = make_config(W=128, wavenumber=grid, sei_basis="templates", marker_windows={}, sei_from_extents=True,
                      w_identity=0.0)
    model = randomised(ABCC(cfg), scale=0.5).double().eval()
    b = make_batch(B=3)
    b = {k: (v.double() if v.is_floating_point() else v) for k, v in b.items()}
    static = torch.nn.functional.interpolate(b["static"][:, None], size=128, mode="linear")[:, 0]
    args = (static, b["voltage"], b["composition"], b["electrode"])
    out = model.predict(*args, time_s=b["time_s"], return_streams=True)
    z = out["sei"].double()                                                       # [B, T, 128] AU
    assert z.abs().max() > 1e-6
    assert z[:, 0].abs().max() == 0
    assert z.min() >= 0 and (z[:, 1:] - z[:, :-1]).min() >= -1e-6 * float(z.abs().max())
    A = model.backbone.head_sei.sei_templates.double()
    flat = z.reshape(-1, 128)
    fit = (A.T @ torch.linalg.lstsq(A.T, flat.T).solution).T
    assert (fit - flat).abs().max() < 1e-5 * float(flat.abs().max())
    chained = model.predict(*args, time_s=b["time_s"], return_streams=True, steps=3)
    assert torch.allclose(chained["sei"], out["sei"], atol=1e-6 * float(z.abs().max()))
    with pytest.raises(ValueError, match="sei_from_extents"):
        model.velocity(static, static, torch.zeros(3).double(), torch.ones(3).double(),
                       torch.zeros(3, state_size(cfg)).double(), torch.zeros(3, state_size(cfg)).double(),
                       torch.zeros(3, context_size(cfg)).double(), b["electrode"])
    with pytest.raises(ValueError, match="w_identity"):
        make_config(W=128, wavenumber=grid, sei_basis="templates", sei_from_extents=True, w_identity=0.02)
    model.train()
    batch = dict(b, static=static, frames=torch.nn.functional.interpolate(
        b["frames"].reshape(-1, 1, W), size=128, mode="linear").reshape(3, T, 128))
    loss, logs = model.training_loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert model.reaction_spectra.mix.grad.abs().sum() > 0 and model.extent_head.net[2].weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path / "m")
    back = ABCC.from_pretrained(tmp_path / "m").double().eval()
    assert torch.allclose(back.predict(*args, time_s=b["time_s"])["frames"], model.eval().predict(*args, time_s=b["time_s"])["frames"])


def test_extent_chemistry_keeps_each_reaction_to_its_products_and_its_cells(tmp_path):
    """extent_chemistry: an extent grows only its reaction's film products, and a reaction whose
    reactant the cell lacks (EC_to_LEDC without EC; FEC_reduction, whose FEC the vocabulary lacks)
    adds nothing: the SEI stream of a DMC-only cell lies in the span of the DMC products' templates
    (LMC, ROLi), while an EC cell's does not. Saves and loads; bad configs say what they need."""
    grid = [700.0 + 1200.0 * i / 127 for i in range(128)]
    names = ["EC_to_LEDC", "DMC_reduction", "FEC_reduction"]
    cfg = make_config(W=128, wavenumber=grid, sei_basis="templates", marker_windows={}, sei_from_extents=True,
                      w_identity=0.0, n_reactions=3, reactions=names, extent_chemistry=True)
    model = randomised(ABCC(cfg), scale=0.5).double().eval()
    rows = sei_template_products(cfg)
    allowed = model.reaction_spectra.allowed
    assert allowed.shape == (3, len(rows))
    assert {rows[m] for m in torch.nonzero(allowed[0]).flatten().tolist()} == {"LEDC"}
    assert {rows[m] for m in torch.nonzero(allowed[1]).flatten().tolist()} == {"LMC", "ROLi"}
    b = make_batch(B=3)
    b = {k: (v.double() if v.is_floating_point() else v) for k, v in b.items()}
    comp = torch.tensor([[0.0, 1.0, 0.1], [1.0, 0.0, 0.1], [0.5, 0.5, 0.1]]).double()    # EC, DMC, LiPF6
    runs = model.extent_head.chemistry.runs(comp)
    assert runs.tolist() == [[0, 1, 0], [1, 0, 0], [1, 1, 0]]
    static = torch.nn.functional.interpolate(b["static"][:, None], size=128, mode="linear")[:, 0]
    z = model.predict(static, b["voltage"], comp, b["electrode"], time_s=b["time_s"], return_streams=True)["sei"]
    z = z.double().reshape(3, -1, 128)
    A = model.backbone.head_sei.sei_templates.double()

    def outside(sample, products):
        basis = A[[m for m, p in enumerate(rows) if p in products]]
        flat = z[sample]
        fit = (basis.T @ torch.linalg.lstsq(basis.T, flat.T).solution).T
        return float((fit - flat).abs().max() / flat.abs().max())

    assert z[0].abs().max() > 1e-6 and z[1].abs().max() > 1e-6
    assert outside(0, {"LMC", "ROLi"}) < 1e-5           # DMC cell: its products only
    assert outside(1, {"LEDC"}) < 1e-5                  # EC cell: LEDC only
    assert outside(1, {"LMC", "ROLi"}) > 1e-2
    model.save_pretrained(tmp_path / "m")
    back = ABCC.from_pretrained(tmp_path / "m").double().eval()
    again = back.predict(static, b["voltage"], comp, b["electrode"], time_s=b["time_s"], return_streams=True)["sei"]
    torch.testing.assert_close(again.double().reshape(3, -1, 128), z)
    with pytest.raises(ValueError, match="needs sei_from_extents"):
        make_config(W=128, wavenumber=grid, sei_basis="templates", n_reactions=3, reactions=names, extent_chemistry=True)
    with pytest.raises(ValueError, match="unknown: \\['EC_dimer'\\]"):
        make_config(W=128, wavenumber=grid, sei_basis="templates", sei_from_extents=True, w_identity=0.0,
                    n_reactions=3, reactions=names[:2] + ["EC_dimer"], extent_chemistry=True)
    with pytest.raises(ValueError, match="got 2 names"):
        make_config(W=128, wavenumber=grid, sei_basis="templates", sei_from_extents=True, w_identity=0.0,
                    n_reactions=3, reactions=names[:2], extent_chemistry=True)
    unnamed = make_config(W=128, wavenumber=grid, sei_basis="templates", sei_from_extents=True, w_identity=0.0,
                          n_reactions=3, extent_chemistry=True)          # a preset: names come with the data
    with pytest.raises(ValueError, match="got 0 names"):
        ABCC(unnamed)

