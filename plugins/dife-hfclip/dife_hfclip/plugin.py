"""DIFE hook implementations of dife-hfclip (imports nothing heavy)."""

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
        name="hfclip",
        description="Hugging Face transformers CLIP and SigLIP: save_pretrained folders, cached hub ids "
                    "(hf-hub:org/repo or org/repo); never trust_remote_code",
        load=_load, sniff=_sniff, from_manifest=_from_manifest, describe=_describe))
