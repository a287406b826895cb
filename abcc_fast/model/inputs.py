"""Input checks shared by every model's ``predict``: shapes, grids, vocabularies, finiteness."""
from __future__ import annotations

import torch


def check_predict_inputs(cfg, static, voltage, composition, electrode, wavenumber, time_s=None, n_extra=0,
                         who: str = "ABCC.predict"):
    """The checked and converted predict inputs (static [B, W], voltage [B, T], composition [B, C + n_extra]
    float, electrode [B] long, time_s [B, T] or None) against ``cfg``'s grid and vocabulary (an ABCC or
    baseline config); a ValueError/TypeError naming ``who``, the input and how to fix it otherwise."""

    def tensor(name, x, dtype):
        if not isinstance(x, torch.Tensor):
            try:
                x = torch.as_tensor(x, dtype=dtype)
            except Exception as err:
                raise TypeError(f"{who}: {name} must be a tensor, got {type(x).__name__} ({err})") from None
        return x

    static = tensor("static", static, torch.float32)
    voltage = tensor("voltage", voltage, torch.float32)
    composition = tensor("composition", composition, torch.float32)
    electrode = tensor("electrode", electrode, torch.int64)
    if static.dim() == 1:
        static = static[None]
    if static.dim() != 2:
        raise ValueError(f"{who}: static must be [B, W], got shape {tuple(static.shape)}")
    B, W = static.shape
    if W != cfg.W:
        raise ValueError(f"{who}: static has {W} wavenumber points but this model was trained on a "
                         f"grid of W={cfg.W}; resample the spectrum onto the model's grid "
                         f"(config.wavenumber, {cfg.wavenumber[0] if cfg.wavenumber else '?'}.."
                         f"{cfg.wavenumber[-1] if cfg.wavenumber else '?'} cm^-1)")
    if wavenumber is not None and cfg.wavenumber:
        wn = torch.as_tensor(wavenumber, dtype=torch.float64).reshape(-1).cpu()
        ref = torch.tensor(cfg.wavenumber, dtype=torch.float64)
        if wn.shape != ref.shape or not torch.allclose(wn, ref, rtol=0, atol=1e-3 * float(ref[1] - ref[0]) + 1e-6):
            raise ValueError(f"{who}: the wavenumber grid ({wn.numel()} points, {float(wn[0]):.4g}.."
                             f"{float(wn[-1]):.4g} cm^-1) differs from the model's ({ref.numel()} points, "
                             f"{float(ref[0]):.4g}..{float(ref[-1]):.4g} cm^-1); resample onto the model's grid")
    if voltage.dim() == 1:
        voltage = voltage[None]
    if voltage.dim() != 2 or voltage.shape[0] != B or voltage.shape[1] < 2:
        raise ValueError(f"{who}: voltage must be [B, T] with B={B} and T >= 2 (V vs Li/Li+ at each "
                         f"frame), got shape {tuple(voltage.shape)}")
    if composition.dim() == 1:
        composition = composition[None]
    if composition.dim() != 2 or composition.shape[0] != B:
        raise ValueError(f"{who}: composition must be [B, C] with B={B}, got shape {tuple(composition.shape)}")
    if composition.shape[1] != cfg.n_components + n_extra:
        names = f" ({', '.join(cfg.components)})" if cfg.components else ""
        raise ValueError(f"{who}: composition has {composition.shape[1]} entries but the model knows "
                         f"{cfg.n_components} components{names}; an unknown component cannot be used: give "
                         "mole fractions over exactly this vocabulary")
    electrode = electrode.reshape(-1) if electrode.dim() <= 1 else electrode
    if electrode.dim() != 1 or electrode.shape[0] != B:
        raise ValueError(f"{who}: electrode must be [B] integer indices with B={B}, got shape {tuple(electrode.shape)}")
    if electrode.is_floating_point():
        if not bool((electrode == electrode.round()).all()):
            raise ValueError(f"{who}: electrode must hold integer indices, got non-integer values")
        electrode = electrode.long()
    if electrode.numel() and (int(electrode.min()) < 0 or int(electrode.max()) >= cfg.n_electrodes):
        bad = int(electrode[(electrode < 0) | (electrode >= cfg.n_electrodes)][0])
        names = f" ({', '.join(f'{i}={n}' for i, n in enumerate(cfg.electrodes))})" if cfg.electrodes else ""
        raise ValueError(f"{who}: unknown electrode index {bad}; this model knows indices "
                         f"0..{cfg.n_electrodes - 1}{names}")
    if time_s is not None:
        time_s = tensor("time_s", time_s, torch.float32)
        if time_s.dim() == 1:
            time_s = time_s[None]
        if tuple(time_s.shape) != tuple(voltage.shape):
            raise ValueError(f"{who}: time_s must be [B, T] like voltage {tuple(voltage.shape)}, "
                             f"got shape {tuple(time_s.shape)}")
    checks = [("static", static), ("voltage", voltage), ("composition", composition)]
    for name, x in checks + ([("time_s", time_s)] if time_s is not None else []):
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise ValueError(f"{who}: {name} contains {int(bad.sum())} NaN/Inf values (first in batch "
                             f"row {row}); clean or drop those samples")
    return static, voltage, composition.float(), electrode, time_s
