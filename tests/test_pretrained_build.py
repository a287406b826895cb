"""The build of the packaged models (abcc_fast/apps/pretrained_build.py, docs/pretrained.md) end to end on a
small dataset: train, score, write the folder and its card, render the docs tables. Needs no packaged
weights (tests/test_pretrained.py checks those)."""
import json

import pytest

from abcc_fast import pretrained
from abcc_fast.apps import modelcard
from abcc_fast.apps import pretrained_build as build
from abcc_fast.model import ABCC

pytestmark = pytest.mark.usefixtures("one_thread")


def test_build_writes_the_packaged_format(tmp_path, capsys):
    """A tiny build (3 steps, 80 samples; ~10 s on 2 busy cores) writes the folder the lookup and the
    loader read, a card that names the build's module, and the docs tables from that card."""
    from abcc_fast.data import generate

    data = generate(tmp_path / "d", n_samples=80, T=8, W=64, seed=0, progress=False)
    doc = tmp_path / "doc.md"
    doc.write_text(f"# x\n\n{modelcard.BEGIN}\nold\n{modelcard.END}\ntail\n")
    out = tmp_path / "out"
    assert build.main(["--split", "random", "--preset", "tiny", "--steps", "3", "--batch-size", "4",
                       "--data", str(data), "--out", str(out), "--docs", str(doc), "--no-progress"]) == 0
    folder = out / pretrained.SPLIT_MODELS["random"]
    assert sorted(f.name for f in folder.iterdir()) == sorted(
        [*build.MODEL_FILES, pretrained.CARD_NAME, pretrained.LOG_NAME])
    card = pretrained.card(folder)
    assert card["split"] == "random" and card["training"]["steps"] == 3
    assert card["command"].startswith(pretrained.BUILD_COMMAND + " --split random --preset tiny --steps 3")
    assert card["size_bytes"] == modelcard.folder_bytes(folder) <= pretrained.MAX_BYTES
    assert sum(p.numel() for p in ABCC.from_pretrained(folder).parameters()) == card["parameters"]
    assert set(card["opirbench"]["models"]) == {"ABCC", "persistence", "frame0", "oracle"}
    text = doc.read_text()
    assert "old" not in text and text.endswith(f"{modelcard.END}\ntail\n")
    assert modelcard.generated_block(doc) == modelcard.render_markdown([card]).strip()
    assert f"| command | `{card['command']}` |" in text
    assert json.loads((folder / pretrained.CARD_NAME).read_text()) == card


def test_cards_of_the_old_module_path_show_todays_command():
    old = {"command": "python -m abcc_fast.pretrained.build --split system --preset cpu --steps 300"}
    assert modelcard.rebuild_command(old) == pretrained.BUILD_COMMAND + " --split system --preset cpu --steps 300"
    new = {"command": pretrained.BUILD_COMMAND + " --split random"}
    assert modelcard.rebuild_command(new) == new["command"]
    other = {"command": "python -m abcc_fast.pretrained.builder --x"}
    assert modelcard.rebuild_command(other) == other["command"]


def test_build_refuses_bad_flags(capsys):
    with pytest.raises(SystemExit):
        build.parse_args(["--split", "nope"])
    assert "unknown ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build.parse_args(["--split", "random,system", "--name", "x"])
    assert "--name needs a single --split" in capsys.readouterr().err
