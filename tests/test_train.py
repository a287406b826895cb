"""Trainer and checkpoints (abcc_fast.train) on a tiny stand-in model: schedule, optimizer groups,
exact resume after a SIGKILL, atomic checkpoints, corrupt files, the wall-clock cap."""
from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from abcc_fast.data import generate, load
from abcc_fast.train import checkpoint as ckpt_mod
from abcc_fast.train import trainer as trainer_mod
from abcc_fast.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from abcc_fast.train.trainer import TrainConfig, build_optimizer, learning_rate, train

sys.path.insert(0, str(Path(__file__).parent))
from test_train_standin import StandIn, StandInConfig  # noqa: E402

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def tiny_ds(tmp_path_factory):
    path = generate(tmp_path_factory.mktemp("data") / "tiny", n_samples=80, T=8, W=64, seed=0, progress=False)
    return load(path)


def _model(ds, seed=0):
    torch.manual_seed(seed)
    return StandIn(StandInConfig.from_dataset(ds, "system"))


def _cfg(**kw):
    base = dict(steps=12, batch_size=8, warmup_steps=2, checkpoint_every=4, eval_every=4, val_batches=1, log_every=1)
    return TrainConfig.tiny(**{**base, **kw})


# --------------------------------------------------------------------------------------------
def test_learning_rate_warmup_cosine():
    cfg = TrainConfig(steps=110, lr=1.0, min_lr_ratio=0.1, warmup_steps=10)
    assert learning_rate(0, cfg) == pytest.approx(0.1)
    assert learning_rate(9, cfg) == pytest.approx(1.0)
    assert learning_rate(10, cfg) == pytest.approx(1.0)
    assert learning_rate(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)        # half way: cos(pi/2) = 0
    assert learning_rate(110, cfg) == pytest.approx(0.1)
    # the schedule is a function of the step alone: a wall-clock cap does not move it
    assert learning_rate(20, TrainConfig(steps=110, lr=1.0, min_lr_ratio=0.1, warmup_steps=10, max_time_s=1e-3)) \
        == learning_rate(20, cfg) == pytest.approx(0.1 + 0.45 * (1 + math.cos(0.1 * math.pi)))


def test_optimizer_no_decay_on_norms_and_biases(tiny_ds):
    model = _model(tiny_ds)
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} == {"encoder.bias", "norm.weight", "norm.bias", "head.bias"}


def test_presets_and_validation():
    cpu = TrainConfig.preset_named("cpu")
    assert cpu.max_time_s is None and cpu.steps == trainer_mod.CPU_DEFAULT_STEPS   # budgets are steps
    assert all(TrainConfig.preset_named(p).max_time_s is None for p in ("tiny", "gpu"))
    assert TrainConfig.preset_named("gpu").amp
    with pytest.raises(ValueError, match="unknown training preset"):
        TrainConfig.preset_named("huge")
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0).validate()
    assert TrainConfig.from_json(TrainConfig.tiny().to_json()) == TrainConfig.tiny()


def test_preset_names_are_defined_once():
    """abcc_fast.presets names the presets; every preset lookup answers to it. model/config.py and
    model/baselines/base.py still spell the tuple themselves (model/ is being rewritten): they must agree."""
    from abcc_fast import presets
    from abcc_fast.model import config as abcc_config
    from abcc_fast.model.baselines import base as baseline_base

    assert abcc_config.PRESETS == baseline_base.PRESETS == presets.CONFIG_PRESETS
    assert tuple(presets.CLI_PRESETS.values()) == presets.CONFIG_PRESETS
    for cli, name in presets.CLI_PRESETS.items():
        assert TrainConfig.preset_named(cli) == TrainConfig.preset_named(name) == getattr(TrainConfig, name)()
        assert TrainConfig.preset_named(cli).preset == name
    with pytest.raises(ValueError, match="unknown preset 'cpu_default'; choose one of tiny, cpu, gpu"):
        presets.check_cli_preset("cpu_default")


def _final_state(run: Path) -> dict:
    ck = latest_checkpoint(run)
    return {f: load_file(str(ck / f)) for f in ("model.safetensors", "ema.safetensors", "optimizer.safetensors")}


KILLED_RUN = """
import os, signal, sys, torch
sys.path.insert(0, {tests!r})
from test_train_standin import StandIn, StandInConfig
from abcc_fast.data import load
from abcc_fast.train.trainer import TrainConfig, train

class KilledAt(StandIn):
    calls = 0
    def training_loss(self, batch, generator=None):
        KilledAt.calls += 1
        if KilledAt.calls == 7:            # in the middle of step 7 (after the step-4 checkpoint)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().training_loss(batch, generator=generator)

ds = load({data!r})
torch.manual_seed(0)
model = KilledAt(StandInConfig.from_dataset(ds, "system"))
cfg = TrainConfig.from_json({cfg!r})
train(model, ds, split="system", config=cfg, out_dir={out!r}, resume=False, progress=False)
"""


def test_exact_resume_after_kill(tiny_ds, tmp_path):
    cfg = _cfg()
    straight = train(_model(tiny_ds), tiny_ds, split="system", config=cfg, out_dir=tmp_path / "straight",
                     resume=False, progress=False)
    assert straight.steps_done == 12

    killed = tmp_path / "killed"
    script = KILLED_RUN.format(tests=str(TESTS), data=str(tiny_ds.root), cfg=cfg.to_json(), out=str(killed))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert latest_checkpoint(killed).name == "step_0000004"

    resumed = train(_model(tiny_ds, seed=123), tiny_ds, split="system", config=cfg, out_dir=killed, resume=True,
                    progress=False)
    assert resumed.resumed_from == 4 and resumed.steps_done == 12
    a, b = _final_state(tmp_path / "straight"), _final_state(killed)
    for f in a:
        assert a[f].keys() == b[f].keys()
        for k in a[f]:
            assert torch.equal(a[f][k], b[f][k]), f"{f}:{k} differs after resume"
    # the log was cut back to the checkpoint and continued: one train row per step
    rows = [line.split(",")[:2] for line in (killed / "log.csv").read_text().splitlines()[1:]]
    assert [int(s) for s, kind in rows if kind == "train"] == list(range(1, 13))
    # the exported model is the EMA model
    ema = load_file(str(killed / "checkpoints" / "step_0000012" / "ema.safetensors"))
    exported = StandIn.from_pretrained(killed / "model").state_dict()
    assert all(torch.equal(ema[k], exported[k]) for k in ema)


def test_checkpoint_write_failure_keeps_previous(tiny_ds, tmp_path, monkeypatch):
    model = _model(tiny_ds)
    opt = build_optimizer(model, TrainConfig())
    model(torch.zeros(2, 64), torch.zeros(2, 8), torch.zeros(2, 15), torch.zeros(2, dtype=torch.long)).sum().backward()
    opt.step()
    args = dict(model_state=model.state_dict(), ema_state=model.state_dict(), optimizer_state=opt.state_dict())
    save_checkpoint(tmp_path, step=1, state={"split": "system"}, **args)

    real = ckpt_mod.save_file
    calls = {"n": 0}

    def failing(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] == 3:  # model, ema written; the optimizer file fails half-way
            Path(filename).write_bytes(b"partial")
            raise OSError("disk full (simulated)")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt_mod, "save_file", failing)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path, step=2, state={"split": "system"}, **args)
    root = tmp_path / "checkpoints"
    assert latest_checkpoint(tmp_path).name == "step_0000001"
    assert sorted(p.name for p in root.iterdir()) == ["LATEST", "step_0000001"]  # no temporary left over
    loaded = load_checkpoint(root / "step_0000001")
    assert loaded["state"]["step"] == 1
    assert all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())
    fresh = build_optimizer(_model(tiny_ds), TrainConfig())
    fresh.load_state_dict(loaded["optimizer"])  # the flattened optimizer state round-trips


def test_corrupt_checkpoint_is_a_clear_error(tiny_ds, tmp_path):
    run = tmp_path / "run"
    train(_model(tiny_ds), tiny_ds, split="system", config=_cfg(steps=4), out_dir=run, resume=False, progress=False)
    ck = latest_checkpoint(run)
    (ck / "optimizer.safetensors").write_bytes(b"\x00garbage" * 8)
    with pytest.raises(ValueError, match="optimizer.safetensors.*corrupt"):
        train(_model(tiny_ds), tiny_ds, split="system", config=_cfg(steps=8), out_dir=run, resume=True, progress=False)
    (ck / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="state.json.*corrupt"):
        load_checkpoint(ck)
    with pytest.raises(ValueError, match="trained on split"):
        save_checkpoint(run, step=5, model_state={}, ema_state={}, optimizer_state={"state": {}, "param_groups": []},
                        state={"split": "random"})
        train(_model(tiny_ds), tiny_ds, split="system", config=_cfg(steps=8), out_dir=run, resume=True,
              progress=False)


def test_wall_clock_cap_stops_with_a_warning_and_keeps_the_schedule(tiny_ds, tmp_path):
    cfg = _cfg(steps=10_000, max_time_s=0.5)
    with pytest.warns(RuntimeWarning, match="wall-clock cap.*marked capped"):
        result = train(_model(tiny_ds), tiny_ds, split="system", config=cfg, out_dir=tmp_path / "run",
                       resume=False, progress=False)
    assert result.stopped_by == "time_cap" and result.capped and 1 <= result.steps_done < 10_000
    saved = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert saved["capped"] is True and saved["steps_budget"] == 10_000 and saved["s_per_step"] > 0
    # the learning rates of the steps it ran are those of the full 10,000-step schedule
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv", newline="")))
    for r in (r for r in rows if r["kind"] == "train"):
        assert float(r["lr"]) == pytest.approx(learning_rate(int(r["step"]) - 1, cfg), rel=1e-5)
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert latest_checkpoint(tmp_path / "run").name == f"step_{result.steps_done:07d}"
    assert result.best_val_loss is not None and math.isfinite(result.best_val_loss)


def test_resume_checks_the_dataset_by_bytes_or_identity(tiny_ds, tmp_path):
    """A checkpoint made from other manifest bytes resumes when its dataset identity is this one (another
    CPU's float32 ulp), and is refused when the identity differs too (or when it records none)."""
    from abcc_fast.data.manifest import dataset_identity, manifest_sha256

    run = tmp_path / "run"
    train(_model(tiny_ds), tiny_ds, split="system", config=_cfg(steps=4), out_dir=run, resume=False, progress=False)
    ck = latest_checkpoint(run)
    state = json.loads((ck / "state.json").read_text())
    assert state["dataset_sha256"] == manifest_sha256(tiny_ds) and state["dataset_identity"] == dataset_identity(tiny_ds)

    def resume_with(**changes):
        (ck / "state.json").write_text(json.dumps({**state, **changes}))
        return train(_model(tiny_ds), tiny_ds, split="system", config=_cfg(steps=8), out_dir=run, resume=True,
                     progress=False)

    with pytest.raises(ValueError, match="another dataset"):
        resume_with(dataset_sha256="0" * 64, dataset_identity="1" * 64)
    with pytest.raises(ValueError, match="another dataset"):
        resume_with(dataset_sha256="0" * 64, dataset_identity=None)
    assert resume_with(dataset_sha256="0" * 64).resumed_from == 4
