"""FramePairs: (r, tau) pairs for MeanFlow training, r = 0 jumps from the static spectrum."""
import pytest
import torch
from torch.utils.data import DataLoader

from abcc_fast.data import FramePairs, generate, load


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load(generate(tmp_path_factory.mktemp("t") / "d", n_samples=60, T=8, W=32, seed=2, progress=False))


def test_pairs(ds):
    fp = FramePairs(ds, "system", "train", pairs=16, p_static=1.0, seed=0)
    assert len(fp) == len(ds.split("system", "train"))
    mean, std = ds.norm_stats("system")
    item = fp[0]
    T = ds.T
    assert item["x_r"].shape == (16, ds.W) and item["r_idx"].shape == (16,)
    assert bool((item["r_idx"] <= item["tau_idx"]).all())
    assert torch.allclose(item["r"], item["r_idx"].float() / (T - 1))
    assert torch.allclose(item["tau"], item["tau_idx"].float() / (T - 1))
    assert bool((item["r_idx"] == item["tau_idx"]).any()) and bool((item["r_idx"] == 0).any())
    row = int((ds.index == item["index"]).nonzero()[0])
    z_static = (ds.static[row] - mean) / std
    for p in range(16):
        if item["from_static"][p]:
            assert int(item["r_idx"][p]) == 0 and torch.allclose(item["x_r"][p], z_static)
        else:
            assert torch.allclose(item["x_r"][p], (ds.frames[row, item["r_idx"][p]] - mean) / std)
        assert torch.allclose(item["x_tau"][p], (ds.frames[row, item["tau_idx"][p]] - mean) / std)
    assert item["from_static"].any()


def test_loader_and_epochs(ds):
    fp = FramePairs(ds, "random", "val", pairs=4)
    batch = next(iter(DataLoader(fp, batch_size=3)))
    assert batch["frames"].shape == (3, ds.T, ds.W) and batch["x_r"].shape == (3, 4, ds.W)
    a = fp[1]["r_idx"].clone()
    assert torch.equal(a, fp[1]["r_idx"])          # deterministic within an epoch
    fp.set_epoch(1)
    assert any(not torch.equal(fp[i]["tau_idx"], FramePairs(ds, "random", "val", pairs=4)[i]["tau_idx"])
               for i in range(len(fp)))
