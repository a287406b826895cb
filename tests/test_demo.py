"""`abcc demo --quick`: the README's main job end to end at CI size (data, two models, OpIRBench
with the references and the simulator oracle, report with figures)."""
import dataclasses
import json

import numpy as np

import pytest
import torch

from abcc_fast.cli import main


pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    for split in ("random", "system"):
        board = json.loads((out / split / "leaderboard.json").read_text())
        kinds = {r["model"]: r["kind"] for r in board["rows"]}
        assert list(kinds)[:2] == ["persistence", "frame0"]
        assert kinds["oracle"] == "reference" and kinds["ABCC"] == "model"
    assert "How much of the achievable improvement ABCC captures" in report
    assert "| random |" in report and "| system |" in report
    figures = list((out / "figures").glob("*.png")) + list((out / "random" / "figures").glob("*.png"))
    assert len(figures) >= 4
    for line in report.splitlines():
        if line.startswith("![") and "failed" not in line:
            target = line[line.index("(") + 1:line.rindex(")")]
            assert (out / target).is_file(), target
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["leaderboards"]["random"]["oracle"]["mse"] < summary["leaderboards"]["random"]["persistence"]["mse"]


class _BusyClock:
    """A stand-in for the trainer's ``time`` module whose clock runs 1000x fast: every step looks
    like it took 1000x longer, as on a heavily loaded machine."""

    def __init__(self):
        import time

        self._time, self._t0 = time, time.perf_counter()

    def perf_counter(self):
        return self._t0 + 1000.0 * (self._time.perf_counter() - self._t0)

    def __getattr__(self, name):
        return getattr(self._time, name)


def test_demo_training_is_deterministic_on_a_busy_or_idle_machine(tmp_path, monkeypatch):
    """`make demo` twice gives the same leaderboards: the demo's own train + score path, run twice with
    the same seed (the second time under a clock that makes every step look 1000x slower), gives
    bitwise equal metrics and per-frame MSEs."""
    from abcc_fast.model import load_predictor
    from abcc_fast.apps import demo
    from abcc_fast.train import trainer

    ds = demo._dataset(tmp_path, True, None, 0, False)
    cfg = demo.demo_train_config(quick=True, seed=0)
    assert cfg.max_time_s is None and cfg.steps == 12
    # a generous safety cap that never runs out must not change anything either (a schedule that
    # followed the clock would see 1000x more of it used in the busy run)
    cfg = dataclasses.replace(cfg, max_time_s=1e6)

    def run(tag):
        r = demo.train_split(ds, "system", cfg, "tiny", tmp_path / tag, progress=False)
        assert r.steps_done == cfg.steps and not r.capped
        return r, demo.score_split(ds, "system", load_predictor(str(r.model_dir)), progress=False)

    quiet, quiet_scores = run("quiet")
    monkeypatch.setattr(trainer, "time", _BusyClock())
    busy, busy_scores = run("busy")
    assert busy.wall_time_s > 100 * quiet.wall_time_s     # the clock did see a "slow" machine
    assert [r.model for r in quiet_scores] == [r.model for r in busy_scores]
    for a, b in zip(quiet_scores, busy_scores):
        assert a.metrics == b.metrics, a.model                          # bitwise equal floats
        assert np.array_equal(a.per_frame["mse"], b.per_frame["mse"]), a.model
    assert (tmp_path / "quiet" / "log.csv").read_text().splitlines()[1].split(",")[:4] == \
        (tmp_path / "busy" / "log.csv").read_text().splitlines()[1].split(",")[:4]


def test_side_by_side_training_matches_training_in_process(tmp_path):
    """The demo trains its two models in spawned processes (one per split on a CPU machine): their
    weights and logs equal those of the same training run here with the same thread count, and a bad
    ``jobs`` says what it wants."""
    from abcc_fast.apps import demo
    from abcc_fast.model import ABCC

    ds = demo._dataset(tmp_path, True, None, 0, False)
    cfg = dataclasses.replace(demo.demo_train_config(quick=True, seed=3), steps=5)
    jobs, threads = demo.training_jobs(2, cfg)
    assert jobs == 2 and threads >= 1
    apart = demo.train_splits(ds, ("random", "system"), cfg, "tiny", tmp_path / "apart", progress=False, jobs=2)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        here = {s: demo.train_split(ds, s, cfg, "tiny", tmp_path / "here" / s, progress=False)
                for s in ("random", "system")}
    finally:
        torch.set_num_threads(before)
    for s in ("random", "system"):
        assert apart[s].steps_done == here[s].steps_done == 5 and apart[s].train_loss == here[s].train_loss
        assert isinstance(apart[s].model, ABCC)
        a, b = apart[s].model.state_dict(), here[s].model.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), s
        assert apart[s].model_dir == tmp_path / "apart" / s / "model"
    for bad in (0, "two"):
        with pytest.raises(ValueError, match="jobs must be"):
            demo.training_jobs(bad, cfg)
    assert demo.training_jobs("auto", dataclasses.replace(cfg, device="cpu"), 1)[0] == 1
