"""`abcc data` CLI smoke tests through abcc_fast.cli.main."""
from pathlib import Path

from abcc_fast.cli import main
from abcc_fast.data import load

FIX = Path(__file__).parent / "fixtures"


def test_generate_inspect_import(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["data", "generate", "--out", str(out), "--count", "24", "--T", "5", "--W", "64",
                 "--systems", "1,2,7", "--seed", "3", "--no-progress"]) == 0
    ds = load(out)
    assert len(ds) == 24 and set(ds.system.tolist()) == {0, 1, 6}
    assert main(["data", "inspect", str(out), "--figures", str(tmp_path / "figs"), "--samples", "0"]) == 0
    text = capsys.readouterr().out
    assert "LP30|Cu" in text and "splits" in text
    assert (tmp_path / "figs" / "heatmap_0.png").stat().st_size > 1000
    assert main(["data", "import", "--frames", str(FIX / "operando_frames.csv"),
                 "--table", str(FIX / "operando_table.csv"), "--static", str(FIX / "static.csv"),
                 "--out", str(tmp_path / "imp"), "--W", "128"]) == 0
    assert main(["data", "inspect", str(tmp_path / "imp")]) == 0


def test_clear_errors(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert "no such dataset" in capsys.readouterr().err
    assert main(["data", "generate", "--out", str(tmp_path / "g"), "--count", "3", "--systems", "11",
                 "--no-progress"]) == 2
    assert "unknown system" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
