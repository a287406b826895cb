"""OpIRSim data: the dataset format (schema v1), the simulator, splits, loaders and the importer.

Public API::

    load(path) -> OpIRDataset                       validate and load a dataset directory
    generate(out_dir, n_samples=7118, T=32, W=512, wn_range=(700, 1900), systems=None, seed=0)
    default_dataset() -> OpIRDataset                the embedded default (generated once, cached)
    write_dataset(out_dir, tensors, manifest)       atomic writer used by generate and import
    DatasetWriter                                   streaming (shard-by-shard) atomic writer
    import_csv(...)                                 measured data -> the same format
    FramePairs(dataset, split, part)                torch Dataset of samples with (r, tau) pairs
    OpIRSim, SimConfig                              the simulator itself
"""
from .format import (SCHEMA_VERSION, DatasetWriter, OpIRDataset, from_tensors, load, read_manifest,
                     write_dataset)
from .simulator import (GENERATOR_NAME, GENERATOR_VERSION, OpIRSim, SimConfig, default_dataset,
                        default_dataset_path, generate)
from .importer import import_csv
from .splits import make_splits, normalization_stats
from .torch_dataset import FramePairs

__all__ = ["SCHEMA_VERSION", "DatasetWriter", "OpIRDataset", "from_tensors", "load", "read_manifest",
           "write_dataset", "GENERATOR_NAME", "GENERATOR_VERSION", "OpIRSim", "SimConfig",
           "default_dataset", "default_dataset_path", "generate", "make_splits", "normalization_stats", "import_csv", "FramePairs"]
