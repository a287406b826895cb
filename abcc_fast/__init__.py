"""abcc_fast: a fast PyTorch engine for operando infrared prediction.

Subpackages: `ops` (kernels behind one door), `nn` (soft-DTW / DILATE loss modules), `data`
(OpIRSim and the dataset format), `opirbench` (the benchmark), `model`, `train`, `analysis`, `viz`,
`pretrained` (the packaged ABCC weights: ``ABCC.from_pretrained("opirsim")``) and `apps` (the `abcc`
commands, the demo, the full benchmark suite). docs/architecture.md draws the layers they form;
tests/test_layers.py keeps them.
"""
import importlib

__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import abcc_fast` stays cheap; the model loads on first use
    if name in ("ABCC", "ABCCConfig"):
        from . import model  # the model (torch, einops) only when abcc_fast.ABCC is asked for
        return getattr(model, name)
    if name in ("nn", "pretrained"):
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'abcc_fast' has no attribute {name!r}")
