"""The simulator oracle: how well *any* model could score on an OpIRSim dataset.

Each OpIRSim sample is a deterministic function of its random draws. Some of them shape the inputs
a predictor gets (static spectrum, voltage/time protocol, composition, electrode); the others
(``abcc_fast.data.draws.HIDDEN_DRAWS``: film-growth kinetics, salt polarisation, operando
baseline drift and electrode terms, frame noise) no input reveals. One pair is revealed only in
part: the static spectrum scales with contact x (1 + static_gain) (a separate measurement, the cell
re-seated), the operando frames with the contact alone, so the inputs give the product, not the
split. The predictor that minimises the expected squared error is the conditional mean over
everything the inputs do not reveal. ``SimulatorOracle`` estimates it by Monte Carlo: it
re-simulates each test sample ``replicates`` times with the visible draws fixed, the hidden ones
redrawn and the static gain redrawn from its distribution given the product (the contact follows,
so every input stays the same; ``draws.conditional_randoms``), and predicts the mean (streams
too). It reads the sample's global index and the dataset's generator settings, never its frames.

Its MSE exceeds the Bayes bound by (hidden variance) / replicates; ``abcc bench --oracle M`` and
the demo report it with M = 16 (about 6 % above the bound on the default data, measured).

On held-out systems that bound assumes more than any training data can teach: OpIRSim gives some
electrodes chemistry of their own (``chemistry.ELECTRODE_MODIFIERS``: a reaction's onset, rate or
passivation changed on one electrode; cracking of Si exposing fresh surface; plating on Cu and Li
doing the same). ``training_knowledge(dataset, split)`` lists those effects that no training sample
of the split exhibits, and ``SimulatorOracle(..., knowledge=...)`` re-simulates without them: the
best a model could do that had learned everything the training part shows, and treats what it
cannot show as absent. It is a reference for transfer, not a bound: a model may guess better.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..data import chemistry as chem
from ..data import simulator as sim_mod

# electrode mechanisms of OpIRSim beyond the reaction modifiers: (simulator parameter that scales
# them, the electrodes that have them)
ELECTRODE_MECHANISMS = {"crack": ("Si",), "fresh": ("Cu", "Li")}


def training_knowledge(dataset, split: str) -> dict:
    """The electrode effects a model trained on the training part of ``split`` can have seen.

    A reaction's electrode modifier counts as seen when some training sample has that electrode and
    holds every component the reaction consumes; a mechanism of ``ELECTRODE_MECHANISMS`` when some
    training sample has one of its electrodes. Effects that no sample of the dataset has are kept
    (they change nothing). Returns ``modifiers`` (for ``OpIRSim.simulate``: all but the unseen),
    ``overrides`` (the unseen mechanisms' parameters set to 0) and ``unseen`` (readable names of
    what is left out)."""
    train = dataset.split(split, "train")
    if len(train) == 0:
        raise ValueError(f"split {split!r} has no training samples: nothing to learn the electrode effects from")
    names = [c if isinstance(c, str) else str(c.get("name", c)) for c in (dataset.manifest.get("components") or [])]
    if len(names) != int(dataset.composition.shape[1]):
        raise ValueError("the manifest's component names do not match the composition columns; regenerate the dataset")
    electrodes = np.array(dataset.manifest.get("electrodes") or chem.ELECTRODES)

    def cells(part):
        return (part.composition > 0).numpy(), electrodes[part.electrode.numpy()]

    (train_has, train_el), (all_has, all_el) = cells(train), cells(dataset)
    modifiers, overrides, unseen = {}, {}, []
    for (rname, ename), mod in chem.ELECTRODE_MODIFIERS.items():
        need = [names.index(c) for c in chem.REACTIONS[rname].consumes if c in names]
        seen = ((train_el == ename) & train_has[:, need].all(axis=1)).any()
        occurs = ((all_el == ename) & all_has[:, need].all(axis=1)).any()
        if seen or not occurs:
            modifiers[(rname, ename)] = mod
        else:
            unseen.append(f"{rname} on {ename}")
    for param, els in ELECTRODE_MECHANISMS.items():
        if np.isin(all_el, els).any() and not np.isin(train_el, els).any():
            overrides[param] = 0.0
            unseen.append(f"{param} ({'/'.join(els)})")
    return {"modifiers": modifiers, "overrides": overrides, "unseen": unseen}


class SimulatorOracle:
    """OpIRBench predictor: the Monte-Carlo conditional mean of an OpIRSim dataset's frames.

    >>> oracle = SimulatorOracle(dataset.manifest, replicates=16)      # doctest: +SKIP
    >>> evaluate(oracle, dataset, "random").metrics["mse"]              # doctest: +SKIP
    """

    needs_frame0 = False
    needs_index = True     # evaluate() passes the global sample indices (batch["index"])

    def __init__(self, manifest: dict, replicates: int = 16, draw_seed: int = 0, knowledge: Optional[dict] = None):
        """``knowledge``: ``training_knowledge(dataset, split)`` to re-simulate without the electrode
        effects the split's training part does not show (the name then says so); None: all physics."""
        gen = (manifest or {}).get("generator") or {}
        if gen.get("name") != sim_mod.GENERATOR_NAME:
            raise ValueError(f"the simulator oracle needs an OpIRSim dataset; this one was made by "
                             f"{gen.get('name')!r} (real or imported data has no oracle)")
        if gen.get("version") != sim_mod.GENERATOR_VERSION:
            raise ValueError(f"the dataset was generated by OpIRSim {gen.get('version')}, this is OpIRSim "
                             f"{sim_mod.GENERATOR_VERSION}: regenerate the dataset (abcc data generate) to use "
                             "the oracle")
        if int(replicates) < 1:
            raise ValueError(f"replicates must be >= 1, got {replicates}")
        self.sim = sim_mod.OpIRSim(sim_mod.SimConfig.from_json(gen.get("config") or {}))
        self.seed = int(gen.get("seed", 0))
        self.replicates = int(replicates)
        self.draw_seed = int(draw_seed)
        self.knowledge = knowledge
        self.name = f"oracle (M={self.replicates})" if knowledge is None else \
            f"oracle (M={self.replicates}, training electrode chemistry)"
        self.config = {"reference": "simulator-oracle", "generator": gen.get("name"),
                       "version": gen.get("version"), "replicates": self.replicates, "draw_seed": self.draw_seed,
                       "static_gain": "redrawn given contact x (1 + static_gain)"}
        if knowledge is not None:
            self.config["left_out"] = list(knowledge["unseen"])

    def __call__(self, batch: dict) -> dict:
        if "index" not in batch:
            raise ValueError("SimulatorOracle needs batch['index'] (global sample indices); score it with "
                             "abcc_fast.opirbench.evaluate, which supplies them")
        idx = torch.as_tensor(batch["index"]).reshape(-1).cpu().numpy().astype(np.int64)
        know = self.knowledge or {}
        out = self.sim.conditional_mean(idx, seed=self.seed, replicates=self.replicates, draw_seed=self.draw_seed,
                                        overrides=know.get("overrides") or None, modifiers=know.get("modifiers"))
        static = torch.as_tensor(batch["static"]).cpu().numpy()
        err = float(np.abs(out["static"] - static).max()) if static.size else 0.0
        if err > 1e-4 * max(1.0, float(np.abs(static).max())):
            raise ValueError(f"SimulatorOracle: re-simulated static spectra differ from the dataset's by {err:.3g} AU; "
                             "the dataset was not generated by this OpIRSim with these settings (or was modified)")
        return {k: torch.from_numpy(out[k]) for k in ("frames", "solvent", "sei")}
