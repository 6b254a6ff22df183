"""DIFE hook implementations of dife-backdoors: trigger channels and attacks.

Nothing here imports torch; builders import it when they run.
"""

from dife_core import hookimpl


@hookimpl
def register_triggers(register):
    from .triggers import TRIGGERS

    for trigger in TRIGGERS:
        register(trigger)


@hookimpl
def register_attacks(register):
    from .contrastive_poisoning import ATTACKS

    for attack in ATTACKS:
        register(attack)
