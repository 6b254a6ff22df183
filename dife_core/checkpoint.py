"""The DIFE checkpoint format: a folder with ``model.safetensors`` + ``dife.json``.

``dife.json`` (the manifest) holds the loader, its architecture description,
preprocessing, branch fingerprints and an optional attack card. Loading needs
no pickle: the loader named in the manifest rebuilds the model from the
architecture and the safetensors weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from .errors import InvalidInputError, NotFoundError

FORMAT = "dife-checkpoint/1"
MANIFEST = "dife.json"
WEIGHTS = "model.safetensors"


def save_checkpoint(encoder, path, *, attack: Optional[dict] = None, extra: Optional[dict] = None,
                    artifacts: Optional[dict] = None) -> Path:
    """Write ``encoder`` (a DualEncoder) as a DIFE checkpoint folder, atomically."""
    from safetensors.torch import save_file

    from . import __version__

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    save_file(sd, str(tmp / WEIGHTS))
    if artifacts:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in artifacts.items()},
                  str(tmp / "artifacts.safetensors"))
    manifest = {
        "format": FORMAT,
        "dife_version": __version__,
        "name": encoder.name,
        "loader": encoder.loader,
        "architecture": encoder.architecture,
        "preprocess": encoder.preprocess.to_dict(),
        "dtype": str(encoder.dtype).replace("torch.", ""),
        "fingerprint": encoder.fingerprint(),
        "attack": attack,
        "extra": extra or {},
    }
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        import shutil

        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def is_checkpoint(path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path) -> dict:
    p = Path(path) / MANIFEST
    if not p.is_file():
        raise NotFoundError(f"{path} is not a DIFE checkpoint folder (no {MANIFEST}).")
    try:
        m = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{p}: manifest is not valid JSON ({e}).") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise InvalidInputError(f"{p}: unknown checkpoint format {m.get('format') if isinstance(m, dict) else m!r}; expected {FORMAT}.")
    return m


def load_checkpoint(path, *, trust: bool = False, device: str = "cpu"):
    """Load a DIFE checkpoint folder through the loader its manifest names."""
    from .plugins import get_registry

    manifest = read_manifest(path)
    loader = get_registry().get("model_loaders", manifest["loader"])
    if loader.from_manifest is None:
        raise InvalidInputError(f"loader {loader.name!r} cannot rebuild DIFE checkpoints.")
    enc = loader.from_manifest(manifest, Path(path) / WEIGHTS, trust=trust, device=device)
    enc.name = manifest.get("name", enc.name)
    enc.manifest = manifest
    return enc
