"""DDP on CPU: two gloo processes train the stand-in model and then the real tiny ABCC (whose loss
takes a ``torch.func.jvp``); both ranks must end with identical parameters (the gradient
all-reduce happened for everything that carries gradients) and the stand-in's loss must drop."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from abcc_fast.data import generate, load

sys.path.insert(0, str(Path(__file__).parent))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from test_train_standin import StandIn, StandInConfig

    from abcc_fast.train.distributed import cleanup, init_distributed
    from abcc_fast.train.trainer import TrainConfig, train

    info = init_distributed("cpu")
    assert info.world_size == world and info.backend == "gloo"
    ds = load(data)
    torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = StandIn(StandInConfig.from_dataset(ds, "system"))
    cfg = TrainConfig.tiny(steps=16, batch_size=4, warmup_steps=2, log_every=4, eval_every=8, checkpoint_every=8)
    result = train(model, ds, split="system", config=cfg, out_dir=out, resume=False, progress=False, dist_info=info)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, f"rank{rank}.safetensors"))
    assert result.steps_done == 16

    from abcc_fast.model import ABCC, ABCCConfig

    torch.manual_seed(200 + rank)
    abcc = ABCC(ABCCConfig.from_dataset(ds, "system", preset="tiny"))
    cfg = TrainConfig.tiny(steps=4, batch_size=4, warmup_steps=1, eval_every=0, checkpoint_every=0)
    train(abcc, ds, split="system", config=cfg, out_dir=os.path.join(out, "abcc"), resume=False, progress=False,
          dist_info=info)
    save_file({k: v.contiguous() for k, v in abcc.state_dict().items()},
              os.path.join(out, f"abcc_rank{rank}.safetensors"))

    # the SEI stream from the extents leaves the trunk's SEI coefficients without a gradient: the
    # wrapper must search for unused parameters on its own (DDP raises at the second step otherwise)
    torch.manual_seed(300 + rank)
    ext = ABCC(ABCCConfig.from_dataset(ds, "system", preset="tiny", sei_basis="templates", sei_from_extents=True,
                                       w_identity=0.0))
    assert ext.has_unused_parameters
    train(ext, ds, split="system", config=cfg, out_dir=os.path.join(out, "ext"), resume=False, progress=False,
          dist_info=info)
    save_file({k: v.contiguous() for k, v in ext.state_dict().items()}, os.path.join(out, f"ext_rank{rank}.safetensors"))
    cleanup()


def test_ddp_two_gloo_processes_stay_in_sync(tmp_path):
    data = generate(tmp_path / "data", n_samples=80, T=8, W=64, seed=0, progress=False)
    out = tmp_path / "run"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out)), nprocs=2, join=True)
    for stem in ("rank", "abcc_rank", "ext_rank"):
        a, b = load_file(str(out / f"{stem}0.safetensors")), load_file(str(out / f"{stem}1.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.isfinite(a[k]).all()
            assert torch.equal(a[k], b[k]), f"{stem}: {k} differs between ranks"
    rows = [line.split(",") for line in (out / "log.csv").read_text().splitlines()[1:]]
    train_loss = [float(r[2]) for r in rows if r[1] == "train"]
    assert len(train_loss) == 4 and train_loss[-1] < train_loss[0]
    assert (out / "model" / "model.safetensors").is_file()          # rank 0 exported the EMA model
    assert (out / "checkpoints" / "LATEST").read_text().strip() == "step_0000016"
