"""Hook specifications: the whole plugin surface of DIFE.

Every ``register_*`` hook receives a ``register`` callback owned by the core.
A plugin calls it once per object it provides; the core checks the object's
type, records which plugin registered it and refuses duplicate names. Built-in
features register through these same hooks (``dife_core.builtins``).

Hooks are called once per process, lazily, the first time the registry of that
kind is needed. They must be cheap: import heavy libraries (torch, open_clip,
transformers) inside the callables you register, never at module import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

hookspec = pluggy.HookspecMarker("dife")


@hookspec
def register_model_loaders(register: Callable[..., None]) -> None:
    """Register model loaders.

    Called when the model-loader registry is first needed.

    :param register: call ``register(loader)`` with a
        :class:`dife_core.types.ModelLoader` for each loader the plugin
        provides. Returns ``None``.
    """


@hookspec
def register_attacks(register: Callable[..., None]) -> None:
    """Register backdoor attacks (recipes that build poisoned checkpoints).

    Called when the attack registry is first needed.

    :param register: call ``register(attack)`` with a
        :class:`dife_core.types.Attack` (an :class:`~dife_core.types.AttackCard`
        plus its builder) for each attack. Returns ``None``.
    """


@hookspec
def register_triggers(register: Callable[..., None]) -> None:
    """Register trigger channels (image-space or text-space trigger families).

    Called when the trigger registry is first needed.

    :param register: call ``register(trigger)`` with a
        :class:`dife_core.types.Trigger` for each trigger family. Returns ``None``.
    """


@hookspec
def register_interfaces(register: Callable[..., None]) -> None:
    """Register deployment interfaces (interface card + evaluator).

    Called when the interface registry is first needed.

    :param register: call ``register(interface)`` with a
        :class:`dife_core.types.Interface` for each interface. Returns ``None``.
    """


@hookspec
def register_metrics(register: Callable[..., None]) -> None:
    """Register metrics (target success, H@K, ...).

    Called when the metric registry is first needed.

    :param register: call ``register(metric)`` with a
        :class:`dife_core.types.Metric` for each metric. Returns ``None``.
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register datasets that provide audit populations.

    Called when the dataset registry is first needed.

    :param register: call ``register(dataset)`` with a
        :class:`dife_core.types.Dataset` for each dataset. Returns ``None``.
    """


@hookspec
def register_scanners(register: Callable[..., None]) -> None:
    """Register backdoor scanners (trigger searches run by ``dife scan``).

    Called when the scanner registry is first needed.

    :param register: call ``register(scanner)`` with a
        :class:`dife_core.types.Scanner` for each search method. Returns ``None``.
    """


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add commands to the ``dife`` command line.

    Called once when the CLI is built, before arguments are parsed.

    :param cli: the root :class:`click.Group`; add commands with
        ``@cli.command()`` or ``cli.add_command(...)``. Import heavy libraries
        inside the command function. Returns ``None``.
    """
