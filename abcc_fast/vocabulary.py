"""Open vocabulary of electrolyte components: a component is its band template.

A *template* is a component's pure spectrum on a wavenumber grid, in two states: ``free`` and
``bound`` (Li+-coordinated solvent / ion-paired anion), AU per mol/L, ATR-weighted, rendered with
the simulator's line shapes and instrument function. Known components come from
``abcc_fast.data.chemistry``; a new one from

(a) a JSON file of bands (the *component JSON*, schema below), usable both by a templates-encoded
    ABCC model (``ABCC.predict(..., extra_components=[...])``) and by OpIRSim
    (:func:`opirsim_with`, :func:`generate_with`); or
(b) a measured pure-component spectrum, CSV ``wavenumber, absorbance`` (read with
    ``abcc_fast.data.importer``'s reader, resampled linearly onto the grid); usable by the model
    only (it has no band list, so the simulator cannot render its bound state or its reactions).

Component JSON (schema ``abcc-component/1``)::

    {
      "name": "DEC2",                 # required; letters, digits, _ + - . ( ); not a known component
      "kind": "solvent",              # required; "solvent" | "additive" | "salt"
      "molar_mass": 118.1,            # g/mol > 0; required for solvent/additive
      "density": 0.975,               # g/mL > 0 (neat liquid); required for solvent/additive
      "peak_per_molar": 0.0066,       # optional, AU of the strongest band per mol/L
                                      #   (default: solvents/additives 0.8 AU for the neat liquid,
                                      #    salts 0.5, as in chemistry.py)
      "preference": 1.0,              # optional >= 0: Li+ solvation preference (salts: pairing constant)
      "sites": 1.0,                   # optional > 0: coordination sites per molecule
      "bands": [                      # required, >= 1 band
        {"position": 1745,            #   cm^-1, 200..5000
         "height": 0.85,              #   relative height > 0 (strongest band ~1)
         "fwhm": 18,                  #   cm^-1, 0 < fwhm <= 500
         "eta": 0.65,                 #   optional Lorentzian fraction in [0, 1] (default 0.65)
         "bound_position": 1715,      #   optional: position when Li+-bound (area kept, chemistry.py)
         "bound_fwhm": 24},           #   optional (default: fwhm) -- only with bound_position
        ...
      ],
      "bound_extra": [ ...bands... ], # optional: bands present only in the bound/paired state
      "reactions": [                  # optional; without it the component is inert in OpIRSim
        {"name": "DEC2_reduction",    #   unique, not a known reaction
         "consumes": {"DEC2": 1.0},   #   default {name: 1.0}; the first key is the reactant
         "produces": {"LEC": 0.7, "ROLi": 0.3, "gas": 1.0},  # chemistry SEI species, "gas",
                                                              # invisible solids (LiF, ...) or components
         "electrons": 1.0,            #   >= 0
         "onset_V": 0.7,              #   V vs Li/Li+, -0.5..5
         "width_V": 0.1,              #   > 0
         "rate": 0.08,                #   M/h >= 0
         "passivating": true,         #   optional (default true)
         "km": 0.3}                   #   optional M > 0 (default 0.3)
      ]
    }

Unknown keys are refused (a typo would otherwise be silently ignored). Every error names the file
and the field.

Model side: :class:`TemplateEncoder` maps each template [2, W] to an embedding E(template) (patch
means of the max-normalised free and bound spectra -> MLP); a composition x over components i is
represented by sum_i x_i E(template_i) (``ABCCConfig.composition_encoding = "templates"``).
"""
from __future__ import annotations

import json
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from .data import chemistry as chem
from .data import draws
from .data import simulator as sim_mod
from .data.importer import monotonic_grid, read_table, resample
from .data.physics import Basis, happ_genzel_ils, pseudo_voigt

PathLike = Union[str, Path]
SCHEMA = "abcc-component/1"
KINDS = ("solvent", "additive", "salt")
POSITION_RANGE = (200.0, 5000.0)      # cm^-1: mid-IR and a margin; anything outside is a unit error
MAX_FWHM = 500.0
# OpIRSim: the draw "extra_components" (uniforms 86..95) gives presence and amount of each extra component
EXTRA_UNIFORM0 = draws.UNIFORMS["extra_components"].column
MAX_EXTRA_COMPONENTS = draws.UNIFORMS["extra_components"].width // 2
_NAME = re.compile(r"^[A-Za-z0-9_+\-.()]{1,40}$")
_TOP_KEYS = {"schema", "name", "kind", "molar_mass", "density", "peak_per_molar", "preference", "sites",
             "bands", "bound_extra", "reactions", "description", "source"}
_BAND_KEYS = {"position", "height", "fwhm", "eta", "bound_position", "bound_fwhm"}
_REACTION_KEYS = {"name", "consumes", "produces", "electrons", "onset_V", "width_V", "rate", "passivating", "km"}


# ---------------------------------------------------------------------------------------------
# a new component: band description (+ reactions)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewComponent:
    """A component described by bands: ``component`` (a chemistry.Component, renderable by the
    simulator) and its optional reaction families (chemistry.Reaction)."""
    component: chem.Component
    reactions: tuple = ()
    source: str = "<dict>"

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def kind(self) -> str:
        return self.component.kind


def _num(src, where, d, key, *, required=True, default=None, lo=None, hi=None, lo_open=False):
    if key not in d:
        if required:
            raise ValueError(f"{src}: {where} is missing the required field {key!r}")
        return default
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{src}: {where} field {key!r} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{src}: {where} field {key!r} must be finite, got {v}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{src}: {where} field {key!r} = {v} must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and v > hi:
        raise ValueError(f"{src}: {where} field {key!r} = {v} must be <= {hi}")
    return v


def _keys(src, where, d, allowed):
    if not isinstance(d, dict):
        raise ValueError(f"{src}: {where} must be a JSON object, got {type(d).__name__}")
    bad = sorted(set(d) - allowed)
    if bad:
        raise ValueError(f"{src}: {where} has unknown field(s) {bad}; allowed: {sorted(allowed)}")


def _band(src, where, b, with_bound: bool):
    _keys(src, where, b, _BAND_KEYS if with_bound else _BAND_KEYS - {"bound_position", "bound_fwhm"})
    lo, hi = POSITION_RANGE
    pos = _num(src, where, b, "position", lo=lo, hi=hi)
    height = _num(src, where, b, "height", lo=0.0, lo_open=True)
    fwhm = _num(src, where, b, "fwhm", lo=0.0, hi=MAX_FWHM, lo_open=True)
    eta = _num(src, where, b, "eta", required=False, default=0.65, lo=0.0, hi=1.0)
    bound = None
    if with_bound and "bound_position" in b:
        bpos = _num(src, where, b, "bound_position", lo=lo, hi=hi)
        bfwhm = _num(src, where, b, "bound_fwhm", required=False, default=fwhm, lo=0.0, hi=MAX_FWHM, lo_open=True)
        bound = (bpos, bfwhm)
    elif with_bound and "bound_fwhm" in b:
        raise ValueError(f"{src}: {where} has bound_fwhm without bound_position")
    return chem.Peak(pos, height, fwhm, eta), bound


def parse_component(d: dict, source: str = "<dict>") -> NewComponent:
    """Validate a component JSON object (schema in the module docstring) -> NewComponent."""
    src = source
    _keys(src, "the component", d, _TOP_KEYS)
    if "schema" in d and d["schema"] != SCHEMA:
        raise ValueError(f"{src}: schema {d['schema']!r} is not supported (expected {SCHEMA!r})")
    name = d.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{src}: 'name' must be a string of 1-40 letters, digits or _+-.() , got {name!r}")
    if name in chem.COMPONENTS:
        raise ValueError(f"{src}: {name!r} is already a known component ({', '.join(chem.COMPONENT_NAMES)}); "
                         "give the new component its own name")
    kind = d.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{src}: 'kind' must be one of {KINDS}, got {kind!r}")
    liquid = kind != "salt"
    molar_mass = _num(src, "the component", d, "molar_mass", required=liquid, default=100.0, lo=0.0, lo_open=True)
    density = _num(src, "the component", d, "density", required=liquid, default=1.0, lo=0.0, lo_open=True)
    default_ppm = 0.8 / (1000.0 * density / molar_mass) if liquid else 0.5
    ppm = _num(src, "the component", d, "peak_per_molar", required=False, default=default_ppm, lo=0.0, lo_open=True)
    pref = _num(src, "the component", d, "preference", required=False, default=1.0, lo=0.0)
    sites = _num(src, "the component", d, "sites", required=False, default=1.0, lo=0.0, lo_open=True)
    bands = d.get("bands")
    if not isinstance(bands, list) or not bands:
        raise ValueError(f"{src}: 'bands' must be a non-empty list of bands "
                         "({\"position\": cm^-1, \"height\": rel., \"fwhm\": cm^-1, ...})")
    free, bound = [], {}
    for i, b in enumerate(bands):
        pk, bd = _band(src, f"bands[{i}]", b, with_bound=True)
        free.append(pk)
        if bd is not None:
            bound[i] = bd
    extra = d.get("bound_extra", [])
    if not isinstance(extra, list):
        raise ValueError(f"{src}: 'bound_extra' must be a list of bands")
    bound_extra = tuple(_band(src, f"bound_extra[{i}]", b, with_bound=False)[0] for i, b in enumerate(extra))
    comp = chem.Component(name, kind, free=tuple(free), bound=bound, bound_extra=bound_extra,
                          peak_per_molar=ppm, molar_mass=molar_mass, density=density, preference=pref, sites=sites)
    reactions = []
    rx = d.get("reactions", [])
    if not isinstance(rx, list):
        raise ValueError(f"{src}: 'reactions' must be a list")
    species_ok = set(chem.SEI_SPECIES) | set(chem.INVISIBLE) | {"gas"} | set(chem.COMPONENTS) | {name}
    for i, r in enumerate(rx):
        where = f"reactions[{i}]"
        _keys(src, where, r, _REACTION_KEYS)
        rname = r.get("name")
        if not isinstance(rname, str) or not rname or rname in chem.REACTIONS:
            raise ValueError(f"{src}: {where} needs a new, non-empty 'name' (not one of the known reactions)")
        consumes = r.get("consumes", {name: 1.0})
        produces = r.get("produces", {})
        for key, m in (("consumes", consumes), ("produces", produces)):
            if not isinstance(m, dict) or (key == "consumes" and not m):
                raise ValueError(f"{src}: {where} '{key}' must be an object {{species: coefficient}}")
            for sp, v in m.items():
                if sp not in species_ok or (key == "consumes" and sp not in set(chem.COMPONENTS) | {name}):
                    raise ValueError(f"{src}: {where} '{key}' names unknown species {sp!r}")
                _num(src, f"{where} '{key}'", m, sp, lo=0.0)
        reactions.append(chem.Reaction(
            rname, {k: float(v) for k, v in consumes.items()}, {k: float(v) for k, v in produces.items()},
            _num(src, where, r, "electrons", lo=0.0), _num(src, where, r, "onset_V", lo=-0.5, hi=5.0),
            _num(src, where, r, "width_V", lo=0.0, lo_open=True), _num(src, where, r, "rate", lo=0.0),
            passivating=bool(r.get("passivating", True)),
            km=_num(src, where, r, "km", required=False, default=0.3, lo=0.0, lo_open=True)))
    return NewComponent(comp, tuple(reactions), src)


def load_component(path: PathLike) -> NewComponent:
    """Read and validate a component JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"component file not found: {path}")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    return parse_component(d, str(path))


# ---------------------------------------------------------------------------------------------
# templates on a grid
# ---------------------------------------------------------------------------------------------
@dataclass
class ComponentTemplate:
    """A component's free and bound spectra on ``wavenumber`` (AU per mol/L, ATR-weighted, instrument
    line shape included). ``component`` is the band description (None for a measured spectrum)."""
    name: str
    kind: str
    wavenumber: np.ndarray
    free: np.ndarray
    bound: np.ndarray
    component: Optional[NewComponent] = None
    source: str = "chemistry"
    measured: bool = False

    def array(self) -> np.ndarray:
        """[2, W] float32 (free, bound)."""
        return np.stack([self.free, self.bound]).astype(np.float32)

    def on_grid(self, wavenumber) -> "ComponentTemplate":
        """This template on another grid: re-rendered from bands when it has them, else interpolated
        (the grid must lie inside the measured range)."""
        wn = np.asarray(wavenumber, dtype=np.float64)
        if wn.shape == self.wavenumber.shape and np.allclose(wn, self.wavenumber):
            return self
        if self.component is not None:
            return template_from_component(self.component, wn)
        if self.source == "chemistry":
            return known_template(self.name, wn)
        if wn[0] < self.wavenumber[0] - 1e-6 or wn[-1] > self.wavenumber[-1] + 1e-6:
            raise ValueError(f"template {self.name!r} ({self.source}) covers {self.wavenumber[0]:.1f}-"
                             f"{self.wavenumber[-1]:.1f} cm^-1, not the grid {wn[0]:.1f}-{wn[-1]:.1f}")
        return ComponentTemplate(self.name, self.kind, wn, np.interp(wn, self.wavenumber, self.free),
                                 np.interp(wn, self.wavenumber, self.bound), None, self.source, True)


def render_component(c: chem.Component, wavenumber, state: str = "free", resolution: float = 4.0) -> np.ndarray:
    """[W] spectrum of a chemistry.Component at 1 mol/L, ATR-weighted, convolved with the Happ-Genzel
    instrument line shape; the same rendering as ``simulator.render_species(..., atr=True,
    resolution=...)`` (which takes a known name)."""
    wn = np.asarray(wavenumber, dtype=np.float64)
    if state not in ("free", "bound"):
        raise ValueError(f"state must be 'free' or 'bound', got {state!r}")
    peaks = Basis._free_peaks(c) if state == "free" else Basis._bound_peaks(c)
    y = np.zeros_like(wn)
    for pk in peaks:
        y += pk.height * pseudo_voigt(wn, pk.position, pk.fwhm, pk.eta)
    y *= c.peak_per_molar * 1000.0 / wn
    if resolution:
        y = np.convolve(y, happ_genzel_ils(resolution, float(np.min(np.diff(wn)))), mode="same")
    return y


def known_template(name: str, wavenumber) -> ComponentTemplate:
    if name not in chem.COMPONENTS:
        raise ValueError(f"unknown component {name!r}; known: {', '.join(chem.COMPONENT_NAMES)} (a new one needs "
                         "a band JSON or a measured spectrum)")
    c = chem.COMPONENTS[name]
    wn = np.asarray(wavenumber, dtype=np.float64)
    return ComponentTemplate(name, c.kind, wn, render_component(c, wn, "free"), render_component(c, wn, "bound"))


def template_from_component(nc: NewComponent, wavenumber) -> ComponentTemplate:
    wn = np.asarray(wavenumber, dtype=np.float64)
    c = nc.component
    return ComponentTemplate(c.name, c.kind, wn, render_component(c, wn, "free"), render_component(c, wn, "bound"),
                             nc, nc.source)


def template_from_spectrum(path: PathLike, wavenumber, name: Optional[str] = None,
                           kind: str = "solvent") -> ComponentTemplate:
    """A measured pure-component spectrum (CSV: wavenumber, absorbance; header row) resampled onto
    ``wavenumber``. Free and bound states are the same measured spectrum (no bound information)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"component spectrum not found: {path}")
    name = name or path.stem
    if not _NAME.match(name) or name in chem.COMPONENTS:
        raise ValueError(f"{path}: component name {name!r} must be new and made of letters, digits or _+-.()")
    if kind not in KINDS:
        raise ValueError(f"{path}: kind must be one of {KINDS}, got {kind!r}")
    header, values = read_table(path)
    if values.shape[1] < 2 or values.shape[0] < 2:
        raise ValueError(f"{path}: needs a wavenumber column and an absorbance column, >= 2 rows; found {header}")
    grid = np.asarray(wavenumber, dtype=np.float64)
    wn, spec = monotonic_grid(path, values[:, 0], values[:, 1:2])
    y = resample(path, wn, spec, grid)[:, 0]
    if not np.any(np.abs(y) > 0):
        raise ValueError(f"{path}: the spectrum is zero on the grid {grid[0]:.1f}-{grid[-1]:.1f} cm^-1")
    return ComponentTemplate(name, kind, grid, y, y.copy(), None, str(path), True)


def load_template(spec: PathLike, wavenumber) -> ComponentTemplate:
    """``new.json`` (band JSON) or ``[NAME=]spectrum.csv`` (measured spectrum, name = file stem by
    default) -> ComponentTemplate on ``wavenumber``."""
    s = str(spec)
    name = None
    if "=" in s and not Path(s).exists():
        name, s = s.split("=", 1)
    path = Path(s)
    if path.suffix.lower() == ".json":
        nc = load_component(path)
        if name and name != nc.name:
            raise ValueError(f"{path}: NAME= given as {name!r} but the JSON names the component {nc.name!r}")
        return template_from_component(nc, wavenumber)
    return template_from_spectrum(path, wavenumber, name=name)


def as_template(obj, wavenumber, name: Optional[str] = None) -> ComponentTemplate:
    """ComponentTemplate / NewComponent / dict (component JSON) / path -> ComponentTemplate on the grid."""
    if isinstance(obj, ComponentTemplate):
        return obj.on_grid(wavenumber)
    if isinstance(obj, NewComponent):
        return template_from_component(obj, wavenumber)
    if isinstance(obj, dict):
        return template_from_component(parse_component(obj), wavenumber)
    if isinstance(obj, (str, Path)):
        return load_template(obj, wavenumber)
    raise TypeError(f"a component template must be a ComponentTemplate, NewComponent, component dict or a "
                    f"path, got {type(obj).__name__}")


class TemplateBank:
    """Templates of named components on one grid: the known ones from chemistry, plus added ones.

    >>> bank = TemplateBank(np.linspace(700, 1900, 64))
    >>> bank.add({"name": "X1", "kind": "solvent", "molar_mass": 100, "density": 1.0,
    ...           "bands": [{"position": 1740, "height": 1, "fwhm": 20}]})
    'X1'
    >>> bank.matrix(["EC", "X1"]).shape
    (2, 2, 64)
    """

    def __init__(self, wavenumber, names: Optional[Sequence[str]] = None):
        self.wavenumber = np.asarray(wavenumber, dtype=np.float64)
        self.templates: dict[str, ComponentTemplate] = {}
        for n in (chem.COMPONENT_NAMES if names is None else names):
            self.templates[n] = known_template(n, self.wavenumber)

    @property
    def names(self) -> list:
        return list(self.templates)

    def add(self, obj) -> str:
        t = as_template(obj, self.wavenumber)
        if t.name in self.templates:
            raise ValueError(f"component {t.name!r} is already in the bank")
        self.templates[t.name] = t
        return t.name

    def matrix(self, names: Optional[Sequence[str]] = None) -> np.ndarray:
        """[n, 2, W] float32 templates of ``names`` (default: all, in bank order)."""
        names = self.names if names is None else list(names)
        missing = [n for n in names if n not in self.templates]
        if missing:
            raise ValueError(f"no template for {missing}; the bank has {self.names}")
        return np.stack([self.templates[n].array() for n in names])


def known_template_matrix(names: Sequence[str], wavenumber) -> np.ndarray:
    """[C, 2, W] float32 templates of known components (the buffer of a templates-encoded ABCC)."""
    return TemplateBank(wavenumber, names).matrix(names)


# ---------------------------------------------------------------------------------------------
# model side: the template encoder E
# ---------------------------------------------------------------------------------------------
class TemplateEncoder(nn.Module):
    """E: template [n, 2, W] -> [n, out_dim]. Each template is scaled by the max |.| of its free
    spectrum (shape, not amount: a mole fraction carries the amount), averaged over patches of
    ``patch`` points ([n, 2 W / patch]), then a 2-layer MLP. composition [B, n] @ E -> [B, out_dim]."""

    def __init__(self, W: int, patch: int, hidden: int, out_dim: int):
        super().__init__()
        self.patch = patch
        self.mlp = nn.Sequential(nn.Linear(2 * (W // patch), hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def embed(self, templates: torch.Tensor) -> torch.Tensor:
        t = templates.to(self.mlp[0].weight.dtype)
        scale = t[:, 0].abs().amax(-1).clamp_min(1e-12)[:, None, None]
        t = t / scale
        n, two, W = t.shape
        pooled = t.reshape(n, two, W // self.patch, self.patch).mean(-1).reshape(n, -1)
        return self.mlp(pooled)

    def forward(self, composition: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
        if composition.shape[-1] != templates.shape[0]:
            raise ValueError(f"composition has {composition.shape[-1]} entries but {templates.shape[0]} "
                             "component templates were given")
        return composition @ self.embed(templates).to(composition.dtype)


# ---------------------------------------------------------------------------------------------
# simulator side: OpIRSim with extra components
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dosage:
    """How much of an extra component a simulated sample gets: with probability ``prob`` it is present
    at ``lo``..``hi`` wt% of the solvent mixture (uniform), replacing that share of the system's solvents."""
    prob: float = 1.0
    lo: float = 10.0
    hi: float = 10.0


@contextmanager
def extended_chemistry(components: Sequence[NewComponent], dosage: Optional[dict] = None):
    """Temporarily add ``components`` (and their reactions) to ``abcc_fast.data.chemistry``'s tables,
    and dose them into every simulated sample (``dosage``: {name: Dosage}, default 10 wt% always).

    Everything inside the block (OpIRSim construction, ``simulate``, ``generate``) sees the extended
    vocabulary: compositions and manifests list the extra components after the known ones; their
    free/bound spectra render like the others (solvation by the same preference rule); without
    reactions they are inert. Presence and amount use uniforms 86.. of each sample's draw (unused by
    the base simulator), so the known components' draws are unchanged. Extra reactions draw their
    rate/onset jitter from uniforms 58.. / 78.. (the latter shared with gain drift / re-seating).
    The tables are restored on exit; not thread-safe (module-level state)."""
    comps = list(components)
    if len(comps) > MAX_EXTRA_COMPONENTS:
        raise ValueError(f"at most {MAX_EXTRA_COMPONENTS} extra components per simulation, got {len(comps)}")
    dosage = dict(dosage or {})
    names = [c.name for c in comps]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate extra component names {names}")
    for n in dosage:
        if n not in names:
            raise ValueError(f"dosage given for {n!r}, which is not among the extra components {names}")
    for c in comps:
        if c.kind == "salt":
            raise ValueError(f"{c.source}: OpIRSim can dose extra solvents/additives only (by weight), not the salt "
                             f"{c.name!r}")
        if c.name in chem.COMPONENTS:
            raise ValueError(f"{c.name!r} is already a known component")
    keys = ("COMPONENTS", "COMPONENT_NAMES", "SOLVENT_NAMES", "SALT_NAMES", "REACTIONS", "REACTION_NAMES")
    saved = {k: getattr(chem, k) for k in keys}
    saved_sp = draws.sample_parameters
    new_comps = dict(chem.COMPONENTS)
    new_rx = dict(chem.REACTIONS)
    for c in comps:
        new_comps[c.name] = c.component
        for r in c.reactions:
            if r.name in new_rx:
                raise ValueError(f"{c.source}: reaction {r.name!r} already exists")
            new_rx[r.name] = r
    doses = [dosage.get(n, Dosage()) for n in names]

    def sample_parameters(U, system_pos, overrides=None):
        p = saved_sp(U, system_pos, overrides)
        w = p["solvent_weights"]
        ci = {n: i for i, n in enumerate(chem.COMPONENT_NAMES)}
        for j, (n, d) in enumerate(zip(names, doses)):
            u_on, u_amt = U[:, EXTRA_UNIFORM0 + 2 * j], U[:, EXTRA_UNIFORM0 + 2 * j + 1]
            frac = np.where(u_on < d.prob, (d.lo + u_amt * (d.hi - d.lo)) / 100.0, 0.0)
            w = w * (1.0 - frac[:, None])
            w[:, ci[n]] += frac
        p["solvent_weights"] = w
        return p

    try:
        chem.COMPONENTS = new_comps
        chem.COMPONENT_NAMES = list(new_comps)
        chem.SOLVENT_NAMES = [n for n, c in new_comps.items() if c.kind != "salt"]
        chem.SALT_NAMES = [n for n, c in new_comps.items() if c.kind == "salt"]
        chem.REACTIONS = new_rx
        chem.REACTION_NAMES = list(new_rx)
        draws.sample_parameters = sample_parameters
        yield
    finally:
        for k, v in saved.items():
            setattr(chem, k, v)
        draws.sample_parameters = saved_sp


def _as_new(c) -> NewComponent:
    if isinstance(c, NewComponent):
        return c
    if isinstance(c, dict):
        return parse_component(c)
    if isinstance(c, (str, Path)):
        if Path(c).suffix.lower() != ".json":
            raise ValueError(f"{c}: OpIRSim needs a band JSON (a measured spectrum has no bands to render)")
        return load_component(c)
    if isinstance(c, ComponentTemplate):
        if c.component is None:
            raise ValueError(f"template {c.name!r} is a measured spectrum; OpIRSim needs its bands (a component JSON)")
        return c.component
    raise TypeError(f"extra component must be a NewComponent, dict or JSON path, got {type(c).__name__}")


def simulate_with(components, indices, seed: int = 0, config=None, dosage: Optional[dict] = None,
                  overrides: Optional[dict] = None, **kw) -> dict:
    """``OpIRSim(config).simulate(indices, seed, overrides)`` with extra components (band JSONs,
    dicts or NewComponents) dosed as ``dosage`` says. ``composition`` has the extra components last."""
    comps = [_as_new(c) for c in components]
    with extended_chemistry(comps, dosage):
        return sim_mod.OpIRSim(config).simulate(indices, seed=seed, overrides=overrides, **kw)


def generate_with(components, out_dir, dosage: Optional[dict] = None, **generate_kw) -> Path:
    """``simulator.generate(out_dir, **generate_kw)`` with extra components: a dataset whose manifest
    vocabulary lists them after the known ones (e.g. a held-out-component study)."""
    comps = [_as_new(c) for c in components]
    with extended_chemistry(comps, dosage):
        return sim_mod.generate(out_dir, **generate_kw)
