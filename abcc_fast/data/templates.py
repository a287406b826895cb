"""SEI product templates on a spectral grid, rendered by the simulator itself.

The templates are OpIRSim's own film-species spectra (``abcc_fast.data.physics.Basis.sei``,
its band table and line shapes, instrument line shape included): for each film
product p, J aging states along the film-aging coordinate (band drift 1-10 cm^-1 and 10-30 %
broadening), every state with the same in-window area. The simulator renders a product's
SEI contribution as a non-negative mix of two adjacent aging states whose weights sum to the
product's amount n_p (mol/L of probed volume), so on synthetic data

    sei(t) = sum_p sum_j a_pj(t) S_pj,   a_pj >= 0,   n_p(t) = sum_j a_pj(t)

holds exactly, and a non-negative least-squares fit over all (p, j) columns returns n_p(t) by
summing the coefficients of each product.

Which products to fit: all film species (``chem.FILM_SPECIES``), or those the electrolyte can
form (``reachable_products``: products of every reaction of ``chem.REACTIONS`` whose reactants
are present, transesterification products included), or an explicit list.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from . import chemistry as chem
from .physics import Basis

# a product whose strongest template value on the grid is below this (AU per mol/L) has no band
# on the grid (e.g. only C-H stretches above a 1900 cm^-1 cut-off) and cannot be fitted
MIN_TEMPLATE_PEAK = 1e-4


def film_products() -> list[str]:
    """Every SEI film product OpIRSim renders, in the simulator's order."""
    return list(chem.FILM_SPECIES)


def check_products(products: Sequence[str]) -> list[str]:
    """Validate product names; raises ValueError naming the unknown ones and the known set."""
    products = [str(p).strip() for p in products if str(p).strip()]
    if not products:
        raise ValueError(f"no SEI product given; choose from {', '.join(chem.FILM_SPECIES)}")
    bad = [p for p in products if p not in chem.FILM_SPECIES]
    if bad:
        hint = ""
        soluble = [p for p in bad if p in chem.SOLUBLE_SPECIES]
        if soluble:
            hint = f" ({', '.join(soluble)} are soluble and live in the electrolyte stream, not the film)"
        raise ValueError(f"unknown SEI product(s) {bad}{hint}; known film products: {', '.join(chem.FILM_SPECIES)}")
    seen = []
    for p in products:
        if p not in seen:
            seen.append(p)
    return seen


def reachable(components: Sequence[str]) -> tuple[list[str], list[str]]:
    """(components, film products) that the simulator's reactions can reach from ``components``.

    A reaction runs when every component it consumes is present; components it produces
    (EMC transesterification -> DMC + DEC) join the present set, so the closure is taken.
    Both lists follow the chemistry tables' order.
    """
    present = {str(c) for c in components}
    unknown = sorted(present - set(chem.COMPONENT_NAMES))
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; known: {', '.join(chem.COMPONENT_NAMES)}")
    products: set[str] = set()
    changed = True
    while changed:
        changed = False
        for r in chem.REACTIONS.values():
            if all(c in present for c in r.consumes):
                for name in r.produces:
                    if name in chem.COMPONENT_NAMES and name not in present:
                        present.add(name)
                        changed = True
                    elif name in chem.FILM_SPECIES or name in chem.SOLUBLE_SPECIES:
                        products.add(name)
    comps = [c for c in chem.COMPONENT_NAMES if c in present]
    return comps, [p for p in chem.FILM_SPECIES + chem.SOLUBLE_SPECIES if p in products]


def reachable_products(components: Sequence[str]) -> list[str]:
    """Film products the electrolyte ``components`` can form (see ``reachable``).

    >>> reachable_products(["EC", "DMC", "LiPF6"])
    ['Li2CO3', 'LEDC', 'LMC', 'ROLi', 'LixPOyFz']
    """
    return [p for p in reachable(components)[1] if p in chem.FILM_SPECIES]


@dataclass(frozen=True)
class ProductTemplates:
    """Template matrix of the fitted SEI products on one grid.

    ``products`` [P] names; ``matrix`` [M, W] template spectra (AU per mol/L), M = P * J;
    ``owner`` [M] product index of each row; ``peak`` [P] strongest absorbance (AU per mol/L)
    of each product's first aging state on this grid (for detection thresholds).
    """

    products: tuple
    wavenumber: np.ndarray
    matrix: np.ndarray
    owner: np.ndarray
    peak: np.ndarray

    @property
    def n_states(self) -> int:
        return self.matrix.shape[0] // max(len(self.products), 1)

    def per_product(self, coefficients: np.ndarray) -> np.ndarray:
        """Sum template coefficients [..., M] per product -> amounts [..., P]."""
        out = np.zeros(coefficients.shape[:-1] + (len(self.products),))
        for p in range(len(self.products)):
            out[..., p] = coefficients[..., self.owner == p].sum(-1)
        return out

    def contributions(self, coefficients: np.ndarray) -> np.ndarray:
        """Per-product spectra [..., P, W] of template coefficients [..., M]."""
        out = np.zeros(coefficients.shape[:-1] + (len(self.products), self.matrix.shape[1]))
        for p in range(len(self.products)):
            m = self.owner == p
            out[..., p, :] = coefficients[..., m] @ self.matrix[m]
        return out


@functools.lru_cache(maxsize=8)
def _basis(grid: tuple, resolution: float):
    return Basis(np.asarray(grid, dtype=np.float64), resolution)


def simulator_basis(wavenumber, resolution: float = 4.0):
    """The simulator's ``Basis`` on this grid (cached per grid; templates take ~0.1 s to render)."""
    wn = np.asarray(wavenumber, dtype=np.float64).reshape(-1)
    return _basis(tuple(wn.tolist()), float(resolution))


def product_templates(wavenumber, products: Optional[Sequence[str]] = None, resolution: float = 4.0,
                      aging_states: bool = True) -> ProductTemplates:
    """The simulator's SEI templates for ``products`` (default: every film product) on ``wavenumber``.

    ``aging_states``: keep all J aging states per product (what the simulator mixes; the fit is then
    exact on synthetic data), else only the fresh state (j = 0). Products without any band on the
    grid raise ValueError (pass ``products`` without them).

    Example::

        tpl = product_templates(ds.wavenumber, ["LEDC", "Li2CO3", "polyVC"])
        tpl.matrix.shape   # (15, W): 3 products x 5 aging states
    """
    names = film_products() if products is None else check_products(products)
    basis = simulator_basis(wavenumber, resolution)
    rows, owner, peak = [], [], []
    J = basis.sei.shape[1] if aging_states else 1
    for p, name in enumerate(names):
        s = basis.sei[chem.FILM_SPECIES.index(name)]          # [J, W]
        top = float(np.abs(s[0]).max())
        if top < MIN_TEMPLATE_PEAK:
            raise ValueError(f"SEI product {name!r} has no band on this grid ({basis.wavenumber[0]:.0f}-"
                             f"{basis.wavenumber[-1]:.0f} cm^-1, strongest template value {top:.2g} AU per mol/L); "
                             f"leave it out of --products or use a grid that covers its bands")
        rows.append(s[:J])
        owner += [p] * J
        peak.append(top)
    return ProductTemplates(products=tuple(names), wavenumber=basis.wavenumber.copy(),
                            matrix=np.concatenate(rows, 0), owner=np.asarray(owner), peak=np.asarray(peak))


def visible_products(wavenumber, candidates: Sequence[str], resolution: float = 4.0) -> list[str]:
    """The candidates that have bands on this grid (see MIN_TEMPLATE_PEAK)."""
    basis = simulator_basis(wavenumber, resolution)
    return [n for n in candidates if float(np.abs(basis.sei[chem.FILM_SPECIES.index(n), 0]).max()) >= MIN_TEMPLATE_PEAK]
