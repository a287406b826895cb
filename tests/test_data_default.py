"""default_dataset(): generated once into $ABCC_DATA_DIR, then loaded; a broken cache is rebuilt."""
import pytest

from abcc_fast.data import simulator


def test_default_dataset_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ABCC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(simulator, "DEFAULT_N_SAMPLES", 12)
    path = simulator.default_dataset_path()
    assert path.parent == tmp_path and simulator.GENERATOR_VERSION in path.name
    ds = simulator.default_dataset(progress=False)
    assert len(ds) == 12 and ds.root == path
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert len(simulator.default_dataset(progress=False)) == 12
    assert (path / "manifest.json").stat().st_mtime_ns == stamp          # loaded, not regenerated
    shard = path / "shard_00000.safetensors"
    shard.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="regenerating"):
        ds = simulator.default_dataset(progress=False)
    assert len(ds) == 12
