"""DIFE hook implementations of dife-shapes: the ``shapes`` dataset."""

from dife_core import hookimpl
from dife_core.populations import POPULATION_KINDS
from dife_core.types import Dataset


def _load(preset: str = "default", seed: int = 0, source: str = "automobile", target: str = "airplane", **options):
    from dife_core.errors import InvalidInputError

    if options:
        raise InvalidInputError(f"shapes dataset: unknown option(s) {', '.join(sorted(options))}; "
                                "options: preset, seed, source, target.")
    from .world import make_world

    return make_world(preset, int(seed), source=source, target=target)


@hookimpl
def register_datasets(register):
    register(Dataset(
        name="shapes",
        description="the embedded default world: ten CIFAR-10-named glyph classes with natural captions",
        load=_load,
        provides=POPULATION_KINDS,
        options={"preset": "default", "seed": 0, "source": "automobile", "target": "airplane"},
    ))
