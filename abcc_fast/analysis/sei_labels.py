"""SEI-stream labels from the measured frames: the template fit of every sample, cached.

A model trained on frames alone is told nothing about *which* part of a change is film: the
frame loss is the same whether a carbonate band grows in the SEI stream or in the solvent stream,
and the film's bands are a small part of the squared error. The template fit
(:func:`~abcc_fast.analysis.pathway.estimate_streams`) separates them from the frames alone, with
the component and film-product reference spectra: non-negative product amounts per frame, the
electrolyte's free and bound bands, contact and baseline terms. It needs nothing a real operando
measurement lacks (no synthetic truth), so its SEI stream can serve as a training label for the
model's SEI stream (``ABCCConfig.w_sei_label``).

The labels are stored compactly: per sample and frame the coefficients on every film product's
aging-state templates, [S, T, P x J] over ``chemistry.FILM_SPECIES`` (zeros for products the
electrolyte cannot form); the SEI stream is ``coefficients @ label_templates(...)`` [T, W] (AU).
They are computed once per dataset (about 0.03 s per sample, one thread) and cached beside the
default dataset (``$ABCC_DATA_DIR`` or ``~/.cache/abcc_fast``), keyed by the manifest's sha256.
On synthetic data the fit is optimistic: the same templates made the data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .._atomic import atomic_path
from ..data import chemistry as chem
from ..data.manifest import manifest_sha256
from ..data.simulator import default_cache_dir
from ..data.templates import product_templates, simulator_basis
from .pathway import components_of, default_products, estimate_streams

LABEL_VERSION = 1


def _resolution(dataset) -> float:
    return float(dataset.manifest.get("generator", {}).get("config", {}).get("resolution", 4.0))


def label_templates(wavenumber, resolution: float = 4.0) -> torch.Tensor:
    """[P x J, W] every film product's aging-state templates (AU per mol/L), rows p * J + j."""
    sei = simulator_basis(np.asarray(wavenumber, dtype=np.float64), resolution).sei       # [P, J, W]
    return torch.from_numpy(sei.reshape(-1, sei.shape[-1]).copy())


def fit_coefficients(dataset, indices=None, progress: bool = True) -> torch.Tensor:
    """The template fit's SEI coefficients of samples ``indices`` (rows of ``dataset``; default all),
    [N, T, P x J] float32 in the rows of :func:`label_templates`."""
    idx = range(len(dataset)) if indices is None else [int(i) for i in indices]
    wn = dataset.wavenumber.double().numpy()
    res = _resolution(dataset)
    names = list(dataset.manifest.get("components") or chem.COMPONENT_NAMES)
    J = simulator_basis(wn, res).sei.shape[1]
    out = torch.zeros(len(idx), dataset.T, len(chem.FILM_SPECIES) * J)
    for n, s in enumerate(tqdm(idx, desc="SEI labels (template fit)", unit="sample", disable=not progress)):
        comps = components_of(dataset.composition[s].double().numpy(), names)
        products = default_products(wn, comps, res)
        fit = estimate_streams(dataset.frames[s].double().numpy(), wn, product_templates(wn, products, res),
                               comps, res)
        cols = [chem.FILM_SPECIES.index(p) * J + j for p in products for j in range(J)]
        out[n][:, cols] = torch.from_numpy(fit["coefficients"]).float()
    return out


def _cache_path(dataset, cache_dir=None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "sei_labels" / f"{manifest_sha256(dataset)[:24]}-v{LABEL_VERSION}.safetensors"


def sei_label_coefficients(dataset, progress: bool = True, cache_dir=None) -> torch.Tensor:
    """:func:`fit_coefficients` of every sample of the dataset the rows of ``dataset`` come from,
    indexed by global sample index [S_all, T, P x J]; read from the cache or computed once and
    written atomically. ``dataset`` may be a split part: its rows' global ``index`` select."""
    import fcntl  # POSIX only: one process builds the cache, the others wait and read it

    path = _cache_path(dataset, cache_dir)
    n_all = int(dataset.manifest.get("num_samples") or (int(dataset.index.max()) + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            coef = _read_cache(path, n_all, dataset.T)
            if coef is not None:
                return coef
            if len(dataset) != n_all:
                raise ValueError("sei_label_coefficients: no cached labels for this dataset; call it once with the "
                                 "whole dataset (not a split part) to build them")
            coef = fit_coefficients(dataset, progress=progress)
            with atomic_path(path, suffix=".safetensors") as tmp:
                save_file({"coefficients": coef.contiguous()}, str(tmp))
            return coef
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_cache(path: Path, n_all: int, T: int) -> Optional[torch.Tensor]:
    """The cached coefficients, or None when absent, damaged or of another shape (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        coef = load_file(str(path))["coefficients"]
    except (SafetensorError, KeyError, OSError):
        return None
    return coef if coef.shape[0] == n_all and coef.shape[1] == T else None


def sei_labels(dataset, rows, coefficients: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The template-fit SEI stream [len(rows), T, W] (AU) of rows ``rows`` of ``dataset``."""
    coef = sei_label_coefficients(dataset, progress=False) if coefficients is None else coefficients
    G = label_templates(dataset.wavenumber.double().numpy(), _resolution(dataset)).float()
    glob = dataset.index[torch.as_tensor(rows, dtype=torch.long)]
    return coef[glob] @ G


def fitted_labels(dataset, rows) -> torch.Tensor:
    """The template-fit SEI stream [len(rows), T, W] (AU) of rows ``rows`` of ``dataset``, fitted now and
    not cached: for a few samples (a timing, a smoke test) where fitting the whole dataset would dominate."""
    coef = fit_coefficients(dataset, indices=rows, progress=False)
    return coef @ label_templates(dataset.wavenumber.double().numpy(), _resolution(dataset)).float()


class SeiLabelled(torch.utils.data.Dataset):
    """Rows of ``data`` (a split part of ``whole``) with ``sei_label`` [T, W] (AU) added to each item."""

    def __init__(self, data, whole, progress: bool = True):
        self.data = data
        self.coefficients = sei_label_coefficients(whole, progress=progress)
        self.templates = label_templates(whole.wavenumber.double().numpy(), _resolution(whole)).float()

    def __len__(self) -> int:
        return len(self.data)

    def __getattr__(self, name):       # the wrapped part's own methods (set_epoch, ...) stay reachable
        if name == "data":
            raise AttributeError(name)
        return getattr(self.data, name)

    def __getitem__(self, i: int) -> dict:
        item = self.data[i]
        item["sei_label"] = self.coefficients[int(item["index"])] @ self.templates
        return item
