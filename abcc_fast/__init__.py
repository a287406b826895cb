"""abcc_fast: a fast PyTorch engine for operando infrared prediction.

Subpackages: `ops` (kernels behind one door), `data` (OpIRSim and the dataset format),
`opirbench` (the benchmark), `model`, `train`, `viz`.
"""
__version__ = "0.1.0"
