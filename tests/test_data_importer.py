"""`abcc data import`: CSV -> dataset, with clear errors on bad input."""
from pathlib import Path

import numpy as np
import pytest

from abcc_fast.data import load
from abcc_fast.data.importer import import_csv

FIX = Path(__file__).parent / "fixtures"
FRAMES, TABLE, STATIC = FIX / "operando_frames.csv", FIX / "operando_table.csv", FIX / "static.csv"


def _read(path):
    rows = [line.split(",") for line in path.read_text().strip().splitlines()]
    return rows[0], np.array(rows[1:], dtype=float)


def test_import_fixtures(tmp_path):
    out = import_csv(FRAMES, TABLE, STATIC, tmp_path / "imp", W=256,
                     composition="EC=0.46,DMC=0.46,LiPF6=0.08", electrode="graphite")
    ds = load(out)
    assert len(ds) == 1 and ds.T == 6 and ds.W == 256 and ds.solvent is None
    _, fv = _read(FRAMES)
    wn = fv[::-1, 0]                                  # the fixture is stored descending
    grid = ds.wavenumber.double().numpy()
    for k in (0, 5):
        expect = np.interp(grid, wn, fv[::-1, 1 + k])
        np.testing.assert_allclose(ds.frames[0, k].numpy(), expect, atol=1e-5)
    _, tv = _read(TABLE)
    np.testing.assert_allclose(ds.voltage[0].numpy(), tv[:, 1], atol=1e-5)
    comp = dict(zip(ds.manifest["components"], ds.composition[0].tolist()))
    assert comp["EC"] == pytest.approx(0.46, abs=1e-6) and comp["LiPF6"] == pytest.approx(0.08, abs=1e-6)
    assert ds.manifest["electrodes"][int(ds.electrode[0])] == "graphite"


def _write(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


def test_nan_in_csv(tmp_path):
    header, fv = _read(FRAMES)
    rows = fv.tolist()
    rows[10][3] = "nan"
    bad = _write(tmp_path / "f.csv", header, rows)
    with pytest.raises(ValueError, match=r"f\.csv: row 12, column 'frame_2'.*NaN"):
        import_csv(bad, TABLE, STATIC, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_non_numeric_and_empty(tmp_path):
    header, fv = _read(FRAMES)
    rows = fv.tolist()
    rows[4][1] = "abc"
    with pytest.raises(ValueError, match="not a number"):
        import_csv(_write(tmp_path / "f.csv", header, rows), TABLE, STATIC, tmp_path / "o")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        import_csv(tmp_path / "e.csv", TABLE, STATIC, tmp_path / "o")


def test_non_monotonic_grid(tmp_path):
    header, fv = _read(STATIC)
    fv[[20, 21]] = fv[[21, 20]]
    with pytest.raises(ValueError, match="not monotonic"):
        import_csv(FRAMES, TABLE, _write(tmp_path / "s.csv", header, fv.tolist()), tmp_path / "o")


def test_mismatch_and_range_errors(tmp_path):
    header, tv = _read(TABLE)
    with pytest.raises(ValueError, match="one time/voltage row per frame"):
        import_csv(FRAMES, _write(tmp_path / "t.csv", header, tv[:4].tolist()), STATIC, tmp_path / "o")
    with pytest.raises(ValueError, match="outside the measured range"):
        import_csv(FRAMES, TABLE, STATIC, tmp_path / "o", wn_range=(600.0, 1900.0))
    with pytest.raises(ValueError, match="unknown component"):
        import_csv(FRAMES, TABLE, STATIC, tmp_path / "o", composition="XYZ=1")
    with pytest.raises(ValueError, match="unknown electrode"):
        import_csv(FRAMES, TABLE, STATIC, tmp_path / "o", electrode="steel")
    with pytest.raises(ValueError, match="time column"):
        import_csv(FRAMES, _write(tmp_path / "t2.csv", ["a", "b"], tv.tolist()), STATIC, tmp_path / "o")


def test_static_from_jcamp(tmp_path):
    ds_csv = load(import_csv(FRAMES, TABLE, STATIC, tmp_path / "a", W=200))
    ds_jdx = load(import_csv(FRAMES, TABLE, FIX / "static.jdx", tmp_path / "b", W=200))
    np.testing.assert_allclose(ds_jdx.static.numpy(), ds_csv.static.numpy(), atol=2e-3)
    text = (FIX / "static.jdx").read_text().replace("\n650.000000 ", "\n650.000000 A", 1)
    (tmp_path / "c.jdx").write_text(text)
    with pytest.raises(ValueError, match="compressed"):
        import_csv(FRAMES, TABLE, tmp_path / "c.jdx", tmp_path / "c")
