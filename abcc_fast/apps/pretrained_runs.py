"""The packaged models as the training runs ``abcc demo --pretrained`` reports on (no training)."""
from __future__ import annotations

from ..data.manifest import dataset_identity, same_dataset
from ..model import ABCC
from ..opirbench import manifest_sha256
from ..pretrained import BUILD_COMMAND, LOG_NAME, SPLIT_MODELS, card, path
from ..train.trainer import TrainConfig, TrainResult


def packaged_runs(ds, splits) -> tuple[dict, object, str]:
    """({split: TrainResult of its packaged model, with the loaded model}, the TrainConfig they were
    built with, the model preset). Each card must name ``split`` and the dataset ``ds`` (manifest
    sha256): on another dataset the test part may overlap what the model was trained on."""
    sha, identity = manifest_sha256(ds), dataset_identity(ds)
    runs, cfgs, presets = {}, [], []
    for split in splits:
        name = SPLIT_MODELS[split]
        folder = path(name)
        c = card(name)
        where = f"the packaged model {name!r} ({folder})"
        if c.get("split") != split:
            raise ValueError(f"{where} was trained on split {c.get('split')!r}, not {split!r}; rebuild it with "
                             f"{BUILD_COMMAND} --split {split}")
        trained_on = c.get("dataset") or {}
        if not same_dataset(trained_on.get("manifest_sha256"), trained_on.get("identity"), sha, identity):
            raise ValueError(f"{where} was trained on dataset {trained_on.get('name')!r} (manifest sha256 "
                             f"{str(trained_on.get('manifest_sha256'))[:12]}..), not on this one "
                             f"({ds.manifest.get('name')!r}, {sha[:12]}..), so its test part may hold samples it was "
                             "trained on; use the default dataset, or rebuild the models with "
                             f"{BUILD_COMMAND}")
        res = c["training"]["result"]
        runs[split] = TrainResult(
            run_dir=folder, model_dir=folder, best_dir=None, log_path=folder / LOG_NAME,
            steps_done=int(res["steps_done"]), stopped_by=res["stopped_by"], train_loss=float(res["train_loss"]),
            best_val_loss=res.get("best_val_loss"), final_val_loss=res.get("final_val_loss"),
            wall_time_s=float(res["wall_time_s"]), total_time_s=float(res["total_time_s"]),
            resumed_from=res.get("resumed_from"), steps_budget=res.get("steps_budget"),
            model=ABCC.from_pretrained(folder))
        cfgs.append(c["training"]["train_config"])
        presets.append(c["training"]["preset"])
    if any(x != cfgs[0] for x in cfgs) or any(p != presets[0] for p in presets):
        raise ValueError("the packaged models were built with different training settings; rebuild them together "
                         f"({BUILD_COMMAND} --split " + ",".join(splits) + ")")
    return runs, TrainConfig.from_json(cfgs[0]), presets[0]
