"""ABCCConfig: everything that defines an ABCC model, JSON-serialisable.

Three presets: ``tiny`` (CI; trains in seconds), ``cpu_default`` (the demo's model on 2 CPU cores),
``gpu_default`` (H100). Data-derived fields (grid, vocabularies, normalisation) come from
``ABCCConfig.from_dataset(ds, split, preset=...)``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Optional

from ..data import chemistry as chem
from ..presets import CONFIG_PRESETS as PRESETS  # the preset names, defined once


@dataclass
class ABCCConfig:
    # -- data-derived (from_dataset) ---------------------------------------------------------
    W: int = 512                       # wavenumber points
    T: int = 32                        # frames per sample (tau_k = k / (T - 1))
    n_components: int = 15             # composition vocabulary size C
    n_electrodes: int = 5
    n_reactions: int = 18              # reaction families K of the extent head
    wavenumber: list = field(default_factory=list)     # [W] cm^-1 ascending (empty: not checked)
    marker_windows: dict = field(default_factory=dict)  # {name: [lo, hi]} cm^-1
    components: list = field(default_factory=list)     # names, for error messages
    reactions: list = field(default_factory=list)      # reaction family names, the extents' order (extent_chemistry)
    # composition representation: "vocabulary" = one context slot per component;
    # "templates" = sum_i x_i E(template_i), E a learned encoder of each component's band template
    # (abcc_fast.vocabulary), so a new component is a new template (predict(extra_components=...))
    composition_encoding: str = "vocabulary"
    template_dim: int = 16             # width of E(template) with composition_encoding="templates"
    electrodes: list = field(default_factory=list)
    norm_mean: float = 0.0             # training-split frame mean (AU): x_z = (x - mean) / std
    norm_std: float = 1.0
    volt_mean: float = 1.5             # voltage scaling of the condition: (V - mean) / std
    volt_std: float = 1.0
    use_duration: bool = True          # condition on log(protocol duration) (time_s[-1] - time_s[0])
    duration_log_mean: float = 10.0    # scaling of that condition: (log(seconds) - mean) / std
    duration_log_std: float = 1.0
    # protocol history (the model conditions on V(r), V(tau); film growth integrates the whole
    # history, so the protocol state at time t also holds the cumulative exposure below each
    # potential level: X_j(t) = log(1 + int_0^t sigmoid((E_j - V(s)) / history_width) ds / 1 h))
    history_levels: list = field(default_factory=lambda: [1.8, 1.5, 1.3, 1.1, 0.9, 0.7, 0.5, 0.3, 0.1, 0.0])
    history_width: float = 0.05        # V, width of the logistic exposure switch
    history_elapsed: bool = True       # also log(1 + elapsed hours) in the protocol state (last column)
    current_proxy: bool = True         # also dV/dt (V per hour, smoothed over frames) in the protocol state
    turnaround: bool = False           # also the frame's place against the turn from lithiation to delithiation
                                       # (series.turnaround_phase): the current's sign where dV/dt is ~0
    turn_relax_hours: list = field(default_factory=list)  # turnaround: also the first-order relaxations since
                                       # the turn with these time constants (hours; empty: none)
    profile_points: int = 32           # the whole voltage profile, resampled to this many points, in the context

    # -- architecture (two-stream MM-DiT, docs/model.md) ---------------------------------------
    patch: int = 16                    # wavenumber points per token (W % patch == 0)
    dim: int = 64                      # token width
    depth: int = 2                     # joint blocks
    heads: int = 2                     # head dim = dim / heads (fused attention: 32, 64 or 128)
    mlp_ratio: float = 2.0
    baseline_basis: int = 4            # Legendre polynomials of the smooth baseline nuisance (0: none)
    sei_basis: str = "free"            # "free": the SEI head paints any spectrum; "templates": the SEI stream is a
                                       # combination of the film products' band templates (the
                                       # simulator's line shapes on the model grid): it cannot absorb sharp
                                       # solvent-band changes, which then stay in the solvent stream
    streams: int = 2                   # 2: solvent + SEI streams; 1 (ablation): the SEI stream's velocity is
                                       # forced to 0, so the solvent stream (+ baseline) carries every change
                                       # (the SEI-side tokens still take part in the joint attention)
    n_freq: int = 8                    # Fourier features per time input (r, tau - r)
    decoder_hidden: int = 128          # width of the per-token MLP of the tau decoder
    basis_rank: int = 32               # learned whole-spectrum basis of the solvent decoder (0: none)
    solvent_basis: str = "free"        # "free": per-patch output projections (+ the learned basis) paint any
                                       # change; "physics": a combination of the electrolyte's band templates
                                       # (free/bound state of every component, soluble species) and the
                                       # static spectrum times nu, nu^2 (the film's displacement of electrolyte,
                                       # exp(-2L/d_p(nu)), to second order), plus the rank-``basis_rank`` residual
    film_constant: bool = False        # "physics" solvent head: also the static spectrum itself as a row (the
                                       # constant term of the film's quadratic in nu, and the contact step
                                       # between the static measurement and the operando cell)
    clean_static: bool = False         # "physics" solvent head: also a row holding the static spectrum's part outside
                                       # the span of the templates and the baseline polynomials (its measurement
                                       # noise and atmosphere, which the operando frames do not share)
    solvent_shift_rows: bool = False   # "physics" solvent head: also d/dnu of every electrolyte template (a
                                       # band's small shift is its derivative times the shift)
    residual_off_sei: bool = False     # "physics" solvent head with "templates" SEI head: the learned residual
                                       # basis is projected off the span of the SEI templates, so it cannot
                                       # paint SEI bands (the electrolyte's own templates still can)
    solvent_present_only: bool = False   # "physics" solvent head: a cell uses only the template rows of the
                                       # components it holds or its reactions make (and the soluble products):
                                       # an absent component's bands cannot stand in for SEI bands
    sei_reachable_only: bool = False   # "templates" SEI head: a cell uses only the products its components'
                                       # reactions can form. Both need composition_encoding "vocabulary" (the
                                       # context starts with the composition)
    sei_from_extents: bool = False     # the SEI stream is sum_k xi_k(tau) P_k: the extent head's reaction extents
                                       # (>= 0, non-decreasing, integrated over the protocol) times one learned
                                       # non-negative spectrum per reaction family (a mix of the SEI templates)
    extent_chemistry: bool = False     # sei_from_extents with the reaction families' stoichiometry: reaction k
                                       # forms only its own film products (the mix is masked) and runs only in
                                       # cells that hold, or make, what it consumes (its rate is masked); needs
                                       # the reaction names (reactions) and composition_encoding "vocabulary"
    extent_onsets: bool = False        # sei_from_extents: each rate gated below a learned onset potential,
                                       # rate x sigmoid((E_k + dE_k(electrode) - V) / w_k), E_k starting from
                                       # the chemistry tables' onsets (extent_chemistry names them; else 1 V)
    onset_path: bool = False           # extent_onsets: each interval's gate is the share of the interval spent
                                       # below the onset on the potential path V(tau_{j-1}) -> V(tau_j) (shaped
                                       # by onset_path_power), not its value at V(tau_j): a reaction whose onset
                                       # a linear first sweep crosses half-way runs for half the interval
    onset_path_power: float = 1.0      # onset_path: the path's shape V(s) = V_end + (V_start - V_end)(1 - s)^p
                                       # over the interval (s: its time fraction); p starts here for every
                                       # electrode and is learned per electrode. p > 1: the potential moves
                                       # fast first (a fresh electrode has little capacity above its first
                                       # plateau); 1: linear
    extent_passivation: float = 0.0    # A > 0 (sei_from_extents): the passivating reactions' film slows them,
                                       # rate x exp(-theta), d theta = sum_k c_k dxi_k (logarithmic growth,
                                       # integrated exactly between frames); c_k > 0 learned, started at
                                       # A / (initial rate): the film of the initial rates alone would slow
                                       # growth e-fold A times over the protocol. 0: off (straight-line start)
    solvent_kind_coef: bool = False    # solvent_basis="physics": each component's template rows also get a
                                       # fraction shared by its kind and band state (solvent/additive/salt x
                                       # free/bound) times the row's amount in the static spectrum, so a
                                       # component no training cell holds moves as its kind does
                                       # (model/solvent_rows.py)
    solvent_kind_scale: str = "amount"  # solvent_kind_coef: the shared fraction times the row's static amount
                                       # ("amount"), or times its amount per unit mole fraction ("per_fraction":
                                       # a shared change of mole fraction)
    solvent_kind_gain: float = 1.0     # solvent_kind_coef: the shared fractions' output scale (a smaller gain
                                       # is a smaller step for them: less freedom on the training chemistry)
    coef_readout: str = "mean"         # how the template heads read their coefficients from the FiLM features:
                                       # "mean" over the stream's tokens, then Linear(H, M); "flat": the tokens'
                                       # features side by side, Linear(N H, M) (where a band sits matters)
    delta_tau: float = 0.01            # u = displacement / (tau - r + delta_tau): the decoder's output scale
    relax_hours: list = field(default_factory=lambda: [1 / 60, 5 / 60, 0.25, 1.0, 4.0])  # relaxation
                                       # time constants of the decoder's elapsed-time features (hours)
    attention_backend: Optional[str] = None   # None: automatic (fused on GPU)
    ops_backend: Optional[str] = None         # meanflow_target / meanflow_integrate backend

    # -- chemical flow (docs/model.md) -----------------------------------------------------------
    mf_pairs: int = 0                  # MeanFlow sources r ~ U(0, 1) per sample and step besides r = 0; each is
                                       # encoded once and decoded at tau = r and at every frame (needed by
                                       # predict(steps > 1) and by predictions from a measured frame at r > 0)
    jvp_mode: str = "full"             # "full": identity target with the JVP d/dr u; "none": flow-matching
                                       # target (du/dr = 0)
    identity_target: str = "lowrank"   # v_r from "lowrank" (the batch's frame changes projected on their top
                                       # identity_rank singular vectors, then central differences) or "raw" frames
    identity_rank: int = 16
    traj_frames: int = 0               # r = 0 jumps per sample (0: all T frames; else a random subset)
    adaptive_c: float = 1e-3           # MeanFlow adaptive weight w = 1 / (e + c)^p
    adaptive_p: float = 1.0

    # -- loss weights (0 switches a term off; docs/model.md) --------------------------------------
    w_displacement: float = 1.0        # ||x_r + (tau - r) u - x_tau||^2 on frame pairs (r = 0 from static)
    w_identity: float = 0.0            # adaptive-weighted MeanFlow identity on the MeanFlow sources (off: it
                                       # measured worse than the displacement loss alone, see docs/model.md)
    w_sei_nonneg: float = 1.0          # relu(-z)^2
    w_sei_growth: float = 0.3          # relu(z_{k-1} - z_k)^2
    w_sei_sparsity: float = 0.01       # mean |z|: the SEI stream explains only what the solvent cannot
    w_mass: float = 0.1                # area changes of both streams tied to the reaction extent
    mass_nuisance: bool = True         # the solvent area's non-reaction changes (contact step, gain drift, salt
                                       # polarisation ~ current) are projected out of the mass residual
    w_peak_drift: float = 0.002        # centroid drift of predicted frames vs the data's (per 1 cm^-1)
    w_peak_accel: float = 0.002        # centroid second differences over tau (per 1 cm^-1)
    peak_accel: str = "excess"         # "excess": only the predicted acceleration beyond the data's (the true
                                       # centroids kink when the current switches); "all": every acceleration
                                       # (the earlier form, which penalises the truth's own kinks)
    w_smooth: float = 0.01             # second differences along wavenumber of the predicted changes
    w_solvent_new_bands: float = 0.3   # solvent stream above static where static has no band
    w_sei_label: float = 0.0           # SEI stream vs the template fit of the training frames (z-units^2;
                                       # analysis.sei_labels: from the frames alone, no synthetic truth)
    sei_label_floor: float = 0.0       # > 0: each frame's label error relative to that frame's label energy
                                       # + floor x the sample's largest (early, small films weigh like late ones)
    new_band_threshold: float = 0.03   # "no band": dilated static below this fraction of its max
    new_band_dilate: int = 9           # dilation (grid points) of the static spectrum for that mask

    # -- inference ---------------------------------------------------------------------------
    predict_chunk: int = 4096          # network queries per batched call in predict

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(cond, msg):
            if not cond:
                raise ValueError(f"ABCCConfig: {msg}")
        need(self.W >= 1 and self.T >= 2, f"W >= 1 and T >= 2 required, got W={self.W}, T={self.T}")
        need(self.patch >= 1 and self.W % self.patch == 0,
             f"W={self.W} must be a multiple of patch={self.patch}; choose patch among the divisors of W")
        need(self.dim % self.heads == 0, f"dim={self.dim} must be a multiple of heads={self.heads}")
        need(self.sei_basis in ("free", "templates"), f"sei_basis must be 'free' or 'templates', got {self.sei_basis!r}")
        need(self.coef_readout in ("mean", "flat"), f"coef_readout must be 'mean' or 'flat', got {self.coef_readout!r}")
        need(self.solvent_basis in ("free", "physics"),
             f"solvent_basis must be 'free' or 'physics', got {self.solvent_basis!r}")
        need(self.streams in (1, 2), f"streams must be 1 (ablation: no SEI stream) or 2, got {self.streams}")
        need(self.n_components >= 1 and self.n_electrodes >= 1 and self.n_reactions >= 1,
             "n_components, n_electrodes and n_reactions must be >= 1")
        need(not self.wavenumber or len(self.wavenumber) == self.W,
             f"wavenumber has {len(self.wavenumber)} points but W={self.W}")
        need(self.norm_std > 0 and self.volt_std > 0 and self.duration_log_std > 0,
             "norm_std, volt_std and duration_log_std must be > 0")
        need(self.history_width > 0, f"history_width must be > 0 V, got {self.history_width}")
        need(self.profile_points >= 0 and self.profile_points != 1,
             f"profile_points must be 0 (off) or >= 2, got {self.profile_points}")
        need(self.composition_encoding in ("vocabulary", "templates"),
             f"composition_encoding must be 'vocabulary' or 'templates', got {self.composition_encoding!r}")
        need(self.template_dim >= 1, f"template_dim must be >= 1, got {self.template_dim}")
        need(not (self.solvent_present_only or self.sei_reachable_only) or self.composition_encoding == "vocabulary",
             "solvent_present_only / sei_reachable_only read the composition from the context: they need "
             "composition_encoding='vocabulary' (set both False with 'templates')")
        need(not self.residual_off_sei or (self.solvent_basis == "physics" and self.sei_basis == "templates"
                                           and self.basis_rank > 0),
             "residual_off_sei projects the physics solvent head's learned residual off the SEI templates: it "
             "needs solvent_basis='physics', sei_basis='templates' and basis_rank > 0")
        need(not (self.film_constant or self.clean_static or self.solvent_shift_rows) or self.solvent_basis == "physics",
             "film_constant, clean_static and solvent_shift_rows add rows to the physics solvent head: they need "
             "solvent_basis='physics'")
        need(self.peak_accel in ("excess", "all"), f"peak_accel must be 'excess' or 'all', got {self.peak_accel!r}")
        need(not self.sei_from_extents or (self.sei_basis == "templates" and self.w_identity == 0),
             "sei_from_extents mixes the SEI templates (sei_basis='templates') and has no per-(r, tau) SEI velocity "
             "for the MeanFlow identity term (w_identity=0)")
        need(self.extent_passivation >= 0, f"extent_passivation must be >= 0 (0: off), got {self.extent_passivation}")
        need(self.w_sei_label == 0 or self.streams == 2,
             "w_sei_label trains the SEI stream, which streams=1 does not have: set w_sei_label=0")
        need(self.sei_label_floor >= 0,
             f"sei_label_floor must be >= 0 (0: absolute errors), got {self.sei_label_floor}")
        need(self.onset_path_power > 0.2,
             f"onset_path_power must be > 0.2 (1: a linear path), got {self.onset_path_power}")
        need(not self.onset_path or self.extent_onsets,
             "onset_path averages the onset gates over each interval: it needs extent_onsets=True")
        need(not self.extent_onsets or self.sei_from_extents,
             "extent_onsets gates the extent head's reaction rates: it needs sei_from_extents=True")
        need(not self.solvent_kind_coef or (self.solvent_basis == "physics" and not self.solvent_shift_rows),
             "solvent_kind_coef shares the physics solvent head's template coefficients by kind: it needs "
             "solvent_basis='physics' and solvent_shift_rows=False")
        need(self.solvent_kind_gain > 0, f"solvent_kind_gain must be > 0, got {self.solvent_kind_gain}")
        need(self.solvent_kind_scale in ("amount", "per_fraction"),
             f"solvent_kind_scale must be 'amount' or 'per_fraction', got {self.solvent_kind_scale!r}")
        need(self.solvent_kind_scale == "amount" or self.composition_encoding == "vocabulary",
             "solvent_kind_scale='per_fraction' reads the mole fractions from the context: it needs "
             "composition_encoding='vocabulary'")
        need(not self.extent_passivation or self.sei_from_extents,
             "extent_passivation slows the extent head's reactions by their film: it needs sei_from_extents=True")
        need(not self.extent_chemistry or (self.sei_from_extents and self.composition_encoding == "vocabulary"),
             "extent_chemistry masks the extent SEI stream by the cell's composition: it needs sei_from_extents=True "
             "and composition_encoding='vocabulary'")
        if self.extent_chemistry and self.reactions:    # no names yet: a preset (the model checks it is built with them)
            self.check_reaction_names()
        need(self.jvp_mode in ("full", "none"), f"jvp_mode must be 'full' or 'none', got {self.jvp_mode!r}")
        need(self.identity_target in ("lowrank", "raw"),
             f"identity_target must be 'lowrank' or 'raw', got {self.identity_target!r}")
        need(self.identity_rank >= 1, f"identity_rank must be >= 1, got {self.identity_rank}")
        need(self.decoder_hidden >= 1 and self.basis_rank >= 0, "decoder_hidden must be >= 1 and basis_rank >= 0")
        need(self.delta_tau > 0, f"delta_tau must be > 0, got {self.delta_tau}")
        need(all(t > 0 for t in self.relax_hours), f"relax_hours must be > 0, got {self.relax_hours}")
        need(all(t > 0 for t in self.turn_relax_hours) and (self.turnaround or not self.turn_relax_hours),
             f"turn_relax_hours must be > 0 and needs turnaround=True, got {self.turn_relax_hours} "
             f"(turnaround={self.turnaround})")
        need(self.mf_pairs >= 0 and self.traj_frames >= 0, "mf_pairs and traj_frames must be >= 0")
        for f in dataclasses.fields(self):
            if f.name.startswith("w_"):
                need(getattr(self, f.name) >= 0, f"loss weight {f.name} must be >= 0 (0 switches it off)")

    def check_reaction_names(self) -> None:
        """extent_chemistry reads each reaction's stoichiometry by name: one known name per extent."""
        unknown = [n for n in self.reactions if n not in chem.REACTIONS]
        if len(self.reactions) != self.n_reactions or unknown:
            raise ValueError(
                f"ABCCConfig: extent_chemistry needs the names of the n_reactions={self.n_reactions} reaction "
                f"families, each one of OpIRSim's ({', '.join(chem.REACTIONS)}); got {len(self.reactions)} names"
                + (f", unknown: {unknown}" if unknown else "") + ": build the config with ABCCConfig.from_dataset "
                "(OpIRSim and imported datasets name them), or set extent_chemistry=False")

    # -- presets -----------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **kw) -> "ABCCConfig":
        """CI size: one joint block of width 32; trains in seconds on a CPU."""
        base = dict(patch=16, dim=32, depth=1, heads=1, mlp_ratio=2.0, n_freq=4, mf_pairs=1, w_identity=0.02,
                    traj_frames=0,
                    decoder_hidden=32, basis_rank=4, profile_points=8)
        base.update(kw)
        return cls(**base)

    @classmethod
    def cpu_default(cls, **kw) -> "ABCCConfig":
        """The demo's model: 2 joint blocks of width 96 (3 heads of 32), patches of 16 points (32
        tokens per stream), a decoder of width 128; the solvent stream spanned by the electrolyte's
        templates, the static spectrum times 1, nu', nu'^2 (film_constant), the static spectrum's
        part outside the templates' span (clean_static) and a rank-8 learned residual, its
        coefficients read from every token's features (coef_readout="flat"); the SEI stream is the
        reaction extents integrated over the protocol times one non-negative mix of the film
        products' templates per reaction family (sei_from_extents), each reaction forming only its
        own products and running only in the cells that hold what it consumes (extent_chemistry),
        slowed by the passivating film (extent_passivation=1; no onset gates), and trained towards
        the template fit of the training frames as well as through the frames, each frame's error
        relative to its film (w_sei_label=0.03, sei_label_floor=0.01); the protocol state with the
        turn from lithiation to delithiation (turnaround); a light SEI sparsity prior
        (w_sei_sparsity=0.001); of the physics terms mass conservation only (no centroid drift or
        acceleration penalty: w_peak_drift=0, w_peak_accel=0); trained from r = 0 only (mf_pairs=0).
        The measurements behind these choices are in docs/model.md."""
        base = dict(patch=16, dim=96, depth=2, heads=3, mlp_ratio=2.0, n_freq=8, mf_pairs=0,
                    sei_basis="templates", solvent_basis="physics", basis_rank=8, coef_readout="flat",
                    film_constant=True, clean_static=True, sei_from_extents=True, extent_chemistry=True,
                    extent_passivation=1.0, w_sei_label=0.03, sei_label_floor=0.01, w_sei_sparsity=0.001,
                    w_peak_drift=0.0, w_peak_accel=0.0, turnaround=True)
        base.update(kw)
        return cls(**base)

    @classmethod
    def gpu_default(cls, **kw) -> "ABCCConfig":
        """H100 size: 6 joint blocks of width 256 (4 heads of 64), patch 8, decoder width 256."""
        base = dict(patch=8, dim=256, depth=6, heads=4, mlp_ratio=4.0, n_freq=16, mf_pairs=4, sei_basis="templates",
                    solvent_basis="physics", coef_readout="flat", decoder_hidden=256, basis_rank=16)
        base.update(kw)
        return cls(**base)

    @classmethod
    def preset(cls, name: str, **kw) -> "ABCCConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown ABCC preset {name!r}; choose one of {PRESETS}")
        return getattr(cls, name)(**kw)

    @classmethod
    def from_dataset(cls, ds, split: str = "random", preset: str = "cpu_default", **kw) -> "ABCCConfig":
        """Grid, vocabularies, marker windows and normalisation from an OpIRDataset.

        Normalisation: the training part of ``split`` (frames: manifest statistics; voltage:
        computed from the training part).
        """
        mean, std = ds.norm_stats(split)
        man = ds.manifest
        W = int(ds.wavenumber.shape[0])
        wn = [float(x) for x in ds.wavenumber.tolist()]
        train = ds.split(split, "train") if split else ds
        volt = (train if len(train) else ds).voltage.double()
        tsrc = (train if len(train) else ds).time_s.double()
        log_dur = (tsrc[:, -1] - tsrc[:, 0]).clamp_min(1.0).log()
        n_reactions = len(man.get("reactions") or []) or (int(ds.extent.shape[-1]) if ds.extent is not None else 1)
        patch = kw.pop("patch", None)
        base = cls.preset(preset).__dict__.copy() if patch is None else cls.preset(preset, patch=patch).__dict__.copy()
        if W % base["patch"] != 0:
            base["patch"] = next(p for p in (16, 8, 32, 4, 2, 1) if W % p == 0)
        base.update(W=W, T=int(ds.frames.shape[1]), n_components=int(ds.composition.shape[1]),
                    n_electrodes=max(1, len(man.get("electrodes") or []) or int(ds.electrode.max()) + 1),
                    n_reactions=n_reactions, wavenumber=wn,
                    marker_windows={k: [float(v[0]), float(v[1])] for k, v in (man.get("marker_windows") or {}).items()},
                    components=[c if isinstance(c, str) else str(c.get("name", c)) for c in (man.get("components") or [])],
                    reactions=[r if isinstance(r, str) else str(r.get("name", r)) for r in (man.get("reactions") or [])],
                    electrodes=[str(e) for e in (man.get("electrodes") or [])],
                    norm_mean=float(mean), norm_std=float(std),
                    volt_mean=float(volt.mean()), volt_std=float(max(volt.std().item(), 1e-3)),
                    duration_log_mean=float(log_dur.mean()),
                    duration_log_std=float(max(log_dur.std().item() if log_dur.numel() > 1 else 1.0, 1e-3)))
        base.update(kw)
        return cls(**base)

    # -- ablations ---------------------------------------------------------------------------------
    def ablation(self, name: str) -> "ABCCConfig":
        """A copy of this config with the named ablation of ``ABLATIONS`` applied (weight presets
        and the ``streams`` switch; no new model code). "abcc" is the unchanged model.

        >>> cfg = ABCCConfig.tiny(W=64, T=4, n_components=3, n_electrodes=2, n_reactions=2)
        >>> cfg.ablation("no_physics").w_mass, cfg.ablation("one_stream").streams
        (0.0, 1)
        """
        if name not in ABLATIONS:
            raise ValueError(f"unknown ABCC ablation {name!r}; choose one of {', '.join(ABLATIONS)}")
        return dataclasses.replace(self, **ABLATIONS[name])

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ABCCConfig":
        return config_from_dict(cls, d)


def config_from_dict(cls, d: dict):
    """A config dataclass from its ``to_dict``; unknown fields are an error (a newer save), missing
    ones take their defaults (an older save)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown} (saved by a newer abcc_fast?)")
    return cls(**d)


# Named ablations: overrides of ABCCConfig fields (0 switches a term off).
#   no_physics   the physics constraints: mass conservation (+ its extent head), peak drift and
#                drift acceleration
#   no_spectrum  the spectrum constraints: SEI non-negative and growing, wavenumber smoothness,
#                no new solvent bands (w_sei_sparsity, a stream-attribution prior listed in neither
#                group, stays on)
#   one_stream   one stream: the SEI velocity is 0 (streams=1), and the terms that only mean something
#                for two streams are off with it (SEI non-negative/growing/sparse; "no new solvent
#                bands" would forbid the single stream to grow the SEI bands; mass conservation ties
#                the SEI area to the extent; the SEI labels have no stream to label)
#   no_labels    the SEI stream trained through the frames alone (w_sei_label=0: no template-fit labels)
#   no_extents   the SEI stream a free mix of the product templates at every tau instead of the reaction
#                extents (no kinetics, chemistry or passivating film), and without the labels, which such a
#                head cannot take in their film-relative form (a cell without film makes its error's
#                denominator ~0: the loss was 355 at step 50 and the runs ended 76-87 % worse); a no-op for a
#                preset without extents and labels
#   mf_sources   also trained from MeanFlow sources r > 0 (mf_pairs=1): the model that predict(steps=n)
#                and restarts from a measured frame need (the suite's abcc_steps<N> entries score it)
# and a variant that restricts the template heads to what each cell's chemistry allows
# (docs/model.md, "What each cell's chemistry allows"):
#   chemistry      the SEI head only the products the cell's reactions can form, the solvent head only
#                  the bands of the components the cell holds, no learned residual
# (the SEI half alone, sei_reachable_only, was an entry until extent_chemistry made it a no-op: with
# each reaction kept to its own products and cells, the SEI stream already holds only reachable products)
# "Without Chemical Flow" is not a weight preset: it is the ``meanflow_noise`` baseline (noise-to-data
# MeanFlow, abcc_fast.model.baselines); one step vs several is ``ABCC.predict(steps=n)`` on the same model.
_SPECTRUM_OFF = dict(w_sei_nonneg=0.0, w_sei_growth=0.0, w_smooth=0.0, w_solvent_new_bands=0.0)
ABLATIONS: dict = {
    "abcc": {},
    "no_physics": dict(w_mass=0.0, w_peak_drift=0.0, w_peak_accel=0.0),
    "no_spectrum": dict(_SPECTRUM_OFF),
    "one_stream": dict(streams=1, w_sei_nonneg=0.0, w_sei_growth=0.0, w_sei_sparsity=0.0,
                       w_solvent_new_bands=0.0, w_mass=0.0, w_sei_label=0.0),
    "no_labels": dict(w_sei_label=0.0),
    "no_extents": dict(sei_from_extents=False, extent_chemistry=False, extent_onsets=False, onset_path=False,
                       extent_passivation=0.0, w_sei_label=0.0),
    "mf_sources": dict(mf_pairs=1),
    "chemistry": dict(sei_reachable_only=True, solvent_present_only=True, basis_rank=0),
}
