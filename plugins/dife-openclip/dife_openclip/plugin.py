"""DIFE hook implementations of dife-openclip (imports nothing heavy)."""

from dife_core import hookimpl
from dife_core.types import ModelLoader


def _load(source: str, *, trust: bool = False, device: str = "cpu", **options):
    from .loader import load

    return load(source, trust=trust, device=device, **options)


def _sniff(source: str) -> bool:
    from .loader import sniff

    return sniff(source)


def _from_manifest(manifest: dict, weights_path, *, trust: bool = False, device: str = "cpu"):
    from .loader import from_manifest

    return from_manifest(manifest, weights_path, trust=trust, device=device)


def _describe(source: str, keys=None):
    from .loader import describe

    return describe(source, keys)


@hookimpl
def register_model_loaders(register):
    register(ModelLoader(
        name="openclip",
        description="open_clip models: ARCH[:TAG] (cached weights only), hf-hub:/local-dir: folders, "
                    "custom architecture JSON, local safetensors/.pt/.bin files",
        load=_load, sniff=_sniff, from_manifest=_from_manifest, describe=_describe))
