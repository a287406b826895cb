"""Figures: each returns a Figure, writes a PNG atomically, rejects bad shapes."""
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from abcc_fast import viz

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def spectra():
    wn = torch.linspace(700.0, 1900.0, 64)
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(6, 64, generator=g)
    return wn, frames, torch.linspace(3.0, 0.01, 6), torch.linspace(0, 3600, 6)


def _check(fig, path):
    assert isinstance(fig, Figure)
    assert path.read_bytes()[:8] == PNG
    assert not list(path.parent.glob(".*.png"))  # no temporary left behind
    plt.close(fig)


def test_all_figures_write_png(spectra, tmp_path):
    wn, frames, v, t = spectra
    _check(viz.operando_heatmap(wn, frames, t, voltage=v, path=tmp_path / "h.png"), tmp_path / "h.png")
    _check(viz.operando_heatmap(wn, frames, subtract_first=False, path=tmp_path / "h2.png"), tmp_path / "h2.png")
    _check(viz.waterfall(wn, frames, every=2, path=tmp_path / "w.png"), tmp_path / "w.png")
    _check(viz.difference_spectra(wn, frames, frames * 0.9, path=tmp_path / "d.png"), tmp_path / "d.png")
    _check(viz.difference_spectra(wn, frames, reference="static", static=frames[0], path=tmp_path / "d2.png"),
           tmp_path / "d2.png")
    _check(viz.decomposition(wn, frames, frames * 0.1, pred_solvent=frames, pred_sei=frames * 0.2,
                             path=tmp_path / "c.png"), tmp_path / "c.png")
    cents = torch.stack([torch.linspace(1770, 1765, 6), torch.linspace(728, 730, 6)], 1)
    _check(viz.centroid_drift(v, cents, cents + 1, window_names=["C=O", "ring"], path=tmp_path / "cd.png"),
           tmp_path / "cd.png")
    _check(viz.uncertainty_band(wn, frames[0], frames[0] - 0.1, frames[0] + 0.1, truth=frames[1],
                                path=tmp_path / "u.png"), tmp_path / "u.png")


def test_figure_without_path_returns_figure(spectra):
    wn, frames, _, _ = spectra
    fig = viz.waterfall(wn, frames)
    assert isinstance(fig, Figure)
    plt.close(fig)


def test_bad_shapes(spectra):
    wn, frames, v, _ = spectra
    with pytest.raises(ValueError, match=r"\[T, W\]"):
        viz.operando_heatmap(wn, frames[:, :10])
    with pytest.raises(ValueError, match="static"):
        viz.difference_spectra(wn, frames, reference="static")
    with pytest.raises(ValueError, match="frames"):
        viz.centroid_drift(v[:3], torch.zeros(6, 2))
