"""SEI formation-pathway analysis of predicted or measured operando series, and its evaluation
against synthetic ground truth with classical chemometrics (MCR-ALS, NMF) side by side.

Public API::

    analyze(frames, voltage, wavenumber, time_s=None, solvent=None, sei=None, products=None,
            components=None) -> PathwayAnalysis     (or a list for [B, T, W])
    product_templates(wavenumber, products) -> ProductTemplates   OpIRSim's SEI templates on a grid
    fit_amounts(sei, templates)              per-frame NNLS -> product amounts [.., T, P]
    estimate_streams(frames, wavenumber, templates, components)   SEI/solvent without streams
    onsets(amounts, voltage, ...), formation_order(onsets)
    centroid_drift(frames, wavenumber, marker_windows)
    evaluate(dataset, n) / table_markdown / write_evaluation      truth comparison + chemometrics
                                             (module ``evaluation``)
    chemometrics.decompose / split_sei                            MCR-ALS (pyMCR) and NMF (sklearn)

Definitions (streams, onset, detection, order) are in ``pathway``'s docstring; the evaluation's in
``evaluation``'s. CLI: ``abcc analyze``.
"""
from .pathway import (PathwayAnalysis, analyze, centroid_drift, check_series, components_of, default_products,
                      estimate_streams, fit_amounts, formation_order, onsets)
from .evaluation import evaluate, table_markdown, true_amounts, write_evaluation
from ..data.templates import (ProductTemplates, check_products, film_products, product_templates, reachable,
                        reachable_products)


__all__ = ["PathwayAnalysis", "analyze", "centroid_drift", "check_series", "components_of", "default_products",
           "estimate_streams", "fit_amounts", "formation_order", "onsets", "ProductTemplates", "check_products",
           "film_products", "product_templates", "reachable", "reachable_products", "evaluate", "table_markdown",
           "write_evaluation", "true_amounts"]
