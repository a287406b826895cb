"""Electrochemical protocols of the first formation cycle.

Three protocols, all vectorised over samples on a fine time grid of N+1 points:

- ``galvanostatic``: constant current (C-rate r, 1/h) lithiation to x = 1, then delithiation to
  the irreversible remainder x_end; V(t) = V_eq(x) -/+ eta (overpotential with a relaxation lag).
- ``gitt``: the same with current pulses (duty d, period P) and OCV rests in between; the overpotential
  relaxes during rests (sawtooth, Leau-type GITT).
- ``cv``: a potential triangle OCV -> E_low -> E_high at scan rate s; the lithiation fraction follows
  the equilibrium x_eq(E) with a lag, and the current is dx/dt.

``x`` is the lithiation fraction of the working electrode (for Cu and Li: plated capacity), from
electrode-specific V(q) curves: graphite staging plateaus (0.21/0.12/0.09 V), Si slopes, LTO 1.55 V,
Cu plating below 0 V after a nucleation dip, Li metal plating/stripping near 0 V, and PC-exfoliating
graphite stuck on the ~0.8 V reduction plateau.
"""
from __future__ import annotations

import numpy as np

PROTOCOLS = ["galvanostatic", "cv", "gitt"]

# electrode -> (lithiation knots x, V), (delithiation knots y = progress of charge in [0,1], V);
# the last charge voltage is replaced by the sample's upper cut-off V_up.
CURVES = {
    "graphite": (
        ([0, .02, .05, .12, .16, .22, .40, .50, .62, .80, .95, 1.0],
         [3.0, 1.4, 0.85, 0.70, 0.30, 0.21, 0.20, 0.125, 0.115, 0.092, 0.08, 0.01]),
        ([0, .05, .2, .4, .55, .75, .88, .94, 1.0],
         [0.05, 0.10, 0.12, 0.15, 0.22, 0.25, 0.45, 0.9, 1.5])),
    # PC on graphite: co-intercalation/exfoliation, a long ~0.8 V reduction plateau, no staging
    "graphite_PC": (
        ([0, .03, .06, .95, 1.0], [3.0, 1.2, 0.88, 0.76, 0.65]),
        ([0, .5, .9, 1.0], [0.85, 0.95, 1.1, 1.5])),
    "Si": (
        ([0, .03, .08, .15, .3, .5, .75, .9, 1], [2.9, 1.2, 0.45, 0.25, 0.17, 0.12, 0.08, 0.05, 0.01]),
        ([0, .1, .3, .5, .7, .85, .95, 1], [0.15, 0.28, 0.35, 0.42, 0.48, 0.6, 0.9, 1.5])),
    "LTO": (
        ([0, .02, .06, .9, .96, 1], [2.6, 1.8, 1.565, 1.545, 1.4, 1.0]),
        ([0, .04, .1, .9, .96, 1], [1.45, 1.56, 1.57, 1.585, 1.8, 2.5])),
    "Cu": (
        ([0, .01, .03, .05, .07, .08, .085, .09, 1], [3.0, 2.0, 1.3, 0.8, 0.3, 0.0, -0.10, -0.04, -0.035]),
        ([0, .02, .8, .85, .9, 1], [0.02, 0.03, 0.05, 0.3, 0.6, 1.2])),
    "Li": (
        ([0, .02, 1], [-0.06, -0.035, -0.03]),
        ([0, .02, 1], [0.02, 0.035, 0.045])),
}
# lowest CV potential per electrode (Cu: into plating); Li metal is never swept (galvanostatic)
E_LOW = {"graphite": 0.01, "graphite_PC": 0.01, "Si": 0.01, "LTO": 1.0, "Cu": -0.1, "Li": -0.05}
# equilibrium lithiation in CV where the V(q) curve is not invertible: plating on Cu proceeds at a
# rate set by the overpotential below 0 V, modelled as x_eq rising linearly to 1 at E_low
CV_KNOTS = {"Cu": ([0, .01, .03, .05, .07, .08, 1.0], [3.0, 2.0, 1.3, 0.8, 0.3, 0.0, -0.1])}


def _interp_rows(xq: np.ndarray, xp, fp) -> np.ndarray:
    return np.interp(xq, np.asarray(xp, float), np.asarray(fp, float))


def equilibrium_voltage(curve: str, x: np.ndarray, lithiating: np.ndarray, x_end: np.ndarray,
                        v_up: np.ndarray) -> np.ndarray:
    """V_eq [V] at lithiation fraction ``x`` on the lithiation or the delithiation branch.

    x, lithiating, x_end, v_up: broadcastable arrays. The delithiation branch is parametrised by
    y = (1 - x) / (1 - x_end) and ends at the sample's upper cut-off ``v_up``.
    """
    (xd, vd), (yc, vc) = CURVES[curve]
    v_dis = _interp_rows(x, xd, vd)
    y = np.clip((1.0 - x) / np.maximum(1.0 - x_end, 1e-6), 0.0, 1.0)
    vc = np.asarray(vc, float)
    # charge knots, the last one pulled to v_up (broadcast over samples)
    base = _interp_rows(y, yc, vc[:-1].tolist() + [vc[-2]])
    last_w = np.clip((y - yc[-2]) / (yc[-1] - yc[-2]), 0.0, 1.0)
    v_ch = base + last_w * (v_up - vc[-2])
    return np.where(lithiating, v_dis, v_ch)


def galvanostatic(curve: str, n_steps: int, rate: np.ndarray, duty: np.ndarray, period_h: np.ndarray,
                  x_end: np.ndarray, v_up: np.ndarray, eta: np.ndarray, tau_eta_h: np.ndarray) -> dict:
    """Galvanostatic (duty = 1) or GITT (duty < 1) first cycle, vectorised over samples [S].

    Returns arrays [S, N+1]: ``t_h`` (hours), ``E`` (V vs Li/Li+), ``x`` (lithiation fraction),
    ``current`` (C-rate, + = lithiation/reduction of the working electrode).
    """
    rate, duty, period_h = (np.asarray(a, float)[:, None] for a in (rate, duty, period_h))
    x_end, v_up, eta, tau = (np.asarray(a, float)[:, None] for a in (x_end, v_up, eta, tau_eta_h))
    on_total = (2.0 - x_end) / rate                     # hours of current flow
    pulse = duty * period_h
    n_full = np.floor(on_total / pulse - 1e-9)
    t_total = n_full * period_h + (on_total - n_full * pulse)
    t = np.linspace(0.0, 1.0, n_steps + 1)[None, :] * t_total
    phase = np.mod(t, period_h)
    on_time = np.floor(t / period_h) * pulse + np.minimum(phase, pulse)
    q = rate * on_time
    lithiating = q <= 1.0
    x = np.where(lithiating, q, 2.0 - q)
    on = (phase < pulse) | (t >= t_total - 1e-9)
    current = rate * on * np.where(lithiating, 1.0, -1.0)
    v_eq = equilibrium_voltage(curve, x, lithiating, x_end, v_up)
    # overpotential with a first-order lag (relaxes during GITT rests)
    dt = t_total / n_steps
    decay = np.exp(-dt / tau)
    rho = np.empty_like(t)
    rho[:, 0] = 0.0
    on_f = on.astype(float)
    for j in range(n_steps):
        rho[:, j + 1] = on_f[:, j] + (rho[:, j] - on_f[:, j]) * decay[:, 0]
    sign = np.where(lithiating, -1.0, 1.0)
    E = v_eq + sign * eta * np.sqrt(rate / 0.1) * rho
    return {"t_h": t, "E": E, "x": x, "current": current}


def cyclic_voltammetry(curve: str, n_steps: int, scan_V_per_h: np.ndarray, x_end: np.ndarray,
                       v_up: np.ndarray, tau_x_h: np.ndarray) -> dict:
    """CV triangle OCV -> E_low -> v_up at ``scan_V_per_h``; returns arrays [S, N+1] as above."""
    s = np.asarray(scan_V_per_h, float)[:, None]
    x_end, v_up, tau = (np.asarray(a, float)[:, None] for a in (x_end, v_up, tau_x_h))
    (xd, vd), (yc, vc) = CURVES[curve]
    xd, vd = CV_KNOTS.get(curve, (xd, vd))
    e0 = float(vd[0])
    e_low = E_LOW[curve]
    t1 = (e0 - e_low) / s
    t_total = t1 + (v_up - e_low) / s
    t = np.linspace(0.0, 1.0, n_steps + 1)[None, :] * t_total
    down = t <= t1
    E = np.where(down, e0 - s * t, e_low + s * (t - t1))
    # equilibrium x(E): invert the monotone envelope of the lithiation branch (drops the nucleation dip)
    vd_mono = np.minimum.accumulate(np.asarray(vd, float)) - 1e-4 * np.asarray(xd, float)
    x_dis = np.interp(-E, -vd_mono, np.asarray(xd, float))
    vc_arr = np.asarray(vc, float)
    y_ch = np.interp(E, np.maximum.accumulate(vc_arr[:-1]), np.asarray(yc, float)[:-1],
                     left=0.0, right=float(yc[-2]))
    y_ch = np.where(E > vc_arr[-2], yc[-2] + (1 - yc[-2]) * np.clip((E - vc_arr[-2]) /
                                                               np.maximum(v_up - vc_arr[-2], 1e-6), 0, 1),
                    y_ch)
    x_ch = 1.0 - y_ch * (1.0 - x_end)
    x_eq = np.where(down, x_dis, x_ch)
    dt = t_total / n_steps
    alpha = 1.0 - np.exp(-dt / tau)
    x = np.empty_like(t)
    x[:, 0] = 0.0
    for j in range(n_steps):
        step = (x_eq[:, j + 1] - x[:, j]) * alpha[:, 0]
        # lithiation only on the way down, delithiation only on the way up
        step = np.where(down[:, j + 1], np.maximum(step, 0.0), np.minimum(step, 0.0))
        x[:, j + 1] = x[:, j] + step
    current = np.gradient(x, axis=1) / dt
    return {"t_h": t, "E": E, "x": x, "current": current}
