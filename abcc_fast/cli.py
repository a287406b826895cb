"""The `abcc` command.

Each area of the package contributes its subcommands through a small `_cli.py` module with a
`register(subparsers)` function; this file only assembles them (nothing imports this module).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (module, description) for each area that adds subcommands. A module that is missing (an area
# not built yet) is skipped, so the command keeps working while the package grows.
_AREAS = (
    "abcc_fast.data._cli",
    "abcc_fast.opirbench._cli",
    "abcc_fast.train._cli",
    "abcc_fast.viz._cli",
    "abcc_fast.ops._cli",
    "abcc_fast.analysis._cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abcc",
        description="abcc_fast: operando IR prediction (ABCC), OpIRSim data, OpIRBench, fast kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"abcc {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
