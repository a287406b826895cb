"""`abcc backends`: what each kernel backend can do here."""


def register(sub) -> None:
    p = sub.add_parser("backends", help="list the kernel backends and why any is unavailable")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from . import backends_report

    print(backends_report())
    return 0
