"""Preset names, defined once.

A preset sizes a run: the model's config (``ABCCConfig.preset``, ``BaselineConfig.preset``) and the
training budget (``TrainConfig.preset_named``). Configs name them ``tiny``, ``cpu_default`` and
``gpu_default``; the command line (``--preset`` of ``abcc train``, ``abcc demo``, ``abcc bench --all``)
says ``tiny``, ``cpu`` and ``gpu``.
"""
from __future__ import annotations

CONFIG_PRESETS = ("tiny", "cpu_default", "gpu_default")
CLI_PRESETS = {"tiny": "tiny", "cpu": "cpu_default", "gpu": "gpu_default"}   # --preset NAME -> config preset


def config_preset(name: str, what: str = "preset") -> str:
    """The config preset of a command-line or config preset name ("cpu" or "cpu_default" ->
    "cpu_default"); ValueError naming ``what`` and the choices for anything else."""
    if name in CLI_PRESETS:
        return CLI_PRESETS[name]
    if name in CONFIG_PRESETS:
        return name
    raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(CLI_PRESETS)}")


def check_cli_preset(name: str) -> str:
    """A command-line preset name (tiny, cpu, gpu), or ValueError saying which exist."""
    if name not in CLI_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(CLI_PRESETS)}")
    return name
