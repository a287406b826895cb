"""A tiny stand-in for ``abcc_fast.model.ABCC`` (same methods, a few hundred parameters) so the
trainer, checkpoint and DDP tests run in seconds and do not depend on the model's internals.

No tests here; the trainer tests import it (``from test_train_standin import StandIn``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


@dataclass
class StandInConfig:
    W: int
    T: int
    n_components: int
    n_electrodes: int
    hidden: int = 16
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def from_dataset(cls, ds, split="random"):
        mean, std = ds.norm_stats(split)
        return cls(W=ds.W, T=ds.T, n_components=len(ds.manifest["components"]),
                   n_electrodes=len(ds.manifest["electrodes"]), mean=mean, std=std)


class StandIn(nn.Module):
    """frames_z[t] = static_z + (t / (T-1)) * head(static_z, V, composition, electrode), with dropout
    and input noise drawn from the step generator (so resume exactness covers the RNG path)."""

    def __init__(self, config: StandInConfig):
        super().__init__()
        self.config = config
        c = config
        self.electrode_embedding = nn.Embedding(c.n_electrodes, 4)
        self.encoder = nn.Linear(c.W + c.T + c.n_components + 4, c.hidden)
        self.norm = nn.LayerNorm(c.hidden)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(c.hidden, c.W)

    def _z(self, x):
        return (x - self.config.mean) / self.config.std

    def forward(self, static_z, voltage, composition, electrode):  # -> [B, T, W] normalised
        h = torch.cat([static_z, voltage / 3.0, composition, self.electrode_embedding(electrode)], dim=-1)
        velocity = self.head(self.dropout(torch.tanh(self.norm(self.encoder(h)))))        # [B, W]
        tau = torch.linspace(0, 1, voltage.shape[1], device=static_z.device)             # [T]
        return static_z[:, None, :] + tau[None, :, None] * velocity[:, None, :]

    def training_loss(self, batch, generator=None):
        for k in ("solvent", "sei", "extent"):
            assert k not in batch, "synthetic truth reached training_loss"
        static_z = self._z(batch["static"])
        noise = torch.randn(static_z.shape, generator=generator).to(static_z.device)  # CPU generator, like ABCC
        pred = self(static_z + 0.01 * noise, batch["voltage"], batch["composition"], batch["electrode"])
        loss = torch.mean((pred - self._z(batch["frames"])) ** 2)
        return loss, {"mse": float(loss.detach())}

    @torch.no_grad()
    def predict(self, static, voltage, composition, electrode, return_streams=False, samples=0, noise=0.0):
        z = self(self._z(static), voltage, composition, electrode)
        frames = z * self.config.std + self.config.mean
        out = {"frames": frames, "solvent": None, "sei": None, "samples": None}
        if return_streams:
            out["solvent"] = static[:, None, :].expand_as(frames).clone()
            out["sei"] = frames - out["solvent"]
        if samples:
            draws = [self(self._z(static) + (noise or 0.05) * torch.randn_like(static), voltage, composition, electrode)
                     * self.config.std + self.config.mean for _ in range(samples)]
            out["samples"] = torch.stack(draws, 0)  # [K, B, T, W], like ABCC
        return out

    def save_pretrained(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(asdict(self.config)))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, path):
        path = Path(path)
        model = cls(StandInConfig(**json.loads((path / "config.json").read_text())))
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        return model.eval()
