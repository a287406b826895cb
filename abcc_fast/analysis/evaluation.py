"""Pathway analysis against synthetic ground truth, and the chemometrics comparison.

On N samples of a synthetic dataset (default: the first N of the default dataset's random-split
test part) every method gives an SEI (and solvent) estimate of each sample; the same pipeline
then turns it into product amounts (NNLS on the product templates), onsets and an order
(``pathway``), which are compared with those computed by the same definitions from the *true*
product amounts. The true amounts are exact: OpIRSim's film amounts are n_p(t) = sum_k y_pk
xi_k(t), with xi the dataset's ``extent`` field and y the film yields of the manifest's
stoichiometry.

Methods (rows of the table):

- ``truth streams + NNLS``: the true SEI stream, fitted by the templates (the ceiling of the
  amounts/onsets pipeline; its decomp columns are the template-fit reconstruction error of the SEI
  stream, the solvent being given).
- ``template fit (frames)``: ``pathway.estimate_streams`` from the frames alone.
- ``MCR-ALS`` / ``NMF`` on frames or on difference spectra, k components, SEI part matched to the
  true SEI by the oracle of ``chemometrics.split_sei``.
- ``no decomposition``: SEI = 0, solvent = frames (the scale of the decomp numbers).
- ``model`` (with ``model``): the streams a model predicts from the inputs alone (static spectrum,
  protocol, composition, electrode): any callable ``model(batch) -> {"solvent", "sei"}`` on batches of
  ``static``, ``voltage``, ``composition``, ``electrode``, ``time_s``, ``wavenumber``; a saved model
  directory becomes one with ``abcc_fast.train.StreamsPredictor`` (what ``abcc analyze --evaluate
  --model DIR`` does); when it also returns ``frames``, a second row (``FRAMES_FIT_SUFFIX``) scores
  the template fit of its predicted frames, what ``abcc analyze PRED --source frames`` gives for a
  prediction. ``opirbench.SimulatorOracle`` is one too (``--oracle M``): its streams are the
  conditional mean over the draws no input reveals: what the best predictor of these inputs (in
  squared error) would give the pathway analysis. A reference, not a strict bound on the pathway
  scores (the mean of the hidden kinetics' curves is smoother than any one of them).

Scores, per method:

- ``decomp``, ``decomp_sei``, ``decomp_solvent``: ``opirbench.metrics.decomp`` (MAE in AU over
  frames 1..T-1), mean over samples;
- ``onset_mae_V``, ``onset_median_V``: |onset voltage - true onset voltage| over products formed
  in both the truth and the estimate; ``onset_frame_mae`` the same in (fractional) frames;
  ``onset_late_frames``: the median signed error in frames (estimate - truth: > 0 is late; frames
  rather than volts because the sweep runs down, then up);
- ``onset_within_tol``: fraction of truly formed products that the estimate detects with an
  onset within ``tol_V`` (default 0.1 V);
- ``recall`` (truly formed products detected), ``false_products`` (detected but not formed, per
  sample);
- ``order_pairs``: fraction of ordered pairs of truly formed products (true onsets more than
  ``order_gap_frames`` = 1 frame apart: closer onsets are not resolved by the frame grid) that
  the estimate orders the same way (a missed product gets its pairs wrong); ``order_exact``:
  fraction of samples with at least one such pair whose pairs are all right.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import provenance
from .._atomic import write_text
from ..data import chemistry as chem
from ..data import default_dataset
from ..opirbench.metrics import decomp
from . import chemometrics
from .pathway import (DEFAULT_DETECT_AU, DEFAULT_FRACTION, DEFAULT_NOISE_FACTOR, components_of, default_products,
                      estimate_streams, fit_amounts, onsets)
from ..data.templates import product_templates

DEFAULT_N = 200
FRAMES_FIT_SUFFIX = ", template fit of its frames"
DEFAULT_TOL_V = 0.1
ORDER_GAP_FRAMES = 1.0
CHEMOMETRIC_METHODS = tuple((m, mode, k) for m in ("mcr_als", "nmf") for mode in ("frames", "difference")
                            for k in (2, 3))
_LABEL = {"mcr_als": "MCR-ALS (pyMCR)", "nmf": "NMF (scikit-learn)"}


def true_amounts(extent, manifest: dict) -> np.ndarray:
    """True film amounts [..., T, P] (P = ``chem.FILM_SPECIES``) from ``extent`` [..., T, K] and the
    manifest's stoichiometry (n_p = sum_k y_pk xi_k)."""
    reactions = manifest.get("reactions")
    table = {r.get("name"): r for r in manifest.get("stoichiometry", [])}
    if not reactions or any(r not in table for r in reactions):
        raise ValueError("the dataset manifest has no per-reaction stoichiometry; true product amounts need an "
                         "OpIRSim dataset (abcc data generate)")
    y = np.zeros((len(reactions), len(chem.FILM_SPECIES)))
    for k, name in enumerate(reactions):
        for prod, yk in table[name].get("produces", {}).items():
            if prod in chem.FILM_SPECIES:
                y[k, chem.FILM_SPECIES.index(prod)] = float(yk)
    xi = extent.detach().cpu().double().numpy() if isinstance(extent, torch.Tensor) else np.asarray(extent, float)
    if xi.shape[-1] != len(reactions):
        raise ValueError(f"extent has {xi.shape[-1]} reactions, the manifest lists {len(reactions)}")
    return xi @ y


def compare_onsets(est: list, truth: list, tol_V: float = DEFAULT_TOL_V,
                   order_gap_frames: float = ORDER_GAP_FRAMES) -> dict:
    """Per-sample comparison of two ``pathway.onsets`` lists over the same products."""
    t = {o["product"]: o for o in truth}
    e = {o["product"]: o for o in est}
    formed = [p for p, o in t.items() if o["detected"]]
    both = [p for p in formed if e[p]["detected"]]
    errs_v = [abs(e[p]["onset_voltage"] - t[p]["onset_voltage"]) for p in both]
    signed_f = [e[p]["onset_frame"] - t[p]["onset_frame"] for p in both]
    errs_f = [abs(x) for x in signed_f]
    within = sum(1 for p, ev in zip(both, errs_v) if ev <= tol_V)
    false = [p for p, o in e.items() if o["detected"] and not t[p]["detected"]]
    pairs = correct = pairs_both = correct_both = 0
    for i, a in enumerate(formed):
        for b in formed[i + 1:]:
            gap = t[a]["onset_frame"] - t[b]["onset_frame"]
            if abs(gap) <= order_gap_frames:
                continue
            pairs += 1
            if a in both and b in both:
                eg = e[a]["onset_frame"] - e[b]["onset_frame"]
                right = int(np.sign(eg) == np.sign(gap) and eg != 0)
                correct += right
                pairs_both += 1
                correct_both += right
    return {"formed": len(formed), "detected": len(both), "within_tol": within, "false": len(false),
            "errors_V": errs_v, "errors_frames": errs_f, "late_frames": signed_f, "pairs": pairs,
            "pairs_correct": correct, "pairs_detected": pairs_both, "pairs_detected_correct": correct_both}


def _aggregate(rows: list) -> dict:
    errs_v = [x for r in rows for x in r["errors_V"]]
    errs_f = [x for r in rows for x in r["errors_frames"]]
    late_f = [x for r in rows for x in r["late_frames"]]
    formed = sum(r["formed"] for r in rows)
    pairs = sum(r["pairs"] for r in rows)
    pairs_det = sum(r["pairs_detected"] for r in rows)
    with_pairs = [r for r in rows if r["pairs"] > 0]
    nan = float("nan")
    return {
        "products_formed": formed,
        "onset_mae_V": float(np.mean(errs_v)) if errs_v else nan,
        "onset_median_V": float(np.median(errs_v)) if errs_v else nan,
        "onset_frame_mae": float(np.mean(errs_f)) if errs_f else nan,
        "onset_late_frames": float(np.median(late_f)) if late_f else nan,
        "onset_within_tol": sum(r["within_tol"] for r in rows) / formed if formed else nan,
        "recall": sum(r["detected"] for r in rows) / formed if formed else nan,
        "false_products": float(np.mean([r["false"] for r in rows])) if rows else nan,
        "order_pairs": sum(r["pairs_correct"] for r in rows) / pairs if pairs else nan,
        "order_pairs_detected": sum(r["pairs_detected_correct"] for r in rows) / pairs_det if pairs_det else nan,
        "order_pairs_n": pairs,
        "order_exact": float(np.mean([r["pairs_correct"] == r["pairs"] for r in with_pairs])) if with_pairs else nan,
        "samples_with_pairs": len(with_pairs),
    }


def _decomp(sei_est, solvent_est, sei_true, solvent_true) -> dict:
    f = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))[None]  # noqa: E731  [1, T, W]
    out = decomp({"solvent": f(solvent_est), "sei": f(sei_est)}, {"solvent": f(solvent_true), "sei": f(sei_true)})
    return {k: float(v[0]) for k, v in out.items()}


def setup_info() -> dict:
    """Machine, date, versions and git revision of a run."""
    info = provenance.run_info()
    out = provenance.pick(info, "date", "python", "torch", "platform", "cpu_count", "omp_num_threads")
    if info["cpu"] is not None:
        out["cpu"] = info["cpu"]
    if info["load_average_1_5_15"] is not None:
        out["load_average_1_5_15"] = info["load_average_1_5_15"]
    out.update(provenance.versions("numpy", "scipy", "sklearn", "pymcr"))
    out["git"] = info["git"]
    return out


def select_samples(dataset, n: int = DEFAULT_N, split: str = "random", part: str = "test"):
    """The first ``n`` samples (by global index) of ``part`` of ``split`` (all of it when smaller)."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    sub = dataset.split(split, part)
    if len(sub) == 0:
        raise ValueError(f"the {split!r} split of this dataset has no {part!r} samples")
    order = torch.argsort(sub.index)[:n]
    return sub.subset(order)


def _model_streams(model: Callable, ds) -> tuple[dict, float]:
    """Predicted {"solvent", "sei"} [S, T, W] of ``model`` for the samples of ``ds`` (batches of 32), and
    the seconds per sample it took."""
    t0 = time.perf_counter()
    out = {"solvent": [], "sei": [], "frames": []}
    with torch.no_grad():
        for lo in range(0, len(ds), 32):
            sl = slice(lo, lo + 32)
            batch = {"static": ds.static[sl], "voltage": ds.voltage[sl], "composition": ds.composition[sl],
                     "electrode": ds.electrode[sl], "time_s": ds.time_s[sl], "wavenumber": ds.wavenumber}
            if getattr(model, "needs_index", False):      # the simulator oracle reads the global indices
                batch["index"] = ds.index[sl]
            pred = model(batch)
            for k in ("solvent", "sei"):
                if pred.get(k) is None:
                    raise ValueError(f"the model {_model_name(model)} returns no {k!r} stream; it cannot be "
                                     "decomposed")
            for k in out:
                if pred.get(k) is not None:
                    out[k].append(pred[k].detach().float().cpu().numpy())
    if len(out["frames"]) not in (0, len(out["sei"])):
        raise ValueError(f"the model {_model_name(model)} returns 'frames' for some batches only")
    return {k: np.concatenate(v) for k, v in out.items() if v}, (time.perf_counter() - t0) / len(ds)


def _model_name(model: Callable) -> str:
    return str(getattr(model, "name", None) or getattr(model, "__name__", None) or "model")


def evaluate(dataset=None, n: int = DEFAULT_N, *, split: str = "random", part: str = "test",
             model: Optional[Callable] = None, chemometric_methods: Sequence = CHEMOMETRIC_METHODS,
             tol_V: float = DEFAULT_TOL_V, fraction: float = DEFAULT_FRACTION, detect_au: float = DEFAULT_DETECT_AU,
             noise_factor: float = DEFAULT_NOISE_FACTOR, progress: bool = True) -> dict:
    """Score every method on ``n`` samples (module docstring); returns the JSON-ready result
    {"setup", "config", "definitions", "rows": [{"method", ...scores, "seconds_per_sample"}]}.

    ``model``: a predictor of the streams (module docstring), named by its ``name`` attribute, or a
    list of them (one row each).

    Example::

        res = evaluate(data.load("ds"), n=20, chemometric_methods=[("nmf", "difference", 2)])
        print(table_markdown(res))
    """
    if dataset is None:
        dataset = default_dataset(progress=progress)
    if not dataset.synthetic or dataset.extent is None:
        raise ValueError("evaluation needs a synthetic dataset with the solvent/sei/extent fields "
                         "(abcc data generate); measured data has no ground truth")
    ds = select_samples(dataset, n, split, part)
    methods = ["truth streams + NNLS", "template fit (frames)"]
    methods += [f"{_LABEL[m]} on {mode}, k={k}" for m, mode, k in chemometric_methods]
    methods += ["no decomposition (SEI = 0)"]
    models = [] if model is None else list(model) if isinstance(model, (list, tuple)) else [model]
    predicted = []                                    # (method, streams [S, T, W] each, seconds per sample)
    labels = [f"model {_model_name(m)}" for m in models]
    if len(set(labels)) < len(labels):
        raise ValueError(f"evaluate: two models share a name ({', '.join(labels)}); give each a distinct "
                         "`name` attribute so their rows stay apart")
    for m, label in zip(models, labels):
        streams, t_model = _model_streams(m, ds)
        predicted.append((label, streams, t_model))
        methods.append(label)
        if "frames" in streams:
            methods.append(label + FRAMES_FIT_SUFFIX)
    sample = _Samples(dataset, ds, dict(fraction=fraction, detect_au=detect_au, noise_factor=noise_factor), tol_V)
    per = {m: {"cmp": [], "decomp": [], "seconds": 0.0} for m in methods}
    bar = tqdm(total=len(ds), desc="abcc analyze --evaluate", unit="sample") if progress else None
    for s in range(len(ds)):
        sample.score_all(s, per, methods, chemometric_methods,
                         [(name, {k: v[s] for k, v in streams.items()}, t) for name, streams, t in predicted])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    config = {"dataset": str(dataset.root) if dataset.root else None, "dataset_name": dataset.manifest.get("name"),
              "split": split, "part": part, "n_samples": len(ds),
              "sample_indices": [int(i) for i in ds.index.tolist()], "samples_per_system_index": _counts(ds),
              "tol_V": tol_V, "onset_fraction": fraction, "detect_au": detect_au, "noise_factor": noise_factor,
              "order_gap_frames": ORDER_GAP_FRAMES,
              "model": None if not models else ", ".join(_model_name(m) for m in models)}
    return {"setup": setup_info(), "config": config, "definitions": DEFINITIONS, "rows": _rows(per, methods, len(ds))}


def _counts(ds) -> dict:
    counts = {}
    for sys_ in ds.system.tolist():
        counts[str(sys_)] = counts.get(str(sys_), 0) + 1
    return counts


def _rows(per: dict, methods: list, n: int) -> list:
    rows = []
    for m in methods:
        agg = _aggregate(per[m]["cmp"])
        dec = {k: float(np.mean([d[k] for d in per[m]["decomp"]])) for k in ("decomp", "decomp_sei", "decomp_solvent")}
        rows.append({"method": m, **dec, **agg, "seconds_per_sample": per[m]["seconds"] / n})
    return rows


class _Samples:
    """The selected samples as float64 arrays, and the scoring of every method on one of them."""

    def __init__(self, dataset, ds, onset_kw: dict, tol_V: float):
        self.wn = ds.wavenumber.double().numpy()
        self.names_all = list(dataset.manifest.get("components") or chem.COMPONENT_NAMES)
        self.amounts_true = true_amounts(ds.extent, dataset.manifest)                 # [S, T, P_all]
        self.resolution = float(dataset.manifest.get("generator", {}).get("config", {}).get("resolution", 4.0))
        self.frames, self.solvent, self.sei = (getattr(ds, k).double().numpy() for k in ("frames", "solvent", "sei"))
        self.voltage, self.time_s = ds.voltage.double().numpy(), ds.time_s.double().numpy()
        self.composition = ds.composition
        self.onset_kw, self.tol_V = onset_kw, tol_V

    def products(self, s: int):
        """Sample ``s``'s components, the film products its electrolyte can form, their templates
        and their true amounts [T, P] (mol/L)."""
        comps = components_of(self.composition[s], self.names_all)
        products = default_products(self.wn, comps, self.resolution)
        tpl = product_templates(self.wn, products, self.resolution)
        return comps, products, tpl, self.amounts_true[s][:, [chem.FILM_SPECIES.index(p) for p in products]]

    def score_all(self, s: int, per: dict, methods: list, chemometric_methods, model_streams: list):
        """Every method's estimate of sample ``s``, compared with the truth, into ``per``;
        ``model_streams``: (method, {"sei", "solvent"} of this sample, seconds per sample) per model."""
        comps, products, tpl, amounts = self.products(s)
        truth = onsets(amounts, self.voltage[s], self.time_s[s], products, tpl.peak, **self.onset_kw)
        sei, solvent, frames = self.sei[s], self.solvent[s], self.frames[s]

        def score(method, sei_est, solvent_est, noise_rms=None, seconds=0.0, decomp=None):
            t0 = time.perf_counter()
            fit = fit_amounts(sei_est, tpl)
            rms = fit["residual_rms"] if noise_rms is None else noise_rms
            est = onsets(fit["amounts"], self.voltage[s], self.time_s[s], products, tpl.peak,
                         noise_au=float(np.median(rms[1:])), **self.onset_kw)
            per[method]["cmp"].append(compare_onsets(est, truth, self.tol_V))
            per[method]["decomp"].append(decomp or _decomp(sei_est, solvent_est, sei, solvent))
            per[method]["seconds"] += seconds + time.perf_counter() - t0

        # truth streams: decomp columns = reconstruction error of the template fit of the SEI stream
        recon = fit_amounts(sei, tpl)["fit"]
        score("truth streams + NNLS", sei, solvent, decomp=_decomp(recon, solvent, sei, solvent))
        t0 = time.perf_counter()
        est = estimate_streams(frames, self.wn, tpl, comps, self.resolution)
        score("template fit (frames)", est["sei"], est["solvent"], est["residual_rms"], time.perf_counter() - t0)
        for (m, mode, k), label in zip(chemometric_methods, methods[2:2 + len(chemometric_methods)]):
            t0 = time.perf_counter()
            dec = chemometrics.decompose(frames, m, k, mode)
            split_ = chemometrics.split_sei(dec["parts"], dec["total"], sei)
            score(label, split_["sei"], split_["solvent"], None, time.perf_counter() - t0)
        score("no decomposition (SEI = 0)", np.zeros_like(sei), frames)
        for name, streams, t_model in model_streams:
            score(name, streams["sei"], streams["solvent"], None, t_model)
            if "frames" in streams:         # the template fit applied to the model's predicted frames
                t0 = time.perf_counter()
                est = estimate_streams(streams["frames"], self.wn, tpl, comps, self.resolution)
                score(name + FRAMES_FIT_SUFFIX, est["sei"], est["solvent"], est["residual_rms"],
                      t_model + time.perf_counter() - t0)


DEFINITIONS = {
    "decomp": "opirbench decomp: (MAE(solvent) + MAE(sei)) / 2 in AU over frames 1..T-1 (truth-stream row: "
              "template reconstruction error of the true SEI stream, solvent given)",
    "onset": "first frame from which a product's amount stays >= onset_fraction x its largest amount up to that "
             "largest amount, linearly interpolated; formed when largest amount x strongest template band >= "
             "max(detect_au, noise_factor x median rms residual of the fit)",
    "onset_mae_V": "mean |onset V - true onset V| over products formed in both truth and estimate",
    "onset_late_frames": "median of (onset frame - true onset frame) over products formed in both: > 0 is late",
    "onset_within_tol": "fraction of truly formed products detected with |onset error| <= tol_V",
    "recall": "fraction of truly formed products that the estimate detects",
    "false_products": "products detected but not truly formed, per sample",
    "order_pairs": "fraction of pairs of truly formed products with true onsets > order_gap_frames apart that the "
                   "estimate orders alike (missed products count as wrong)",
    "order_pairs_detected": "the same over pairs that the estimate detects both of",
    "order_exact": "fraction of samples (with >= 1 such pair) whose pairs are all ordered right",
    "chemometrics": "MCR-ALS / NMF SEI part chosen by an oracle: the subset of components (referenced to frame 0) "
                    "closest to the true SEI; the rest of the reconstruction is the solvent estimate",
}

_COLUMNS = [("method", "method", "{}"), ("decomp", "decomp (AU)", "{:.2e}"), ("decomp_sei", "decomp_sei", "{:.2e}"),
            ("decomp_solvent", "decomp_solvent", "{:.2e}"), ("onset_mae_V", "onset MAE (V)", "{:.3f}"),
            ("onset_median_V", "onset median (V)", "{:.3f}"), ("onset_late_frames", "onset late (frames)", "{:+.2f}"),
            ("onset_within_tol", "onset within tol", "{:.2f}"),
            ("recall", "recall", "{:.2f}"), ("false_products", "false products / sample", "{:.2f}"),
            ("order_pairs", "order (pairs)", "{:.2f}"), ("order_pairs_detected", "order (detected pairs)", "{:.2f}"),
            ("order_pairs_n", "pairs", "{}"), ("order_exact", "order (samples)", "{:.2f}"),
            ("seconds_per_sample", "s / sample", "{:.3f}")]


def table_markdown(result: dict) -> str:
    """The comparison table as Markdown, with the setup and definitions."""
    cfg, st = result["config"], result["setup"]
    lines = [f"# SEI pathway analysis vs chemometrics ({cfg['n_samples']} samples)", "",
             f"- data: {cfg.get('dataset_name')} ({cfg.get('dataset')}), split {cfg['split']}/{cfg['part']}, "
             f"first {cfg['n_samples']} samples by index",
             f"- onset tolerance {cfg['tol_V']} V, onset fraction {cfg['onset_fraction']}, detection "
             f"max({cfg['detect_au']} AU, {cfg['noise_factor']} x fit rms), order pairs need true onsets "
             f"> {cfg['order_gap_frames']} frame apart",
             f"- setup: {st.get('date')}, git {st.get('git')}, {st.get('cpu')} x{st.get('cpu_count')}, "
             f"OMP_NUM_THREADS={st.get('omp_num_threads')}, load {st.get('load_average_1_5_15')}, python "
             f"{st.get('python')}, torch {st.get('torch')}, scipy {st.get('scipy')}, scikit-learn {st.get('sklearn')}, "
             f"pymcr {st.get('pymcr')}", "",
             "| " + " | ".join(h for _, h, _ in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for r in result["rows"]:
        cells = []
        for key, _, fmt in _COLUMNS:
            v = r.get(key)
            cells.append("n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Definitions:", ""] + [f"- `{k}`: {v}" for k, v in result["definitions"].items()]
    return "\n".join(lines) + "\n"


def write_evaluation(result: dict, out_dir, stem: str = "evaluation") -> dict:
    """Write ``stem.md`` and ``stem.json`` into ``out_dir`` atomically; returns their paths."""
    out = Path(out_dir)
    md = write_text(out / f"{stem}.md", table_markdown(result))
    js = write_text(out / f"{stem}.json", json.dumps(result, indent=1, allow_nan=True) + "\n")
    return {"md": md, "json": js}
