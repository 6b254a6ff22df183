"""DIFE hook implementations of dife-scan: the built-in scanners and the
``masked-pattern`` trigger family a mask inversion recovers.

Nothing heavy is imported here: each scanner imports torch when it runs.
"""

from dife_core import hookimpl
from dife_core.types import Scanner


def _run(module: str, fn: str):
    def run(ctx):
        import importlib

        return getattr(importlib.import_module(f"dife_scan.{module}"), fn)(ctx)

    return run


@hookimpl
def register_scanners(register):
    from .image import FAMILY_OPTIONS, INVERSION_OPTIONS
    from .text import NATURAL_OPTIONS, TOKEN_OPTIONS

    register(Scanner(name="image-families", channel="image", order=10, options=dict(FAMILY_OPTIONS),
                     description="Each registered image trigger family at its default parameters: zero-shot "
                                 "target-success excess over the reference", run=_run("image", "scan_families")))
    register(Scanner(name="text-natural", channel="none", order=20, options=dict(NATURAL_OPTIONS),
                     description="Source prompts that retrieve another class's images with no trigger: hijack "
                                 "excess over the reference", run=_run("text", "scan_natural")))
    register(Scanner(name="image-inversion", channel="image", order=50, options=dict(INVERSION_OPTIONS),
                     description="DECREE-style mask + pattern inversion for embedding collapse; the suspect's "
                                 "mask against the reference's", run=_run("image", "scan_inversion")))
    register(Scanner(name="text-tokens", channel="text", order=60, options=dict(TOKEN_OPTIONS),
                     description="Gradient-guided 1-3 token prefix/suffix search (HotFlip/GCG-style): hijack "
                                 "excess over the reference", run=_run("text", "scan_tokens")))


@hookimpl
def register_triggers(register):
    from .image import TRIGGERS

    for t in TRIGGERS:
        register(t)
