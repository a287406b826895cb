"""`abcc demo --quick`: the README's main job end to end at CI size (data, two models, OpIRBench
with the references and the simulator oracle, report with figures)."""
import json

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
