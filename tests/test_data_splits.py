"""OpIRBench splits and normalisation statistics stored in the manifest."""
import numpy as np
import pytest
import torch

from abcc_fast.data import generate, load
from abcc_fast.data.splits import make_splits


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load(generate(tmp_path_factory.mktemp("s") / "d", n_samples=200, T=4, W=32, seed=1, progress=False))


def test_random_split_stratified(ds):
    sp = ds.manifest["splits"]["random"]
    tr, va, te = (np.array(sp[k]) for k in ("train", "val", "test"))
    allidx = np.concatenate([tr, va, te])
    assert np.array_equal(np.sort(allidx), np.arange(len(ds)))       # disjoint and complete
    sysv = ds.system.numpy()
    for s in range(10):
        n = (sysv == s).sum()
        assert abs((sysv[tr] == s).sum() - 0.8 * n) <= 1
        assert abs((sysv[va] == s).sum() - 0.1 * n) <= 1
        assert abs((sysv[te] == s).sum() - 0.1 * n) <= 1


def test_system_split_holds_out_2_and_5(ds):
    sp = ds.manifest["splits"]["system"]
    assert sp["held_out_systems"] == [2, 5]                      # docs/opirsim.md system numbers
    test = ds.split("system", "test")
    train, val = ds.split("system", "train"), ds.split("system", "val")
    names = {ds.manifest["systems"][int(s)]["name"] for s in test.system.unique()}
    assert names == {"LP30|Cu", "EC:DEC+FEC|Si"}
    for part in (train, val):
        assert not set(part.system.tolist()) & {1, 4}
    assert len(train) + len(val) + len(test) == len(ds)
    assert len(set(train.system.tolist())) == 8


def test_loso_folds(ds):
    folds = ds.manifest["splits"]["loso"]
    assert len(folds) == 10
    for k in range(10):
        te = ds.split(f"loso:{k}", "test")
        assert te.system.unique().tolist() == [k]
        assert k not in ds.split(f"loso:{k}", "train").system.tolist()
    with pytest.raises(ValueError, match="loso"):
        ds.split("loso:10", "test")
    with pytest.raises(ValueError, match="unknown split"):
        ds.split("nope", "train")
    with pytest.raises(ValueError, match="part"):
        ds.split("random", "training")


def test_inner_folds_hold_out_training_systems_only(ds):
    """inner:<k> never touches the system split's test systems: fold k trains on the system
    split's train part less one training system and tests on all of that system."""
    sp = ds.manifest["splits"]["system"]
    test_systems = set(sp["held_out_indices"])
    seen = []
    for k in range(8):
        tr, va, te = (ds.split(f"inner:{k}", part) for part in ("train", "val", "test"))
        held = te.system.unique().tolist()
        assert len(held) == 1 and held[0] not in test_systems
        seen.append(held[0])
        assert len(te) == int((ds.system == held[0]).sum())
        for part, whole in ((tr, "train"), (va, "val")):
            assert not set(part.system.tolist()) & (test_systems | {held[0]})
            assert set(part.index.tolist()) <= set(sp[whole])
        assert len(tr) + len(va) + len(te) == len(sp["train"]) + len(sp["val"])
    assert sorted(seen) == sorted(set(range(10)) - test_systems)
    with pytest.raises(ValueError, match="has 8 inner"):
        ds.split("inner:8", "test")
    with pytest.raises(ValueError, match="'inner:<fold number>'"):
        ds.split("inner:x", "test")
    mean, std = ds.norm_stats("inner:2")                         # not stored: computed from the train part
    assert mean == pytest.approx(float(ds.split("inner:2", "train").frames.double().mean()), rel=1e-6)


def test_normalization_is_training_frames_stats(ds):
    for name in ("random", "system", "loso:3"):
        mean, std = ds.norm_stats(name)
        f = ds.split(name, "train").frames.double()
        assert mean == pytest.approx(float(f.mean()), rel=1e-6, abs=1e-9)
        assert std == pytest.approx(float(f.std(unbiased=False)), rel=1e-5)


def test_split_of_subset_and_fixed_seed(ds):
    sub = ds.subset(torch.arange(0, 200, 2))
    tr = sub.split("random", "train")
    assert set(tr.index.tolist()) <= set(ds.manifest["splits"]["random"]["train"])
    a = make_splits(ds.system, 10, seed=1)
    b = make_splits(ds.system, 10, seed=1)
    assert a == b
