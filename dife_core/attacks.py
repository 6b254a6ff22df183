"""The attack API: what an attack's builder receives and returns.

An attack plugin registers :class:`dife_core.types.Attack` with a
``build(ctx: BuildContext) -> BuildResult``. The core runs builders from
``dife build`` / ``dife demo`` and writes the result as a DIFE checkpoint
(safetensors + manifest with the attack card).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs


@attrs.define
class BuildContext:
    clean: Any  # DualEncoder: the clean checkpoint to start from (a private copy, safe to train)
    world: Any  # dife_core.populations.World (train pairs in world.extras)
    config: Any  # instance of the attack's attrs config class
    seed: int = 0
    device: str = "cpu"
    progress: Optional[Callable[..., Any]] = None  # progress(description, total) -> context manager with .advance()


@attrs.define
class BuildResult:
    """What a builder returns.

    ``card`` is the per-checkpoint attack card written into the manifest:
    ``{"attack": id, "route", "modifies", "trigger": {"channel", "name",
    "params"}, "source", "target", "native": {"protocol", "metric", "value",
    "reference_value"}, "clean_utility": {...}, "probe", "config": {...}}``.
    ``artifacts`` holds extra tensors the attack ships (e.g. a learned prompt),
    saved beside the weights.
    """

    model: Any  # DualEncoder
    card: dict
    artifacts: dict = attrs.Factory(dict)
