"""DIFE hook implementations of dife-shapes: the ``shapes`` dataset."""

from dife_core import hookimpl
from dife_core.populations import POPULATION_KINDS
from dife_core.types import Dataset, ModelLoader


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


def _load_recipe(source: str = "default", *, trust: bool = False, device: str = "cpu", seed: int = 0,
                 cache_dir=None, progress: bool = True, **options):
    """The clean tiny CLIP of recipe ``source`` ("default" or "test"): cached or trained."""
    from dife_core.errors import InvalidInputError

    if options:
        raise InvalidInputError(f"shapes-recipe loader: unknown option(s) {', '.join(sorted(options))}; "
                                "options: seed, cache_dir, progress.")
    from .recipe import clean_clip

    return clean_clip(source, int(seed), cache_dir=cache_dir, progress=progress, device=device)


@hookimpl
def register_model_loaders(register):
    register(ModelLoader(
        name="shapes-recipe",
        description="the embedded world's clean tiny CLIP by recipe name (default, test); trained once, then cached",
        load=_load_recipe,
    ))
