"""`abcc backends`: what each kernel backend can do here."""
from ._registry import backends_report


def register(sub) -> None:
    p = sub.add_parser("backends", help="list the kernel backends and why any is unavailable")
    p.set_defaults(func=_run)


def _run(args) -> int:
    print(backends_report())
    return 0
