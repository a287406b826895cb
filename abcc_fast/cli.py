"""The `abcc` command.

Each command module (``abcc_fast/apps/*_cli.py``, and ``ops/_cli.py`` for ``abcc backends``)
contributes its subcommands through a ``register(subparsers)`` function; this file only assembles
them (nothing imports this module).
"""
from __future__ import annotations

import argparse
import sys
import warnings

from . import _errors
from .apps import analysis_cli, bench_cli, data_cli, train_cli
from .ops import _cli as ops_cli

# the command modules, in the order of `abcc --help`
_AREAS = (data_cli, bench_cli, train_cli, ops_cli, analysis_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abcc",
        description="abcc_fast: operando IR prediction (ABCC), OpIRSim data, OpIRBench, fast kernels.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error (put it before the command: abcc --debug ...)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _AREAS:
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
