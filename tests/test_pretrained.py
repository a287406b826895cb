"""The packaged pretrained models (abcc_fast/pretrained, docs/pretrained.md): they load by name, their
cards are complete and within the size limit, their fixed-subset test MSE is reproduced on the default
dataset, docs/pretrained.md shows the cards' numbers, and `abcc predict` without --model uses them.

Skipped (with the reason) only when the checkout ships no packaged weights at all."""
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from abcc_fast import pretrained
from abcc_fast.model import ABCC, ABCCConfig, ABCCPredictor
from abcc_fast.apps import modelcard

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
NAMES = pretrained.names()
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not NAMES, reason="no packaged weights in abcc_fast/pretrained (build them with "
                                                    "`make pretrained`)")]
CARD_KEYS = {"name", "split", "command", "git", "dataset", "training", "parameters", "size_bytes", "opirbench",
             "subset", "knows", "intended_use", "limits"}


@pytest.fixture(scope="module")
def dataset():
    from abcc_fast.data import default_dataset

    return default_dataset(progress=False)


def test_every_split_has_its_model():
    assert set(pretrained.SPLIT_MODELS.values()) <= set(NAMES), NAMES
    for split, name in pretrained.SPLIT_MODELS.items():
        assert pretrained.card(name)["split"] == split


@pytest.mark.parametrize("name", NAMES)
def test_loads_by_name_offline_and_fast(name):
    t0 = time.perf_counter()
    model = ABCC.from_pretrained(name)
    elapsed = time.perf_counter() - t0
    assert not model.training and model.device.type == "cpu"
    # measured ~0.1 s on 2 busy cores; the bound only catches loading that does real work
    assert elapsed < 10.0, f"loading {name} took {elapsed:.1f} s"
    card = pretrained.card(name)
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]


def test_unknown_name_lists_the_packaged_ones():
    with pytest.raises(FileNotFoundError, match="packaged models: .*opirsim"):
        ABCC.from_pretrained("no-such-model")


def test_a_local_folder_of_that_name_wins(tmp_path, monkeypatch, dataset):
    torch.manual_seed(0)
    tiny = ABCC(ABCCConfig.from_dataset(dataset, "random", preset="tiny"))
    monkeypatch.chdir(tmp_path)
    tiny.save_pretrained(NAMES[0])
    loaded = ABCC.from_pretrained(NAMES[0])
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in tiny.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_card_is_complete_and_small(name):
    folder = pretrained.path(name)
    card = pretrained.card(name)
    assert CARD_KEYS <= set(card), CARD_KEYS - set(card)
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size == card["size_bytes"] <= pretrained.MAX_BYTES
    ev = card["opirbench"]
    for ref in ("ABCC", "persistence", "frame0", "oracle"):
        assert {"mse", "mae", "dilate"} <= set(ev["models"][ref]), ref
        assert len(ev["mse_per_frame"][ref]) == card["knows"]["T"] - 1
    assert card["training"]["steps"] >= 1 and card["training"]["batch_size"] >= 1
    # cards built before the build moved to abcc_fast/apps/ name its old module path; rebuild_command maps it
    assert card["dataset"]["manifest_sha256"] and modelcard.rebuild_command(card).startswith(pretrained.BUILD_COMMAND)
    assert len(card["dataset"].get("identity", "")) == 64, "the card must name its dataset by identity too"
    cfg = json.loads((folder / "config.json").read_text())
    from abcc_fast._atomic import sha256_file

    assert cfg["weights_sha256"] == sha256_file(folder / "model.safetensors")


@pytest.mark.parametrize("name", NAMES)
def test_subset_mse_reproduces_the_card(name, dataset):
    from abcc_fast.data.manifest import dataset_identity, same_dataset
    from abcc_fast.opirbench import manifest_sha256

    card = pretrained.card(name)
    assert same_dataset(card["dataset"]["manifest_sha256"], card["dataset"].get("identity"), manifest_sha256(dataset),
                        dataset_identity(dataset)), (
        f"{name} was built on another dataset than today's default one: rebuild it (make pretrained)")
    sub = card["subset"]
    got = modelcard.subset_mse(ABCCPredictor(ABCC.from_pretrained(name)), dataset, sub["split"], sub["first"])
    assert got["indices"] == sub["indices"]
    assert got["mse"] == pytest.approx(sub["mse"], rel=sub["rtol"])
    # and the model beats persistence on the subset, as on the full test part
    assert card["opirbench"]["models"]["ABCC"]["mse"] < card["opirbench"]["models"]["persistence"]["mse"]


def test_docs_show_the_cards():
    block = modelcard.generated_block(ROOT / "docs" / "pretrained.md")
    assert block is not None, "docs/pretrained.md lost its generated block markers"
    cards = [pretrained.card(n) for n in NAMES]
    assert block == modelcard.render_markdown(cards).strip(), (
        f"docs/pretrained.md does not show the packaged cards: {pretrained.BUILD_COMMAND} --docs-only")


def _voltage_csv(path: Path, T: int) -> Path:
    """The fixture's measured time/voltage table interpolated onto T frames."""
    raw = np.loadtxt(FIX / "operando_table.csv", delimiter=",", skiprows=1)
    t = np.linspace(raw[0, 0], raw[-1, 0], T)
    path.write_text("time_s,voltage\n" + "".join(f"{a:.1f},{b:.4f}\n" for a, b in zip(t, np.interp(t, *raw.T))))
    return path


def test_predict_without_model_uses_the_packaged_one(tmp_path, capsys):
    from abcc_fast.cli import main

    T = pretrained.card(pretrained.DEFAULT_NAME)["knows"]["T"]
    out = tmp_path / "pred"
    rc = main(["predict", "--static", str(FIX / "static.csv"), "--voltage", str(_voltage_csv(tmp_path / "v.csv", T)),
               "--composition", "EC=0.46,DMC=0.46,LiPF6=0.08", "--electrode", "graphite", "--streams",
               "--no-figures", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"packaged pretrained model '{pretrained.DEFAULT_NAME}'" in captured.out
    meta = json.loads((out / "prediction.json").read_text())
    assert meta["pretrained"] == pretrained.DEFAULT_NAME
    assert meta["shapes"]["frames"] == [T, pretrained.card(pretrained.DEFAULT_NAME)["knows"]["W"]]


def test_demo_pretrained_refuses_another_dataset(tmp_path):
    from abcc_fast.data import generate, load
    from abcc_fast.apps.pretrained_runs import packaged_runs

    small = load(generate(tmp_path / "d", n_samples=40, T=8, W=64, seed=0, progress=False))
    with pytest.raises(ValueError, match="trained on dataset"):
        packaged_runs(small, ("random",))


def test_build_refuses_a_model_above_the_size_limit(tmp_path, monkeypatch):
    from abcc_fast.apps import pretrained_build as build

    folder = tmp_path / "model"
    shutil.copytree(pretrained.path(NAMES[0]), folder)
    monkeypatch.setattr(build, "MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="above the"):
        build.write_model(tmp_path / "out", "big", folder, folder / "log.csv", {"name": "big"})
    assert not (tmp_path / "out" / "big").exists()


@pytest.mark.slow
def test_demo_pretrained_scores_the_packaged_models(tmp_path, dataset):
    """`abcc demo --pretrained`: no training, the demo's report, the cards' scores (about a minute)."""
    from abcc_fast.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--pretrained", "--out", str(out), "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    assert "not trained by this run" in report and "abcc demo --out demo --pretrained" in report
    assert not (out / "runs").exists()
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["preset"] == "pretrained" and not any(k.startswith("train_") for k in summary["timings_s"])
    for split, name in pretrained.SPLIT_MODELS.items():
        card = pretrained.card(name)["opirbench"]["models"]
        board = summary["leaderboards"][split]
        # same data, split and scoring; a card built on a GPU may differ slightly from this CPU run
        assert board["ABCC"]["mse"] == pytest.approx(card["ABCC"]["mse"], rel=2e-2)
        assert board["persistence"]["mse"] == pytest.approx(card["persistence"]["mse"], rel=1e-6)
    assert main(["demo", "--pretrained", "--quick", "--out", str(tmp_path / "q")]) == 2
