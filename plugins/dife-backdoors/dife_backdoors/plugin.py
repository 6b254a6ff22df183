"""DIFE hook implementations of dife-backdoors: trigger channels and attacks.

Nothing here imports torch; builders import it when they run.
"""

from dife_core import hookimpl


@hookimpl
def register_triggers(register):
    from .learned_triggers import TRIGGERS as LEARNED
    from .triggers import TRIGGERS

    for trigger in TRIGGERS + LEARNED:
        register(trigger)


@hookimpl
def register_attacks(register):
    from . import badencoder, bai_badclip, liang_badclip, mmpoison, toxictextclip, variants
    from .contrastive_poisoning import ATTACKS

    for module_attacks in (ATTACKS, variants.ATTACKS, liang_badclip.ATTACKS, badencoder.ATTACKS, mmpoison.ATTACKS,
                           toxictextclip.ATTACKS, bai_badclip.ATTACKS):
        for attack in module_attacks:
            register(attack)


@hookimpl
def register_commands(cli):
    from .commands import register

    register(cli)
