"""The protocol state's turnaround columns (``ABCCConfig.turnaround``, ``series.turnaround_phase``)."""
from __future__ import annotations

import pytest
import torch

from abcc_fast.model import ABCC
from abcc_fast.model.backbone import state_size
from abcc_fast.model.series import turnaround_phase

from test_model import C, make_config, randomised


def hours(T: int) -> torch.Tensor:
    return torch.arange(T, dtype=torch.float64)[None]          # one frame per hour


def test_turnaround_is_the_last_frame_near_the_lowest_potential():
    """A galvanostatic cycle whose lithiation ends on a plateau: the lowest frame sits early on the
    plateau (a dip of 10 mV), the turn is the plateau's last frame."""
    v = torch.tensor([[3.0, 0.5, 0.08, 0.09, 0.09, 0.10, 0.30, 0.60]], dtype=torch.float64)
    ph = turnaround_phase(v, hours(8))
    torch.testing.assert_close(ph[0, :, 1], torch.asinh(torch.arange(8.0).double() - 5))
    torch.testing.assert_close(ph[0, 5, 0], torch.tensor(0.5).double())
    assert (ph[0, :5, 0] < 0.2).all() and (ph[0, 6:, 0] > 0.8).all()


def test_a_dip_beyond_the_margin_is_the_turn():
    """The margin is 30 mV: a deeper minimum than the plateau's end is taken as the turn (what a
    frame grid cannot tell from a short nucleation dip; documented, not hidden)."""
    v = torch.tensor([[3.0, -0.15, -0.08, -0.08, 0.10, 0.12]], dtype=torch.float64)
    ph = turnaround_phase(v, hours(6))
    torch.testing.assert_close(ph[0, 1, 0], torch.tensor(0.5).double())
    ph_wide = turnaround_phase(v, hours(6), margin_v=0.1)
    torch.testing.assert_close(ph_wide[0, 3, 0], torch.tensor(0.5).double())


def test_uneven_frames_and_batches_are_independent():
    v = torch.tensor([[2.0, 1.0, 0.0, 1.0], [2.0, 0.0, 1.0, 2.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0, 3.0, 4.0], [0.0, 2.0, 4.0, 6.0]], dtype=torch.float64)
    ph = turnaround_phase(v, t)
    torch.testing.assert_close(ph[:, :, 1], torch.asinh(torch.tensor([[-3.0, -2.0, 0.0, 1.0],
                                                                     [-2.0, 0.0, 2.0, 4.0]]).double()))
    # width: half the mean frame interval (2/3 h and 1 h)
    torch.testing.assert_close(ph[0, 3, 0], torch.sigmoid(torch.tensor(1.0 / (2.0 / 3.0))).double())
    torch.testing.assert_close(ph[1, 2, 0], torch.sigmoid(torch.tensor(2.0)).double())


def test_state_columns_sit_before_elapsed_time_and_the_model_runs():
    """The two columns go between the history levels and log(1 + elapsed hours), which the decoder's
    relaxation features read as the last column; a model with them trains and predicts."""
    T = 6
    model = randomised(ABCC(make_config(T=T, turnaround=True, history_levels=[1.0, 0.5]))).double()
    assert state_size(model.config) == 1 + 1 + 2 + 2 + 1
    voltage = torch.tensor([[2.0, 1.0, 0.3, 0.2, 0.6, 1.2]], dtype=torch.float64)
    s = model.protocol_state(voltage, time_s=3600.0 * hours(T))
    assert s.shape == (1, T, 7)
    torch.testing.assert_close(s[..., 4:6], turnaround_phase(voltage, hours(T)))
    torch.testing.assert_close(s[0, :, -1], hours(T)[0].log1p())
    W = model.config.W
    g = torch.Generator().manual_seed(0)
    batch = {"static": torch.rand(2, W, generator=g).double(), "frames": torch.rand(2, T, W, generator=g).double(),
             "voltage": voltage.expand(2, T), "time_s": 3600.0 * hours(T).expand(2, T),
             "composition": torch.full((2, C), 1.0 / C).double(), "electrode": torch.zeros(2, dtype=torch.long)}
    loss, _ = model.training_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    out = model.predict(batch["static"], batch["voltage"], batch["composition"], batch["electrode"],
                        time_s=batch["time_s"])
    assert out["frames"].shape == (2, T, W) and torch.isfinite(out["frames"]).all()


def test_relaxations_since_the_turn():
    """turn_relax_hours adds, per time constant t_j, step x (1 - exp(-max(t - t_turn, 0) / t_j)):
    ~0 before the turn and at it, the first-order lag 1 - exp(-dt / t_j) (times the step) after it,
    faster for the shorter time constant."""
    v = torch.tensor([[3.0, 1.0, 0.1, 0.4, 0.8, 1.2, 1.5, 1.8]], dtype=torch.float64)      # turn at frame 2
    ph = turnaround_phase(v, hours(8), relax_hours=[0.5, 2.0])
    assert ph.shape == (1, 8, 4)
    torch.testing.assert_close(ph[..., :2], turnaround_phase(v, hours(8)))
    since = (torch.arange(8.0).double() - 2).clamp_min(0)
    for j, tj in enumerate([0.5, 2.0]):
        torch.testing.assert_close(ph[0, :, 2 + j], ph[0, :, 0] * (1 - torch.exp(-since / tj)))
    assert (ph[0, :3, 2:].abs() < 1e-12).all()
    assert (ph[0, 3:, 2] > ph[0, 3:, 3]).all() and ph[0, -1, 2] > 0.99


def test_turn_relaxation_columns_in_the_state_and_their_config_check():
    T = 6
    model = randomised(ABCC(make_config(T=T, turnaround=True, turn_relax_hours=[0.1, 1.0],
                                        history_levels=[1.0]))).double()
    assert state_size(model.config) == 1 + 1 + 1 + 4 + 1
    voltage = torch.tensor([[2.0, 1.0, 0.3, 0.2, 0.6, 1.2]], dtype=torch.float64)
    s = model.protocol_state(voltage, time_s=3600.0 * hours(T))
    assert s.shape == (1, T, 8)
    torch.testing.assert_close(s[..., 3:7], turnaround_phase(voltage, hours(T), relax_hours=[0.1, 1.0]))
    with pytest.raises(ValueError, match="turn_relax_hours"):
        make_config(T=T, turnaround=False, turn_relax_hours=[0.1])
    with pytest.raises(ValueError, match="turn_relax_hours"):
        make_config(T=T, turnaround=True, turn_relax_hours=[0.0])
