"""Figures: operando heatmap, waterfall, difference spectra, solvent/SEI
decomposition, band-centroid drift vs voltage, uncertainty bands. Agg backend; every function
returns the Figure and saves PNG atomically when given ``path``."""
from .figures import (centroid_drift, decomposition, difference_spectra, operando_heatmap, save_figure,
                      to_numpy, uncertainty_band, waterfall)

__all__ = ["operando_heatmap", "waterfall", "difference_spectra", "decomposition", "centroid_drift",
           "uncertainty_band", "save_figure", "to_numpy"]
