"""DIFE hook implementations of dife-badtexttower.

The attack module imports no torch at module level, so registering it is cheap.
"""

from dife_core import hookimpl


@hookimpl
def register_attacks(register):
    from .attack import ATTACK

    register(ATTACK)
