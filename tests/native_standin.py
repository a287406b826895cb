"""Stand-ins for the CUDA entry points of abcc_fast._C, for machines without a GPU.

`checked(name, impl)` returns a function that first binds its call against the parameter names the
built extension exports for `name` (`_C.op_args`: the fields of the op's params struct that the entry
point reads, written once in csrc/<op>/binding.cpp), then runs `impl` on the bound arguments.
A Python adapter that passes a name the C++ function does not have, or misses one, fails here with
TypeError, exactly as it would on a GPU machine.
"""
import inspect

from abcc_fast.ops._backend import native_module


def op_args() -> dict:
    mod = native_module()
    if mod is None or not hasattr(mod, "op_args"):
        return {}
    return dict(mod.op_args)


def checked(name: str, impl):
    names = op_args()[name]
    sig = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])

    def call(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)  # TypeError on a missing, extra or misspelled argument
        return impl(**bound.arguments)

    call.__name__ = name
    return call
