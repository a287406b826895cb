"""The `abcc` command.

Each area of the package contributes its subcommands through a small `_cli.py` module with a
`register(subparsers)` function; this file only assembles them (nothing imports this module).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from . import _errors

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
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error (put it before the command: abcc --debug ...)")
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
    """Run one `abcc` command; returns the exit code (0 ok, 2 bad input or environment, 1 a bug,
    130 Ctrl-C). Errors are one line on stderr; ``--debug`` shows tracebacks instead."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    name = " ".join(x for x in (args.command, getattr(args, "data_command", None)) if x)
    prefix = f"abcc {name}"
    if args.debug:
        return int(args.func(args) or 0)

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"{prefix}: warning: {_errors.one_line(message)}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return int(args.func(args) or 0)
    except KeyboardInterrupt as err:
        saved = getattr(err, "saved", None) or ("nothing half-written was left: outputs are built in a temporary "
                                                "folder and moved into place only when complete")
        print(f"{prefix}: interrupted; {_errors.one_line(saved)}", file=sys.stderr)
        return _errors.EXIT_INTERRUPT
    except _errors.EXPECTED as err:
        print(f"{prefix}: error: {_errors.describe(err)}", file=sys.stderr)
        return _errors.EXIT_USAGE
    except Exception as err:  # a bug: one line here, the traceback in a file
        path = _errors.write_traceback(err, args.command)
        print(f"{prefix}: internal error: {type(err).__name__}: {_errors.one_line(err)[:300]} (the full traceback "
              f"is in {path}; rerun with `abcc --debug ...` to see it, and please report it)", file=sys.stderr)
        return _errors.EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
