"""The electrolyte's template rows of ABCC's physics solvent head, and the coefficients shared by the
components of one kind.

``solvent_template_matrix`` holds the free and the bound band of every component and the soluble
species' bands; each row has an owner (the component whose band it is) and, for the components, a
group: the component's kind (solvent, additive, salt; ``data.chemistry``) and the band's state (free,
or bound to Li+ / ion-paired).

``KindCoefficients`` (``ABCCConfig.solvent_kind_coef``): a component's band changes in proportion to
how much of it the cell holds, by a fraction that components of one kind share to first order
(salt polarisation moves every salt's anion bands, reduction depletes every carbonate). So each
component row gets, besides its own learned coefficient, rho_g(features) x a_m: a fraction rho per
group g, read from the decoder's features, times the row's amount a_m in the static spectrum (a
least-squares fit of the static spectrum on the cell's own rows and a smooth baseline, clipped at 0).
A component no training cell holds then still moves its bands as its kind does.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..data import chemistry as chem
from ..data.templates import simulator_basis
from .config import ABCCConfig

KINDS = ("solvent", "additive", "salt")
STATES = ("free", "bound")
FRACTION_MIN = 0.01     # per_fraction: the least mole fraction an amount is divided by (trace additives)
FIT_RIDGE = 1e-4        # the static fit's ridge, relative to the mean diagonal of its normal equations


def need_model_grid(cfg: ABCCConfig, option: str, what: str, instead: str) -> None:
    """A clear error where a template head is built without the model grid to render ``what`` on."""
    if len(cfg.wavenumber) != cfg.W:
        raise ValueError(f"ABCCConfig({option}) needs the model grid (config.wavenumber, W points) to render {what}: "
                         "build the config with ABCCConfig.from_dataset(ds, ...) or pass wavenumber=[...], or use "
                         f"{instead}")


def solvent_template_matrix(cfg: ABCCConfig) -> torch.Tensor:
    """[E, W] the electrolyte's band templates on cfg.wavenumber: the free and the bound state of
    every component, then the soluble species, each scaled to a peak of 1. A cell's solvent stream
    is a combination of these rows (speciation moves amount between a component's free and bound
    rows), times the film's displacement factor (see ``backbone.SolventBasisDecoder``)."""
    return solvent_templates(cfg)[0]


def solvent_template_owners(cfg: ABCCConfig) -> torch.Tensor:
    """int64 [E]: for each row of ``solvent_template_matrix``, the index in ``cfg.components`` of the
    component whose band it is, or -1 (soluble reaction products, and components the config does not
    name): the rows a cell without that component cannot use."""
    return solvent_templates(cfg)[1]


def solvent_template_groups(cfg: ABCCConfig) -> torch.Tensor:
    """int64 [E]: for each row, its group kind x state (``KINDS`` x ``STATES``, kind-major), or -1
    (soluble species, components the config or the chemistry tables do not name)."""
    return solvent_templates(cfg)[2]


def solvent_templates(cfg: ABCCConfig):
    """(templates [E, W], owners [E], groups [E]); see the three functions above."""
    need_model_grid(cfg, "solvent_basis='physics'", "the electrolyte templates", "solvent_basis='free'")
    basis = simulator_basis(cfg.wavenumber)
    e = torch.as_tensor(basis.electrolyte, dtype=torch.float64)                                # [E, W]
    names: list = [None] * e.shape[0]                                                          # soluble species
    states = [-1] * e.shape[0]
    for s, rows in enumerate((basis.free_row, basis.bound_row)):                               # component -> row
        for name, row in rows.items():
            names[row], states[row] = name, s
    owner = torch.tensor([list(cfg.components).index(n) if n in cfg.components else -1 for n in names])
    group = torch.tensor([KINDS.index(chem.COMPONENTS[n].kind) * len(STATES) + s
                          if n in cfg.components and n in chem.COMPONENTS else -1 for n, s in zip(names, states)])
    keep = e.abs().amax(dim=1) > 0
    e = e[keep]
    return e / e.abs().amax(dim=1, keepdim=True), owner[keep], group[keep]


class KindCoefficients(nn.Module):
    """rho_g(features) x a_m for every component row m of group g (module docstring): [B, Q, E] more
    template amounts (z-units), 0 for the rows without a group. ``features`` [B, Q, F] the solvent
    decoder's coefficient features; the fractions start at 0."""

    def __init__(self, in_features: int, groups: torch.Tensor, baseline: torch.Tensor, norm_mean: float,
                 norm_std: float, gain: float = 1.0):
        """groups [E] (``solvent_template_groups``); baseline [J, W] the smooth rows fitted beside the
        templates (Legendre polynomials); gain (``solvent_kind_gain``) scales the fractions' output."""
        super().__init__()
        self.gain = float(gain)
        self.coef = nn.Linear(in_features, len(KINDS) * len(STATES))
        nn.init.zeros_(self.coef.weight)
        nn.init.zeros_(self.coef.bias)
        self.register_buffer("groups", groups.long(), persistent=False)
        self.register_buffer("baseline", baseline.float(), persistent=False)
        self.norm_mean, self.norm_std = norm_mean, norm_std

    def static_amounts(self, static: torch.Tensor, templates: torch.Tensor,
                       rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """static [B, W] z-units, templates [E, W] (unit peak), rows [B, E] the cell's usable rows or
        None -> a [B, E] >= 0 (AU): the static spectrum's least-squares amounts on its own rows, fitted
        with the smooth baseline rows; 0 for the rows the cell cannot use. In float32 or float64."""
        dt = torch.float64 if static.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=static.device.type, enabled=False):
            raw = (static.to(dt) * self.norm_std + self.norm_mean)                       # [B, W] AU
            E = templates.shape[0]
            use = torch.ones(raw.shape[0], E, dtype=dt, device=raw.device) if rows is None else rows.to(dt)
            base = self.baseline.to(dt)
            mask = torch.cat([use, torch.ones(raw.shape[0], base.shape[0], dtype=dt, device=raw.device)], 1)
            a = torch.cat([templates.to(dt), base])[None] * mask[..., None]              # [B, E + J, W]
            g = a @ a.transpose(1, 2)
            ridge = FIT_RIDGE * g.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12)
            # rows the cell cannot use: a unit diagonal keeps the system regular (their amounts are 0)
            g = g + (ridge[:, None, None] + (1 - mask)[..., None]) * torch.eye(g.shape[-1], dtype=dt, device=g.device)
            amount = torch.linalg.solve(g, a @ raw[..., None])[..., 0][:, :E]
            return (amount.clamp_min(0) * use).to(static.dtype)

    def row_amounts(self, static: torch.Tensor, templates: torch.Tensor, rows: Optional[torch.Tensor] = None,
                    fractions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """a_m [B, E] in z-units, once per source (``backbone.encode``): the static amounts
        (``static_amounts``; constants of the fit, not differentiated). With ``fractions`` [B, E]
        (``solvent_kind_scale="per_fraction"``: each row's component's mole fraction) per unit mole
        fraction, so rho is a change of mole fraction shared by the group (salt polarisation moves about
        as many ions whatever the salt's concentration) rather than a share of what the cell holds."""
        amount = self.static_amounts(static, templates, rows).detach() / self.norm_std
        if fractions is not None:
            amount = amount / fractions.to(amount.dtype).clamp_min(FRACTION_MIN) * (fractions > 0).to(amount.dtype)
        return amount

    def forward(self, features: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        """features [B, Q, F], amounts [B, E] (``row_amounts``) -> rho_g x a_m [B, Q, E]."""
        rho = self.gain * self.coef(features)                                            # [B, Q, G]
        grouped = self.groups >= 0
        per_row = rho[..., self.groups.clamp_min(0)] * grouped.to(rho.dtype)             # [B, Q, E]
        return per_row * amounts[:, None]
