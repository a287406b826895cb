"""The plumbing every OpIRBench baseline shares: config, conditioning, input checks, save/load.

A baseline is a :class:`BaselineModel` subclass that adds only its network and, if it is not a plain
regression, its loss and sampler::

    class MyBaseline(BaselineModel):
        model_type = "mine"                      # key in abcc_fast.model.baselines.BASELINES
        config_class = MyConfig                  # a BaselineConfig dataclass with TINY / CPU_DEFAULT
        def __init__(self, config): super().__init__(config); ...layers...
        def frames_z(self, static_z, cond):      # [B, W], Cond -> [B, T, W]  (all frames, z-units)

Everything runs in z-units, x_z = (x - norm_mean) / norm_std with the training split's frame
statistics (as ``ABCCConfig.from_dataset``). The default objective is the mean squared error over
*all* T frames, frame 0 included (frame 0 is not scored, but every baseline predicts it).

The model contract is the trainer's and ABCC's (abcc_fast/train/trainer.py)::

    loss, logs = model.training_loss(batch, generator=None)     # collated samples
    model.predict(static, voltage, composition, electrode, *, time_s=None, wavenumber=None)
        -> {"frames": [B, T, W]}                                 # raw absorbance
    model.save_pretrained(dir); BaselineModel.from_pretrained(dir)   # safetensors + config.json
    MLPBaseline.from_dataset(ds, split, preset)                 # grid, vocabularies, normalisation

``config.json`` records ``model_type``, which is what ``abcc predict`` / ``abcc bench`` dispatch on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._io import CONFIG_NAME, WEIGHTS_NAME, load_weights, read_model_meta, save_model_dir  # noqa: F401
from ...presets import CONFIG_PRESETS as PRESETS  # the preset names, defined once
from ..backbone import fourier_features
from ..config import ABCCConfig, config_from_dict
from ..inputs import check_predict_inputs
from ..series import duration_feature

# data-derived fields, shared with ABCCConfig (same names, same meaning, same computation)
DATA_FIELDS = ("W", "T", "n_components", "n_electrodes", "wavenumber", "components", "electrodes",
               "norm_mean", "norm_std", "volt_mean", "volt_std", "use_duration", "duration_log_mean",
               "duration_log_std")


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclass
class BaselineConfig:
    """Fields every baseline has. Subclasses add their architecture and set ``TINY``,
    ``CPU_DEFAULT`` and ``GPU_DEFAULT`` (preset overrides of their own defaults)."""

    TINY: ClassVar[dict] = {}
    CPU_DEFAULT: ClassVar[dict] = {}
    GPU_DEFAULT: ClassVar[dict] = {}

    # -- data-derived (from_dataset); meanings as in ABCCConfig ---------------------------------
    W: int = 512
    T: int = 32
    n_components: int = 15
    n_electrodes: int = 5
    wavenumber: list = field(default_factory=list)
    components: list = field(default_factory=list)
    electrodes: list = field(default_factory=list)
    norm_mean: float = 0.0
    norm_std: float = 1.0
    volt_mean: float = 1.5
    volt_std: float = 1.0
    use_duration: bool = True
    duration_log_mean: float = 10.0
    duration_log_std: float = 1.0
    # -- conditioning embedding of voltage / composition / electrode / duration ---------------
    cond_dim: int = 64
    electrode_dim: int = 8
    # -- inference ----------------------------------------------------------------------------
    predict_chunk: int = 256           # samples per network call in predict

    def __post_init__(self) -> None:
        self.validate()

    def _need(self, cond, msg):
        if not cond:
            raise ValueError(f"{type(self).__name__}: {msg}")

    def validate(self) -> None:
        need = self._need
        need(self.W >= 1 and self.T >= 2, f"W >= 1 and T >= 2 required, got W={self.W}, T={self.T}")
        need(self.n_components >= 1 and self.n_electrodes >= 1, "n_components and n_electrodes must be >= 1")
        need(not self.wavenumber or len(self.wavenumber) == self.W,
             f"wavenumber has {len(self.wavenumber)} points but W={self.W}")
        need(self.norm_std > 0 and self.volt_std > 0 and self.duration_log_std > 0,
             "norm_std, volt_std and duration_log_std must be > 0")
        need(self.cond_dim >= 1 and self.electrode_dim >= 1 and self.predict_chunk >= 1,
             "cond_dim, electrode_dim and predict_chunk must be >= 1")

    # -- presets ------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **kw) -> "BaselineConfig":
        """CI size: trains in seconds."""
        return cls.preset("tiny", **kw)

    @classmethod
    def cpu_default(cls, **kw) -> "BaselineConfig":
        """Sized to about ABCC's cpu_default step cost on 2 CPU cores, so the cpu training preset's
        step budget (batch 8) costs every entry a similar wall clock."""
        return cls.preset("cpu_default", **kw)

    @classmethod
    def gpu_default(cls, **kw) -> "BaselineConfig":
        """For the GPU suite (``abcc bench --all --preset gpu``) next to ABCC's gpu_default (14.8 M
        parameters): wider and deeper than cpu_default: 2-15x its parameters
        (the MLP 20.7 M, as its hidden x T W output layer dominates; DLinear, linear, is unchanged)."""
        return cls.preset("gpu_default", **kw)

    @classmethod
    def architecture(cls, name: str) -> dict:
        """The architecture overrides of preset ``name`` (``TINY``, ``CPU_DEFAULT`` or ``GPU_DEFAULT``)."""
        if name not in PRESETS:
            raise ValueError(f"unknown {cls.__name__} preset {name!r}; baselines have {PRESETS} "
                             "(abcc train: --preset tiny, cpu or gpu)")
        return getattr(cls, name.upper())

    @classmethod
    def preset(cls, name: str, **kw) -> "BaselineConfig":
        return cls(**{**cls.architecture(name), **kw})

    @classmethod
    def from_dataset(cls, ds, split: str = "random", preset: str = "cpu_default", **kw) -> "BaselineConfig":
        """Grid, vocabularies and normalisation of ``ds`` (training part of ``split``), computed by
        ``ABCCConfig.from_dataset`` so ABCC and every baseline see identical inputs, plus the
        preset's architecture and ``kw`` overrides."""
        arch = cls.architecture(preset)  # first: an unknown preset fails before any data is read
        data = ABCCConfig.from_dataset(ds, split, preset="tiny")
        fields = {k: getattr(data, k) for k in DATA_FIELDS}
        fields.update(cls.fields_from_dataset(ds, split, fields))
        base = {**arch, **fields}
        base.update(cls.fit_to_data(base))
        base.update(kw)
        return cls(**base)

    @classmethod
    def fields_from_dataset(cls, ds, split: str, data: dict) -> dict:
        """Hook: further data-derived fields (e.g. a residual scale); ``data`` holds DATA_FIELDS."""
        return {}

    @classmethod
    def fit_to_data(cls, fields: dict) -> dict:
        """Hook: adapt architecture fields to the grid (e.g. a patch that divides W)."""
        return {}

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BaselineConfig":
        return config_from_dict(cls, d)


def largest_divisor(n: int, want: int) -> int:
    """The largest divisor of n that is <= want (>= 1): a patch size that tiles n."""
    for p in range(min(int(want), int(n)), 0, -1):
        if n % p == 0:
            return p
    return 1


# ---------------------------------------------------------------------------------------------
# conditioning: voltage profile, composition, electrode, protocol duration
# ---------------------------------------------------------------------------------------------
class Cond(NamedTuple):
    """The conditioning of one batch, computed once and read by every network.

    context [B, D]      embedding of composition, electrode and log duration (per sample)
    frame   [B, T, D]   context + embedding of the voltage features of frame k (None for
                        networks with uses_frame_condition = False)
    volt    [B, T, 3]   raw per-frame features: (V_k - m) / s, tau_k = k / (T - 1), (V_k - V_0) / s
    raw     [B, C (+1) + E]  composition, scaled log duration, one-hot electrode (linear models)
    """

    context: Optional[torch.Tensor]
    frame: Optional[torch.Tensor]
    volt: torch.Tensor
    raw: torch.Tensor


def mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


class Conditioning(nn.Module):
    """context = MLP([composition, log-duration, electrode embedding]);
    frame_k = context + MLP(volt_k) with volt_k the three voltage features of frame k (built only
    for networks that read per-frame conditions: every parameter must get a gradient under DDP)."""

    def __init__(self, cfg: BaselineConfig, per_frame: bool = True):
        super().__init__()
        D = cfg.cond_dim
        self.electrode = nn.Embedding(cfg.n_electrodes, cfg.electrode_dim)
        nn.init.zeros_(self.electrode.weight)   # unseen electrodes add nothing (as in ABCC)
        self.context = mlp(context_size(cfg) + cfg.electrode_dim, D, D)
        self.frame = mlp(3, D, D) if per_frame else None

    def forward(self, volt, ctx, electrode):
        context = self.context(torch.cat([ctx, self.electrode(electrode)], dim=-1))      # [B, D]
        if self.frame is None:
            return context, None
        return context, context[:, None, :] + self.frame(volt)                          # [B, T, D]


def context_size(cfg: BaselineConfig) -> int:
    return cfg.n_components + (1 if cfg.use_duration else 0)


def film(h: torch.Tensor, scale_shift: torch.Tensor) -> torch.Tensor:
    """h [B, C, W] modulated by scale_shift [B, 2C]: h (1 + scale) + shift."""
    scale, shift = scale_shift.chunk(2, dim=-1)
    return h * (1 + scale[..., None]) + shift[..., None]


class ResConvBlock(nn.Module):
    """h + conv(silu(FiLM(conv(silu(h)), g))): a residual 1-D conv block along wavenumber."""

    def __init__(self, channels: int, kernel: int, dilation: int, cond_dim: int):
        super().__init__()
        pad = dilation * (kernel // 2)
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation)
        self.film = nn.Linear(cond_dim, 2 * channels)

    def forward(self, h, g):
        return h + self.conv2(F.silu(film(self.conv1(F.silu(h)), self.film(g))))


class ConvTrunk(nn.Module):
    """x [B, in_ch, W], g [B, cond_dim] -> [B, out_ch, W]: stem, residual dilated conv blocks with
    FiLM conditioning, zero-initialised 1x1 head (the trunk starts as the zero map). The network
    of the `cnn` baseline and the velocity networks of `cfm` and `meanflow_noise`."""

    def __init__(self, in_ch: int, channels: int, out_ch: int, depth: int, kernel: int, cond_dim: int,
                 dilations=(1, 2, 4, 8)):
        super().__init__()
        self.stem = nn.Conv1d(in_ch, channels, kernel, padding=kernel // 2)
        self.blocks = nn.ModuleList(ResConvBlock(channels, kernel, dilations[i % len(dilations)], cond_dim)
                                    for i in range(depth))
        self.head = nn.Conv1d(channels, out_ch, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x, g):
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, g)
        return self.head(F.silu(h))


# ---------------------------------------------------------------------------------------------
# the base model
# ---------------------------------------------------------------------------------------------
# model_type -> class, filled as the baseline modules define their classes (BaselineModel.__init_subclass__);
# the package's BASELINES is the public, ordered list of the built-in ones
_REGISTRY: dict[str, type] = {}


class BaselineModel(nn.Module):
    """Common plumbing of the OpIRBench baselines (module docstring). Subclasses implement
    ``frames_z`` (deterministic regressors) or ``loss_z`` + ``sample_z`` (generative models)."""

    model_type: ClassVar[str] = ""
    config_class: ClassVar[type] = BaselineConfig
    fixed_T: ClassVar[bool] = True          # False: any number of frames (recurrent rollouts)
    stochastic: ClassVar[bool] = False      # True: predict draws noise (seeded, reproducible)
    uses_conditioning: ClassVar[bool] = True   # False: no learned embedding (linear models read Cond.raw)
    uses_frame_condition: ClassVar[bool] = True  # False: the network reads the whole profile, Cond.volt

    def __init_subclass__(cls, **kwargs):
        """Every class that names its own ``model_type`` can be loaded by ``from_pretrained`` (the first
        class to claim a name keeps it)."""
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("model_type"):
            _REGISTRY.setdefault(cls.model_type, cls)

    def __init__(self, config):
        super().__init__()
        if isinstance(config, dict):
            config = self.config_class.from_dict(config)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got "
                            f"{type(config).__name__}")
        config.validate()
        self.config = config
        self.cond = Conditioning(config, self.uses_frame_condition) if self.uses_conditioning else None

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, ds, split: str = "random", preset: str = "cpu_default", **kw) -> "BaselineModel":
        """``cls(cls.config_class.from_dataset(ds, split, preset, **kw))``."""
        return cls(cls.config_class.from_dataset(ds, split, preset, **kw))

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _z(self, x):
        return (x - self.config.norm_mean) / self.config.norm_std

    def _raw(self, x_z):
        return x_z * self.config.norm_std + self.config.norm_mean

    def forward(self, *args, **kwargs):
        """``forward(batch: dict, generator=None)`` = ``training_loss`` (the DDP entry);
        ``forward(static_z, cond)`` = ``frames_z``."""
        if args and isinstance(args[0], dict):
            return self.training_loss(*args, **kwargs)
        return self.frames_z(*args, **kwargs)

    def conditioning(self, voltage, composition, electrode, time_s=None) -> Cond:
        """voltage [B, T] V, composition [B, C], electrode int64 [B], time_s [B, T] or None -> Cond."""
        cfg = self.config
        T = voltage.shape[1]
        v = (voltage - cfg.volt_mean) / cfg.volt_std
        tau = torch.linspace(0, 1, T, device=voltage.device, dtype=voltage.dtype).expand_as(v)
        volt = torch.stack([v, tau, v - v[:, :1]], dim=-1)                             # [B, T, 3]
        ctx = composition                                                              # [B, C (+1)]
        if cfg.use_duration:
            # scaled log protocol duration, as ABCC's context (rates act in seconds)
            ctx = torch.cat([composition, duration_feature(time_s, composition, cfg.duration_log_mean,
                                                           cfg.duration_log_std)], dim=1)
        onehot = F.one_hot(electrode, cfg.n_electrodes).to(ctx.dtype)
        raw = torch.cat([ctx, onehot], dim=-1)
        if self.cond is None:
            return Cond(None, None, volt, raw)
        context, frame = self.cond(volt, ctx, electrode)
        return Cond(context, frame, volt, raw)

    def _check_T(self, T: int, where: str) -> None:
        if self.fixed_T and T != self.config.T:
            raise ValueError(f"{type(self).__name__}.{where}: {T} frames given but this model predicts exactly "
                             f"T={self.config.T} frames (its output layer is sized by T); give a voltage "
                             f"profile of {self.config.T} points, or use a recurrent baseline (gru, convlstm)")

    # -- the network / objective (subclasses) ---------------------------------------------------
    def frames_z(self, static_z: torch.Tensor, cond: Cond) -> torch.Tensor:
        """static_z [B, W] -> all T frames [B, T, W], z-units."""
        raise NotImplementedError

    def loss_z(self, static_z, frames_z, cond: Cond, generator=None):
        """(loss, {name: tensor}) in z-units; default: MSE over all frames and wavenumbers."""
        mse = (self.frames_z(static_z, cond) - frames_z).pow(2).mean()
        return mse, {"mse": mse}

    def sample_z(self, static_z, cond: Cond, generator=None) -> torch.Tensor:
        """Prediction [B, T, W] in z-units (generative baselines: a sample or the mean of several)."""
        return self.frames_z(static_z, cond)

    # -- training -------------------------------------------------------------------------------
    def training_loss(self, batch: dict, generator: Optional[torch.Generator] = None):
        """Scalar loss and named float parts for one default-collated batch (static [B, W], frames
        [B, T, W], voltage [B, T], time_s [B, T], composition [B, C], electrode [B]); the synthetic
        truth fields are never read. Random draws come from ``generator`` (CPU) when given."""
        cfg = self.config
        name = f"{type(self).__name__}.training_loss"
        dev, dtype = self.device, self.dtype
        static = batch["static"].to(dev, dtype)
        frames = batch["frames"].to(dev, dtype)
        voltage = batch["voltage"].to(dev, dtype)
        composition = batch["composition"].to(dev, dtype)
        electrode = batch["electrode"].to(dev).long()
        time_s = batch.get("time_s")
        B, T, W = frames.shape
        if W != cfg.W or tuple(static.shape) != (B, W) or tuple(voltage.shape) != (B, T):
            raise ValueError(f"{name}: static {tuple(static.shape)} / frames {tuple(frames.shape)} / voltage "
                             f"{tuple(voltage.shape)} do not match the model's grid W={cfg.W} (static [B, W], "
                             "frames [B, T, W], voltage [B, T])")
        self._check_T(T, "training_loss")
        for key, x in (("static", static), ("frames", frames), ("voltage", voltage), ("composition", composition)):
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name}: batch field {key!r} contains NaN/Inf; clean the dataset")
        cond = self.conditioning(voltage, composition, electrode,
                                 None if time_s is None else time_s.to(dev, torch.float64))
        loss, parts = self.loss_z(self._z(static), self._z(frames), cond, generator)
        logs = {k: float(v.detach()) for k, v in parts.items()}
        logs["loss"] = float(loss.detach())
        return loss, logs

    # -- inference ------------------------------------------------------------------------------
    def _check_predict_inputs(self, static, voltage, composition, electrode, wavenumber, time_s):
        """The input checks every model shares (model/inputs.py), messages naming this baseline."""
        return check_predict_inputs(self.config, static, voltage, composition, electrode, wavenumber, time_s,
                                    who=f"{type(self).__name__}.predict")

    @torch.no_grad()
    def predict(self, static, voltage, composition, electrode, *, time_s=None, wavenumber=None,
                return_streams: bool = False, samples: int = 0, noise: float = 0.0,
                generator: Optional[torch.Generator] = None) -> dict:
        """All T frames from the static spectrum (raw absorbance in and out).

        Args: static [B, W] AU; voltage [B, T] V; composition [B, C]; electrode [B]; time_s [B, T]
        optional (its duration conditions the model); wavenumber [W] optional, checked against
        the model's grid. return_streams is accepted for API compatibility: baselines have no
        solvent/SEI streams, so only "frames" comes back. samples > 0 (generative baselines
        only): K independent samples in "samples" [K, B, T, W] and their "std"; ``noise`` is
        ignored (the sampling noise is the model's own).
        Returns: {"frames": [B, T, W]} float32 on the model's device.
        """
        name = type(self).__name__
        if int(samples) < 0:
            raise ValueError(f"{name}.predict: samples must be >= 0, got {samples}")
        if samples and not self.stochastic:
            raise ValueError(f"{name}.predict: this baseline is deterministic, samples={samples} has no meaning; "
                             "use samples=0 (or a generative baseline: cfm, meanflow_noise)")
        static, voltage, composition, electrode, time_s = self._check_predict_inputs(
            static, voltage, composition, electrode, wavenumber, time_s)
        self._check_T(voltage.shape[1], "predict")
        dev, dtype = self.device, self.dtype
        static_z = self._z(static.to(dev, dtype))
        voltage = voltage.to(dev, dtype)
        composition = composition.to(dev, dtype)
        electrode = electrode.to(dev)
        time_s = None if time_s is None else time_s.to(dev, torch.float64)
        if generator is None and self.stochastic:
            generator = torch.Generator().manual_seed(int(getattr(self.config, "sample_seed", 0)))
        B, n = static_z.shape[0], int(self.config.predict_chunk)

        def run(sl):
            cond = self.conditioning(voltage[sl], composition[sl], electrode[sl],
                                     None if time_s is None else time_s[sl])
            return self.sample_z(static_z[sl], cond, generator)

        frames = torch.cat([run(slice(s, min(s + n, B))) for s in range(0, B, n)]) if B else \
            static_z.new_zeros(0, voltage.shape[1], static_z.shape[1])
        out = {"frames": self._raw(frames).float()}
        if samples:
            draws = torch.stack([self._raw(torch.cat([run(slice(s, min(s + n, B))) for s in range(0, B, n)]))
                                 for _ in range(int(samples))]).float()
            out["samples"] = draws
            out["std"] = draws.std(dim=0, unbiased=True) if samples > 1 else torch.zeros_like(draws[0])
        return out

    # -- persistence ----------------------------------------------------------------------------
    def save_pretrained(self, path) -> Path:
        """``path/model.safetensors`` + ``path/config.json`` ({"model_type", "config"}), atomically."""
        return save_model_dir(self, path, self.model_type, self.config.to_dict())

    @classmethod
    def from_pretrained(cls, path, map_location="cpu") -> "BaselineModel":
        """Load a directory written by ``save_pretrained``. On ``BaselineModel`` it dispatches on the
        saved ``model_type``; on a subclass the saved type must be that subclass's."""
        where = f"{cls.__name__}.from_pretrained"
        meta = read_model_meta(path, where)
        model_type = meta.get("model_type")
        if model_type not in _REGISTRY or "config" not in meta:
            raise ValueError(f"{where}: {Path(path) / CONFIG_NAME} is not a baseline config (model_type "
                             f"{model_type!r}; baselines: {', '.join(_REGISTRY)})")
        klass = _REGISTRY[model_type]
        if cls is not BaselineModel and klass is not cls:
            raise ValueError(f"{where}: {path} holds a {model_type!r} model, not {cls.model_type!r}; load it "
                             f"with BaselineModel.from_pretrained or {klass.__name__}.from_pretrained")
        return load_weights(klass(klass.config_class.from_dict(meta["config"])), path, where, map_location)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def fourier_time(t: torch.Tensor, n_freq: int) -> torch.Tensor:
    """t [B] in [0, 1] -> [B, 2 n_freq]: sin/cos(pi j t / 2), j = 1..n_freq (ABCC's features)."""
    return fourier_features(t, n_freq)


__all__ = ["BaselineConfig", "BaselineModel", "Cond", "Conditioning", "ConvTrunk", "ResConvBlock", "film",
           "fourier_time", "largest_divisor", "mlp", "PRESETS", "CONFIG_NAME", "WEIGHTS_NAME"]
