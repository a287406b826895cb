"""The extent head's passivation (``extent_passivation``): exact logarithmic growth between frames."""
from __future__ import annotations

import math

import pytest
import torch

from abcc_fast.data import chemistry as chem
from abcc_fast.model import ABCC, ABCCConfig
from abcc_fast.model.constraints import INITIAL_RATE, ExtentHead, log1p_ratio, path_mean_sigmoid

NAMES = ["EC_to_LEDC", "DMC_dimerisation", "PF6_decomposition"]     # passivating, not, passivating


def head_config(**kw) -> ABCCConfig:
    base = dict(W=64, T=8, n_components=3, n_electrodes=2, n_reactions=3, sei_basis="templates",
                wavenumber=[700.0 + 1200.0 * i / 63 for i in range(64)], marker_windows={},
                components=["EC", "DMC", "LiPF6"], electrodes=["graphite", "Cu"], norm_mean=0.1, norm_std=0.2,
                volt_mean=1.5, volt_std=1.0, sei_from_extents=True, w_identity=0.0)
    base.update(kw)
    return ABCCConfig.tiny(**base)


def passivated(head: ExtentHead, growth: torch.Tensor) -> torch.Tensor:
    return head._passivated(growth.double())


def sweep_inputs(model: ABCC, B: int = 2):
    """The extent head's inputs for B cells of one composition on a first sweep 3.0 -> 0.1 V over the
    model's T frames: taus, protocol state, context."""
    T = model.config.T
    voltage = torch.linspace(3.0, 0.1, T, dtype=torch.float64).expand(B, T)
    taus = torch.linspace(0, 1, T, dtype=torch.float64).expand(B, T)
    ctx = model.context(torch.full((B, 3), 1 / 3, dtype=torch.float64), None, voltage)
    return taus, model.protocol_state(voltage), ctx


def test_log1p_ratio_is_smooth_through_zero():
    x = torch.tensor([0.0, 1e-8, 9.99e-5, 1.001e-4, 0.3, 7.0], dtype=torch.float64, requires_grad=True)
    y = log1p_ratio(x)
    want = torch.tensor([1.0] + [math.log1p(v) / v for v in x.tolist()[1:]], dtype=torch.float64)
    torch.testing.assert_close(y, want, rtol=1e-9, atol=1e-12)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0] == pytest.approx(-0.5)


def test_one_passivating_reaction_follows_the_logarithmic_law():
    """Constant rate r and coverage c: xi(t) = log(1 + c r t) / c at every frame, whatever the step
    (reported x the gain A / log(1 + A): at the initial coverage it ends where the unslowed reaction would)."""
    head = ExtentHead(head_config(extent_passivation=30.0, n_reactions=1)).double()
    c = float(torch.exp(head.log_cover.detach()[0]))
    r = INITIAL_RATE
    for n in (4, 31, 200):
        growth = torch.full((1, n + 1, 1), r / n, dtype=torch.float64)
        growth[:, 0] = 0
        with torch.no_grad():
            xi = passivated(head, growth)[0, :, 0]
        t = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        torch.testing.assert_close(xi, head.gain * torch.log1p(c * r * t) / c, rtol=1e-9, atol=1e-12)
        assert float(xi[-1]) == pytest.approx(r, rel=1e-6)


def test_passivation_is_exact_under_refinement_and_spares_the_others():
    """Held rates: splitting every interval in two gives the same extents at the shared frames; a
    non-passivating reaction grows as the plain sum; no coverage gives back the plain sum (x the gain); extents
    stay non-negative and non-decreasing."""
    cfg = head_config(extent_passivation=30.0, extent_chemistry=True, reactions=NAMES)
    head = ExtentHead(cfg).double()
    assert head.slowed.tolist() == [1.0, 0.0, 1.0]
    g = torch.rand(5, 9, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1e-3
    g[:, 0] = 0
    xi = passivated(head, g)
    fine = passivated(head, g[:, 1:].repeat_interleave(2, dim=1) / 2)
    torch.testing.assert_close(fine[:, 1::2], xi[:, 1:], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(xi[..., 1], g[..., 1].cumsum(1))
    assert (xi[..., [0, 2]] < head.gain * g[..., [0, 2]].cumsum(1) * 0.9).any()   # the film slows them
    assert xi.min() >= 0 and (xi.diff(dim=1) >= 0).all()
    with torch.no_grad():
        head.log_cover.fill_(-40.0)
    gain = torch.tensor([head.gain, 1.0, head.gain], dtype=torch.float64)
    torch.testing.assert_close(passivated(head, g), g.cumsum(1) * gain, rtol=1e-9, atol=1e-15)


def test_passivation_default_is_a_burst_and_trains(tmp_path):
    """The initial rates give a burst: more than a fifth of the final extent in the first of 7
    intervals (a straight line gives 1/7); the coverage gets a gradient; save and load keep it."""
    cfg = head_config(extent_passivation=30.0)
    model = ABCC(cfg).double().eval()
    taus, state, ctx = sweep_inputs(model)
    xi = model.extent_head(taus, state, ctx, torch.zeros(2, dtype=torch.long))
    assert (xi[:, 1] / xi[:, -1] > 0.2).all()
    xi.sum().backward()
    assert model.extent_head.log_cover.grad.abs().sum() > 0
    with torch.no_grad():
        model.extent_head.log_cover.add_(0.5)
    model.save_pretrained(tmp_path / "m")
    back = ABCC.from_pretrained(tmp_path / "m").double().eval()
    torch.testing.assert_close(back.extent_head.log_cover, model.extent_head.log_cover)
    with pytest.raises(ValueError, match="extent_passivation .* needs sei_from_extents"):
        head_config(extent_passivation=30.0, sei_from_extents=False)


def test_onset_gates_start_from_the_tables_and_spare_reactions_without_electrons():
    """extent_onsets: E_k from the chemistry tables; a reaction's rate is ~0 above its onset and
    ~its ungated value well below it; EMC transesterification (no electrons) is never gated."""
    names = ["EC_to_LEDC", "EMC_transesterification", "PF6_decomposition"]
    cfg = head_config(extent_onsets=True, extent_chemistry=True, reactions=names,
                      components=["EC", "EMC", "LiPF6"])
    head = ExtentHead(cfg).double()
    assert head.onset.tolist() == pytest.approx([0.80, 1.0, 1.9])
    assert head.gated.tolist() == [1.0, 0.0, 1.0]
    volt = torch.tensor([[3.0, 1.5, 0.5]], dtype=torch.float64)
    gate = head.onset_gate(volt, torch.zeros(1, dtype=torch.long))[0]          # [T', K]
    assert gate[0, 0] < 1e-6 and gate[2, 0] > 0.99                             # EC: off at 3 V, on at 0.5 V
    assert gate[:, 1].tolist() == [1.0, 1.0, 1.0]
    assert gate[1, 2] > 0.99 and gate[0, 2] < 1e-6
    with torch.no_grad():
        head.onset_shift.weight[1, 0] = 1.0                                    # electrode 1 shifts EC up 1 V
    assert head.onset_gate(volt, torch.ones(1, dtype=torch.long))[0, 1, 0] > 0.99
    with pytest.raises(ValueError, match="extent_onsets .* needs sei_from_extents"):
        head_config(extent_onsets=True, sei_from_extents=False)


def test_path_mean_sigmoid_is_the_mean_over_the_path():
    """Against a fine midpoint quadrature, on long and short paths (through the eps switch); additive
    over a split path (mean over [a, b] = the two halves' means averaged); finite gradients at a == b."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(400, generator=g, dtype=torch.float64) * 20
    b = torch.cat([a[:200] + torch.randn(200, generator=g, dtype=torch.float64) * 20,
                   a[200:] + torch.randn(200, generator=g, dtype=torch.float64) * 0.02])
    s = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000
    quad = torch.sigmoid(a[:, None] + (b - a)[:, None] * s).mean(1)
    torch.testing.assert_close(path_mean_sigmoid(a, b), quad, rtol=1e-6, atol=1e-7)
    m = 0.5 * (a + b)
    torch.testing.assert_close(path_mean_sigmoid(a, b), 0.5 * (path_mean_sigmoid(a, m) + path_mean_sigmoid(m, b)),
                               rtol=1e-6, atol=1e-6)
    x = torch.tensor([0.3, -2.0], dtype=torch.float64, requires_grad=True)
    path_mean_sigmoid(x, x.detach().clone()).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_onset_path_gate_is_the_share_of_the_interval_below_the_onset():
    """onset_path: a sweep from 3.0 to 0.8 V crosses PF6 decomposition's 1.9 V onset half-way: the
    interval's gate is ~1/2 (the end-point gate says ~1); a sweep that stays above the onset gives ~0;
    the first frame (no interval: its growth is 0 anyway) takes the gate at its own voltage."""
    names = ["EC_to_LEDC", "EMC_transesterification", "PF6_decomposition"]
    cfg = head_config(extent_onsets=True, onset_path=True, extent_chemistry=True, reactions=names,
                      components=["EC", "EMC", "LiPF6"])
    head = ExtentHead(cfg).double()
    volt = torch.tensor([[3.0, 0.8, 0.5]], dtype=torch.float64)
    prev = torch.tensor([[3.0, 3.0, 0.8]], dtype=torch.float64)
    el = torch.zeros(1, dtype=torch.long)
    gate = head.onset_gate(volt, el, prev)[0]
    assert float(gate[1, 2]) == pytest.approx(0.5, abs=0.01)
    assert float(head.onset_gate(volt, el)[0, 1, 2]) > 0.99
    assert float(gate[1, 0]) == pytest.approx(0.0, abs=0.02)          # EC (0.8 V) is reached only at the end
    # 0.8 -> 0.5 V starts at EC's onset: the gate rises from 1/2 within a few widths (0.05 V)
    assert float(gate[2, 0]) == pytest.approx(1 - 0.05 * math.log(2) / 0.3, abs=0.01)
    assert gate[0, 2] < 1e-6 and gate[:, 1].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="onset_path .* needs extent_onsets"):
        head_config(onset_path=True)


def test_bent_path_gate_matches_quadrature_and_is_continuous():
    """onset_path_power p: the chords' mean against a fine quadrature of the soft gate on
    V(s) = V_b + (V_a - V_b)(1 - s)^p, on long paths (first polarisation) and short or flat ones
    (a flat interval gives the gate at its potential for any p: no jump when the direction turns);
    p = 1 is the linear closed form."""
    from abcc_fast.model.constraints import path_mean_sigmoid_bent

    s = (torch.arange(100000, dtype=torch.float64) + 0.5) / 100000
    cases = [(3.0, 0.8, 1.9), (3.0, 0.8, 1.3), (3.0, 0.8, 0.85), (0.1, 1.5, 0.7), (1.0, 1.0, 1.0),
             (1.001, 1.0, 1.0), (0.999, 1.0, 1.0), (1.05, 0.95, 1.0), (0.9, 1.1, 1.0)]
    w = 0.05
    for p in (0.5, 1.0, 2.0, 3.5):
        for va, vb, e in cases:
            want = float(torch.sigmoid((e - (vb + (va - vb) * (1 - s) ** p)) / w).mean())
            a, b = (torch.tensor((e - v) / w, dtype=torch.float64) for v in (va, vb))
            got = float(path_mean_sigmoid_bent(a, b, torch.tensor(p, dtype=torch.float64)))
            assert got == pytest.approx(want, abs=1e-8 if p == 1.0 else 0.01), (p, va, vb, e)
        flat = path_mean_sigmoid_bent(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(p))
        assert float(flat) == pytest.approx(0.5, abs=1e-6)
    a, b = torch.randn(50, dtype=torch.float64) * 30, torch.randn(50, dtype=torch.float64) * 30
    torch.testing.assert_close(path_mean_sigmoid_bent(a, b, torch.ones(50, dtype=torch.float64)),
                               path_mean_sigmoid(a, b), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="onset_path_power must be > 0.2"):
        head_config(onset_path_power=0.1)


def test_onset_path_model_trains_and_reloads(tmp_path):
    """onset_path with p from 2 in a whole ABCC: a first sweep 3.0 -> 0.1 V gives extents that are
    finite and non-decreasing; the power gets a gradient per electrode; save and load give the same
    extents and the learned power back."""
    names = ["EC_to_LEDC", "EMC_transesterification", "PF6_decomposition"]
    cfg = head_config(extent_onsets=True, onset_path=True, onset_path_power=2.0, extent_chemistry=True,
                      reactions=names, components=["EC", "EMC", "LiPF6"])
    model = ABCC(cfg).double().eval()
    taus, state, ctx = sweep_inputs(model)
    el = torch.tensor([0, 1])
    xi = model.extent_head(taus, state, ctx, el)
    assert torch.isfinite(xi).all() and (xi.diff(dim=1) >= -1e-15).all()
    xi.sum().backward()
    assert (model.extent_head.path_power_raw.weight.grad.abs() > 0).all()
    with torch.no_grad():
        model.extent_head.path_power_raw.weight[1] += 0.7
        xi = model.extent_head(taus, state, ctx, el)
    model.save_pretrained(tmp_path / "m")
    back = ABCC.from_pretrained(tmp_path / "m").double().eval()
    torch.testing.assert_close(back.extent_head.path_power_raw.weight, model.extent_head.path_power_raw.weight)
    with torch.no_grad():
        torch.testing.assert_close(back.extent_head(taus, state, ctx, el), xi)


def test_extent_chemistry_already_keeps_the_sei_stream_to_reachable_products():
    """With extent_chemistry each reaction runs only where what it consumes is held (or made) and
    forms only its own products, so the SEI stream holds only the products the cell can reach:
    sei_reachable_only adds nothing (the same stream for the same weights, every composition). That
    is why the full table has no `abcc_sei_reachable` entry beside ABCC."""
    comps, reactions = list(chem.COMPONENT_NAMES), list(chem.REACTIONS)
    base = dict(W=128, wavenumber=[700.0 + 1200.0 * i / 127 for i in range(128)], T=6,
                n_components=len(comps), components=comps, n_reactions=len(reactions), reactions=reactions,
                extent_chemistry=True, extent_passivation=1.0)
    plain = ABCC(head_config(**base)).double().eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    masked = ABCC(head_config(**base, sei_reachable_only=True)).double().eval()
    masked.load_state_dict(plain.state_dict())
    B = 16
    composition = torch.rand(B, len(comps), generator=g, dtype=torch.float64)
    composition *= torch.rand(B, len(comps), generator=g, dtype=torch.float64) < 0.3    # sparse cells
    voltage = torch.linspace(3.0, 0.05, 6, dtype=torch.float64).expand(B, 6)
    ctx, state = plain.context(composition, None, voltage), plain.protocol_state(voltage)
    electrode = torch.randint(0, 2, (B,), generator=g)
    with torch.no_grad():
        z_plain = plain._extent_sei(state, ctx, electrode)
        z_masked = masked._extent_sei(state, ctx, electrode)
    assert z_plain.abs().max() > 1e-3                                   # a stream to compare
    torch.testing.assert_close(z_masked, z_plain, rtol=1e-10, atol=1e-12)
