"""OpIRSim data: the dataset format (schema v1), the simulator, splits, loaders and the importer.

Public API::

    load(path) -> OpIRDataset                 validate and load a dataset directory
    write_dataset(out_dir, tensors, manifest) atomic writer used by generate and import
    OpIRDataset                               stacked tensors + manifest; split(), norm_stats()
"""
from .format import SCHEMA_VERSION, OpIRDataset, from_tensors, load, read_manifest, write_dataset
from .splits import make_splits, normalization_stats

__all__ = ["SCHEMA_VERSION", "OpIRDataset", "from_tensors", "load", "read_manifest", "write_dataset",
           "make_splits", "normalization_stats"]
