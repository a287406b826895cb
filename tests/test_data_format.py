"""Dataset format: round trip, validation errors, atomic writes, determinism."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from abcc_fast.data import OpIRDataset, generate, load, write_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    path = generate(root / "tiny", n_samples=40, T=6, W=64, seed=5, progress=False, shard_samples=16)
    return path


def _manifest():
    return {"name": "t", "generator": {"name": "test", "version": "0", "seed": 0, "config": {}},
            "systems": [{"index": i, "name": f"s{i}"} for i in range(3)], "components": ["a", "b"],
            "electrodes": ["g"], "reactions": ["r0"], "marker_windows": {"w": [1.0, 2.0]}}


def _tensors(S=9, T=4, W=8, synthetic=True):
    g = torch.Generator().manual_seed(0)
    t = {"wavenumber": torch.linspace(700, 1900, W), "static": torch.rand(S, W, generator=g),
         "frames": torch.rand(S, T, W, generator=g), "voltage": torch.rand(S, T, generator=g),
         "time_s": torch.arange(T, dtype=torch.float32).repeat(S, 1), "system": torch.arange(S) % 3,
         "composition": torch.rand(S, 2, generator=g), "electrode": torch.zeros(S, dtype=torch.int64)}
    if synthetic:
        t.update(solvent=torch.rand(S, T, W, generator=g), sei=torch.rand(S, T, W, generator=g),
                 extent=torch.rand(S, T, 1, generator=g))
    return t


def test_round_trip(tmp_path):
    t = _tensors()
    write_dataset(tmp_path / "d", t, _manifest(), shard_samples=4)
    ds = load(tmp_path / "d")
    assert isinstance(ds, OpIRDataset) and len(ds) == 9 and ds.manifest["schema_version"] == 1
    assert len(ds.manifest["shards"]) == 3
    for k, v in t.items():
        assert torch.equal(getattr(ds, k), v), k
    item = ds[3]
    assert item["frames"].shape == (4, 8) and int(item["system"]) == 0
    sub = ds.subset([1, 2])
    assert len(sub) == 2 and torch.equal(sub.frames, t["frames"][1:3])
    assert ds.norm_stats("random")[1] > 0


def test_real_data_has_no_synthetic_fields(tmp_path):
    write_dataset(tmp_path / "d", _tensors(synthetic=False), _manifest())
    ds = load(tmp_path / "d")
    assert ds.solvent is None and ds.sei is None and ds.extent is None
    assert ds.manifest["synthetic"] is False


def test_generated_dataset_contract(tiny):
    ds = load(tiny)
    m = ds.manifest
    for key in ("schema_version", "name", "generator", "wavenumber", "T", "systems", "components",
                "electrodes", "reactions", "marker_windows", "shards", "splits", "normalization",
                "synthetic"):
        assert key in m
    assert ds.frames.shape == (40, 6, 64) and ds.frames.dtype == torch.float32
    assert ds.extent.shape == (40, 6, len(m["reactions"]))
    assert ds.composition.shape == (40, len(m["components"]))
    assert torch.allclose(ds.composition.sum(1), torch.ones(40), atol=1e-5)
    assert bool((ds.wavenumber[1:] > ds.wavenumber[:-1]).all())
    assert m["marker_windows"]["EC_CO_1755_1815"] == [1755.0, 1815.0]
    assert len(m["systems"]) == 10 and m["splits"]["system"]["held_out_systems"] == [2, 5]
    # frames = solvent + sei + baseline + noise: the remainder is small and smooth-ish
    rest = ds.frames - ds.solvent - ds.sei
    assert float(rest.abs().max()) < 0.2


def test_determinism_same_bytes(tmp_path, tiny):
    again = generate(tmp_path / "again", n_samples=40, T=6, W=64, seed=5, progress=False, shard_samples=16)
    for f in sorted(Path(tiny).iterdir()):
        assert hashlib.sha256(f.read_bytes()).digest() == hashlib.sha256((again / f.name).read_bytes()).digest()
    other = generate(tmp_path / "other", n_samples=40, T=6, W=64, seed=6, progress=False, shard_samples=16)
    assert not torch.equal(load(other).frames, load(tiny).frames)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_wrong_checksum(tmp_path, tiny):
    d = _copy(tiny, tmp_path / "c")
    shard = d / "shard_00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"shard_00001.*sha256 mismatch"):
        load(d)


def test_corrupt_shard(tmp_path, tiny):
    d = _copy(tiny, tmp_path / "c")
    shard = d / "shard_00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])
    m = json.loads((d / "manifest.json").read_text())
    m["shards"][0]["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"shard_00000.*corrupt"):
        load(d)


def test_missing_shard_and_bad_manifest(tmp_path, tiny):
    d = _copy(tiny, tmp_path / "c")
    (d / "shard_00002.safetensors").unlink()
    with pytest.raises(ValueError, match="missing"):
        load(d)
    d2 = _copy(tiny, tmp_path / "c2")
    m = json.loads((d2 / "manifest.json").read_text())
    m["schema_version"] = 99
    (d2 / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="schema_version 99"):
        load(d2)
    (d2 / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load(d2)
    with pytest.raises(ValueError, match="no such dataset"):
        load(tmp_path / "nowhere")


def test_nan_rejected_and_nothing_half_written(tmp_path):
    t = _tensors()
    t["frames"][3, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        write_dataset(tmp_path / "bad", t, _manifest(), shard_samples=4)
    assert not (tmp_path / "bad").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    # an existing dataset survives a failed overwrite
    write_dataset(tmp_path / "good", _tensors(), _manifest())
    before = (tmp_path / "good" / "manifest.json").read_bytes()
    with pytest.raises(ValueError):
        write_dataset(tmp_path / "good", t, _manifest())
    assert (tmp_path / "good" / "manifest.json").read_bytes() == before
    load(tmp_path / "good")


def test_bad_shapes_and_grid(tmp_path):
    t = _tensors()
    t["voltage"] = t["voltage"][:, :3]
    with pytest.raises(ValueError, match="voltage"):
        write_dataset(tmp_path / "x", t, _manifest())
    t = _tensors()
    t["wavenumber"] = torch.tensor([1.0, 3.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    with pytest.raises(ValueError, match="ascending"):
        write_dataset(tmp_path / "x", t, _manifest())
    t = _tensors()
    t["system"] = t["system"] + 5
    with pytest.raises(ValueError, match="system"):
        write_dataset(tmp_path / "x", t, _manifest())
    t = _tensors()
    t["frames"] = t["frames"].double()
    with pytest.raises(ValueError, match="dtype"):
        write_dataset(tmp_path / "x", t, _manifest())


def test_identity_ignores_shard_bytes_but_not_samples_or_splits(tiny):
    """dataset_identity: a float32 ulp in a shard (another CPU's numpy math) keeps the identity; the
    manifest's byte hash changes. Other splits or another generator seed are another dataset."""
    from types import SimpleNamespace

    from abcc_fast.data.manifest import dataset_identity, manifest_sha256, same_dataset

    ds = load(tiny)
    m = json.loads(json.dumps(ds.manifest))
    other_bytes = json.loads(json.dumps(m))
    other_bytes["shards"][0]["sha256"] = "0" * 64
    resplit = json.loads(json.dumps(m))
    resplit["splits"]["random"]["train"] = resplit["splits"]["random"]["train"][1:]
    reseeded = json.loads(json.dumps(m))
    reseeded["generator"]["seed"] = 1
    same, a, b, c = (SimpleNamespace(manifest=x) for x in (m, other_bytes, resplit, reseeded))
    assert dataset_identity(a) == dataset_identity(same) == dataset_identity(ds)
    assert manifest_sha256(a) != manifest_sha256(same)
    assert len({dataset_identity(same), dataset_identity(b), dataset_identity(c)}) == 3
    card = (manifest_sha256(same), dataset_identity(same))
    assert same_dataset(*card, manifest_sha256(a), dataset_identity(a))         # by identity
    assert not same_dataset(*card, manifest_sha256(b), dataset_identity(b))
    old_card = (manifest_sha256(same), None)                                     # before identities
    assert same_dataset(*old_card, manifest_sha256(same), "x") and not same_dataset(*old_card, "y", "x")
