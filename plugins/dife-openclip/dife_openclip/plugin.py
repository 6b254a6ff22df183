"""DIFE hook implementations of dife-openclip."""

from dife_core import hookimpl
from dife_core.types import ModelLoader


def _load(source: str, *, trust: bool = False, device: str = "cpu", **options):
    raise NotImplementedError("filled by the loaders issue")


def _from_manifest(manifest: dict, weights_path, *, trust: bool = False, device: str = "cpu"):
    from safetensors.torch import load_file

    from dife_core.model import Preprocess

    from .encoder import build_custom

    enc = build_custom(manifest["architecture"], name=manifest.get("name", "model"))
    enc.model.load_state_dict(load_file(str(weights_path)))
    enc.preprocess = Preprocess.from_dict(manifest["preprocess"])
    return enc.to(device).eval()


@hookimpl
def register_model_loaders(register):
    register(ModelLoader(name="openclip", description="open_clip models: architecture + pretrained tag, local files, custom configs",
                         load=_load, from_manifest=_from_manifest))
