"""OpIRBench metrics against independent slow implementations (numpy loops), plus properties."""
import math

import numpy as np
import pytest
import torch

from abcc_fast.opirbench import metrics as M
from abcc_fast.opirbench.toy import lorentzian

# ------------------------------------------------------------------------------------------
# independent references (plain numpy, float64, loops)
# ------------------------------------------------------------------------------------------


def np_soft_dtw(x, y, gamma, band=None, omega=None, eps=0.0):
    """R_{n,m} of soft-DTW on D_ij = (x_i - y_j)^2 (+ eps * omega_ij), optional |i-j| <= band."""
    n, m = len(x), len(y)
    R = np.full((n + 1, m + 1), np.inf)
    R[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if band is not None and abs(i - j) > band:
                continue
            d = (x[i - 1] - y[j - 1]) ** 2 + (eps * omega[i - 1, j - 1] if omega is not None else 0.0)
            prev = np.array([R[i - 1, j - 1], R[i - 1, j], R[i, j - 1]])
            if np.all(np.isinf(prev)):
                continue
            mn = prev.min()
            R[i, j] = d + mn - gamma * math.log(np.sum(np.exp(-(prev - mn) / gamma)))
    return R[n, m]


def np_dilate(x, y, alpha=0.5, gamma=0.01, band=None):
    """(loss, shape, temporal); temporal = <E, Omega> as the directional derivative of R_nm in D."""
    n = len(x)
    i = np.arange(n)
    omega = (i[:, None] - i[None, :]) ** 2 / n ** 2
    shape = np_soft_dtw(x, y, gamma, band)
    h = 1e-5
    temporal = (np_soft_dtw(x, y, gamma, band, omega, h) - np_soft_dtw(x, y, gamma, band, omega, -h)) / (2 * h)
    return alpha * shape + (1 - alpha) * temporal, shape, temporal


def np_centroid(spec, wn, lo, hi, k=M.PEAK_EDGE_POINTS):
    idx = [q for q in range(len(wn)) if lo <= wn[q] <= hi]
    seg, nu = spec[idx], wn[idx]
    nl, nr = nu[:k].mean(), nu[-k:].mean()
    al, ar = seg[:k].mean(), seg[-k:].mean()
    a = np.maximum(seg - (al + (ar - al) * (nu - nl) / (nr - nl)), 0.0)
    return (a * nu).sum() / a.sum() if a.sum() > 0 else 0.5 * (nu[0] + nu[-1])


# ------------------------------------------------------------------------------------------
def _tiny(B=2, T=6, W=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    true = torch.rand(B, T, W, generator=g)
    pred = true + 0.3 * torch.randn(B, T, W, generator=g)
    wn = torch.linspace(1000.0, 1080.0, W)  # step 10 cm^-1
    ctx = M.MetricContext(wavenumber=wn, mean=0.4, std=0.25, marker_windows={"a": (1000.0, 1080.0)})
    return pred, true, ctx


def test_pointwise_metrics_match_numpy():
    pred, true, ctx = _tiny()
    p, t = pred.double().numpy(), true.double().numpy()
    zp, zt = (p[:, 1:] - 0.4) / 0.25, (t[:, 1:] - 0.4) / 0.25
    for b in range(2):
        assert M.mae(pred, true, ctx)["mae"][b].item() == pytest.approx(np.abs(zp[b] - zt[b]).mean(), rel=1e-5)
        assert M.mse(pred, true, ctx)["mse"][b].item() == pytest.approx(((zp[b] - zt[b]) ** 2).mean(), rel=1e-5)
        assert M.mae_au(pred, true, ctx)["mae_au"][b].item() == pytest.approx(
            np.abs(p[b, 1:] - t[b, 1:]).mean(), rel=1e-5)


def test_dilate_temporal_matches_numpy():
    pred, true, ctx = _tiny()
    out = M.dilate(pred, true, ctx)
    zp = (pred.double().numpy() - 0.4) / 0.25
    zt = (true.double().numpy() - 0.4) / 0.25
    for b in range(2):
        ref = np.array([np_dilate(zp[b, 1:, w], zt[b, 1:, w]) for w in range(zp.shape[2])]).mean(0)
        got = [out[k][b].item() for k in ("dilate", "dilate_shape", "dilate_temporal")]
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("band_cm", [None, 30.0])
def test_dilate_spec_matches_numpy(band_cm):
    pred, true, ctx = _tiny(T=4, W=12)
    ctx = M.MetricContext(wavenumber=torch.linspace(1000.0, 1110.0, 12), mean=0.4, std=0.25, spec_band_cm=band_cm)
    band = ctx.spec_bandwidth()
    assert band == (None if band_cm is None else 3)
    out = M.dilate_spec(pred, true, ctx)
    zp = (pred.double().numpy() - 0.4) / 0.25
    zt = (true.double().numpy() - 0.4) / 0.25
    for b in range(2):
        ref = np.array([np_dilate(zp[b, t], zt[b, t], band=band) for t in range(1, 4)]).mean(0)
        got = [out[k][b].item() for k in ("dilate_spec", "dilate_spec_shape", "dilate_spec_temporal")]
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-4)


def test_peak_shift_matches_numpy():
    wn = torch.linspace(900.0, 1100.0, 41)
    g = torch.Generator().manual_seed(1)
    true = lorentzian(wn, 1000.0, 10.0, 1.0) + 0.05 * torch.rand(2, 5, 41, generator=g)
    pred = lorentzian(wn, 1004.0, 12.0, 0.8) + 0.05 * torch.rand(2, 5, 41, generator=g)
    windows = {"w1": (950.0, 1050.0), "w2": (905.0, 1000.0), "empty": (2800.0, 3000.0)}
    ctx = M.MetricContext(wavenumber=wn, mean=0.0, std=1.0, marker_windows=windows)
    got = M.peak_shift(pred, true, ctx)["peak_shift"]
    w, p, t = wn.double().numpy(), pred.double().numpy(), true.double().numpy()
    for b in range(2):
        errs = [abs(np_centroid(p[b, f], w, lo, hi) - np_centroid(t[b, f], w, lo, hi))
                for f in range(1, 5) for lo, hi in (windows["w1"], windows["w2"])]
        assert got[b].item() == pytest.approx(np.mean(errs), rel=1e-5, abs=1e-4)


def test_band_centroid_flat_window_is_middle():
    wn = torch.linspace(900.0, 1000.0, 21)
    c = M.band_centroids(torch.zeros(3, 21), wn, {"w": (900.0, 1000.0)})
    assert torch.allclose(c, torch.full((3, 1), 950.0, dtype=c.dtype))


def test_decomp_matches_numpy():
    g = torch.Generator().manual_seed(2)
    ps, ts, pe, te = (torch.rand(3, 5, 7, generator=g) for _ in range(4))
    out = M.decomp({"solvent": ps, "sei": pe}, {"solvent": ts, "sei": te})
    sol = (ps[:, 1:] - ts[:, 1:]).abs().mean((1, 2))
    sei = (pe[:, 1:] - te[:, 1:]).abs().mean((1, 2))
    assert torch.allclose(out["decomp_solvent"], sol) and torch.allclose(out["decomp_sei"], sei)
    assert torch.allclose(out["decomp"], (sol + sei) / 2)


# ------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------
def test_perfect_prediction_scores_zero():
    _, true, ctx = _tiny(T=8, W=16)
    ctx = M.MetricContext(wavenumber=torch.linspace(1000.0, 1150.0, 16), mean=0.4, std=0.25,
                          marker_windows={"a": (1000.0, 1150.0)})
    streams = {"frames": true, "solvent": true * 0.7, "sei": true * 0.3}
    out = M.score_batch(streams, streams, ctx)
    for k in ("mae", "mse", "mae_au", "peak_shift", "decomp", "decomp_solvent", "decomp_sei"):
        assert torch.all(out[k] == 0), k
    # soft-DTW of a series with itself is not exactly 0 (the softmin's entropy, O(gamma)), but tiny
    for k in ("dilate", "dilate_shape", "dilate_temporal", "dilate_spec", "dilate_spec_temporal"):
        assert torch.all(out[k].abs() < 0.05), (k, out[k])


def test_dilate_time_shift_grows_temporal_part():
    T, W = 32, 4
    t = torch.arange(T, dtype=torch.float32)
    ctx = M.MetricContext(wavenumber=torch.linspace(1000.0, 1030.0, W), mean=0.0, std=1.0)
    bump = lambda c: torch.exp(-0.5 * ((t - c) / 2.0) ** 2)  # noqa: E731
    true = bump(12.0).view(1, T, 1).expand(1, T, W).contiguous()
    base = M.dilate(true, true, ctx)
    temporal, loss = [], []
    for shift in (2, 4, 8):
        out = M.dilate(bump(12.0 + shift).view(1, T, 1).expand(1, T, W).contiguous(), true, ctx)
        assert out["dilate"].item() > base["dilate"].item() + 1e-3
        temporal.append(out["dilate_temporal"].item())
        loss.append(out["dilate"].item())
    assert temporal[0] < temporal[1] < temporal[2], temporal
    assert loss[0] < loss[2]


@pytest.mark.parametrize("shift", [-3.0, 1.5, 4.0])
def test_peak_shift_recovers_lorentzian_shift(shift):
    wn = torch.linspace(700.0, 1900.0, 512)
    center = 1772.0
    windows = {"ec_co": (1700.0, 1850.0)}
    ctx = M.MetricContext(wavenumber=wn, mean=0.0, std=1.0, marker_windows=windows)
    T = 4
    true = lorentzian(wn, center, 6.0, 0.8).expand(1, T, -1).contiguous()
    pred = lorentzian(wn, center + shift, 6.0, 0.8).expand(1, T, -1).contiguous()
    got = M.peak_shift(pred, true, ctx)["peak_shift"].item()
    assert abs(got - abs(shift)) < 0.5, got


def test_unknown_metric_name():
    pred, true, ctx = _tiny()
    with pytest.raises(ValueError, match="unknown metric"):
        M.score_batch({"frames": pred}, {"frames": true}, ctx, ["mae", "rmse"])


def test_decomp_skipped_without_streams():
    pred, true, ctx = _tiny()
    out = M.score_batch({"frames": pred}, {"frames": true, "solvent": true, "sei": true}, ctx, ["mae", "decomp"])
    assert "decomp" not in out and "mae" in out


# ------------------------------------------------------------------------------------------
# property: per-sample scores do not depend on what else is in the batch; symmetric pointwise metrics
# ------------------------------------------------------------------------------------------
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(seed=st.integers(0, 2 ** 16), B=st.integers(2, 4), T=st.integers(3, 7), split=st.integers(1, 3))
def test_scores_are_per_sample(seed, B, T, split):
    split = min(split, B - 1)
    pred, true, ctx = _tiny(B=B, T=T, W=12, seed=seed)
    ctx = M.MetricContext(wavenumber=torch.linspace(1000.0, 1110.0, 12), mean=0.1, std=0.5,
                          marker_windows={"a": (1000.0, 1110.0)})
    whole = M.score_batch({"frames": pred}, {"frames": true}, ctx)
    a = M.score_batch({"frames": pred[:split]}, {"frames": true[:split]}, ctx)
    b = M.score_batch({"frames": pred[split:]}, {"frames": true[split:]}, ctx)
    swapped = M.score_batch({"frames": true}, {"frames": pred}, ctx, ["mae", "mse", "mae_au", "peak_shift"])
    for k, v in whole.items():
        torch.testing.assert_close(v, torch.cat([a[k], b[k]]), rtol=1e-5, atol=1e-6)
        if k in swapped:
            torch.testing.assert_close(v, swapped[k], rtol=1e-5, atol=1e-6)
            assert torch.all(v >= 0)


def test_dilate_series_chunked_by_cells_gives_the_same_scores(monkeypatch):
    """The series per DILATE call are bounded by DTW_CELLS / L^2 (memory of the alignment matrices);
    splitting a batch into single-series calls changes no score."""
    g = torch.Generator().manual_seed(2)
    pred, true = torch.randn(7, 12, generator=g), torch.randn(7, 12, generator=g)
    whole = M._dilate_series(pred, true)
    monkeypatch.setattr(M, "DTW_CELLS", 12 * 12)                       # one series per call
    for a, b in zip(M._dilate_series(pred, true), whole):
        torch.testing.assert_close(a, b)


def test_dilate_warns_once_without_the_native_extension(monkeypatch):
    """Without abcc_fast._C the DILATE metrics run on the pure-PyTorch twin: one warning per process
    names the cost and the fix; none when ABCC_BACKEND asks for a backend explicitly."""
    class Off:
        available = False
    monkeypatch.setattr(M, "_backends", lambda: {"cpu": Off()})
    monkeypatch.setattr(M, "_REFERENCE_WARNED", [])
    monkeypatch.delenv("ABCC_BACKEND", raising=False)
    x = torch.zeros(2, 5)
    with pytest.warns(RuntimeWarning, match="make install"):
        M._dilate_series(x, x)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M._dilate_series(x, x)                                          # once per process
        monkeypatch.setattr(M, "_REFERENCE_WARNED", [])
        monkeypatch.setenv("ABCC_BACKEND", "reference")
        M._dilate_series(x, x)                                          # an explicit choice: no warning
