"""The DIFE checkpoint format: a folder with ``model.safetensors`` + ``dife.json``.

``dife.json`` (the manifest) holds the loader, its architecture description,
preprocessing, weight dtype, branch fingerprints and an optional attack card.
Loading needs no pickle: the loader named in the manifest rebuilds the model
from the architecture and the safetensors weights (header checked first by
:mod:`dife_core.safeload`). Optional beside them: ``artifacts.safetensors``
(attack artifacts, e.g. a learned prompt or trigger) and asset folders a
loader needs (``tokenizer/`` for Hugging Face models), listed under
``"assets"``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

from .errors import InvalidInputError, NotFoundError

FORMAT = "dife-checkpoint/1"
#: weight dtypes a manifest may name
DTYPES = ("float32", "float16", "bfloat16", "float64")
MANIFEST = "dife.json"
WEIGHTS = "model.safetensors"
ARTIFACTS = "artifacts.safetensors"
#: keys every manifest must carry
REQUIRED_KEYS = ("format", "loader", "architecture", "preprocess")


def _cpu_tensors(tensors: dict) -> dict:
    """Contiguous CPU copies safetensors accepts (it refuses tensors sharing storage)."""
    out, seen = {}, set()
    for k, v in tensors.items():
        t = v.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
        if key is not None and key in seen:
            t = t.clone()
        elif key is not None:
            seen.add(key)
        out[k] = t
    return out


def save_checkpoint(encoder, path, *, attack: Optional[dict] = None, extra: Optional[dict] = None,
                    artifacts: Optional[dict] = None) -> Path:
    """Write ``encoder`` (a DualEncoder) as a DIFE checkpoint folder, atomically.

    ``attack`` is the attack card (a JSON-able dict) or None for a clean model;
    ``artifacts`` optional extra tensors (``artifacts.safetensors``).
    """
    from safetensors.torch import save_file

    from . import __version__

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(_cpu_tensors(encoder.state_dict()), str(tmp / WEIGHTS))
    if artifacts:
        save_file(_cpu_tensors(artifacts), str(tmp / ARTIFACTS))
    save_assets = getattr(encoder, "save_assets", None)
    assets = save_assets(tmp) if callable(save_assets) else {}
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
        "assets": assets or {},
    }
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def is_checkpoint(path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path) -> dict:
    """The validated manifest of a DIFE checkpoint folder."""
    from .untrusted import asset_path, check_preprocess, inside, load_json

    p = Path(path) / MANIFEST
    if not p.is_file():
        raise NotFoundError(f"{path} is not a DIFE checkpoint folder (no {MANIFEST}).")
    inside(path, p, str(p), MANIFEST)  # a symlinked manifest may not point outside the folder
    m = load_json(p, "manifest")
    if m.get("format") != FORMAT:
        raise InvalidInputError(f"{p}: key format: unknown checkpoint format {str(m.get('format'))[:60]!r}; "
                                f"expected {FORMAT}.")
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise InvalidInputError(f"{p}: manifest lacks {', '.join(missing)}.")
    types = {"loader": str, "architecture": dict, "preprocess": dict, "name": str, "dtype": str, "dife_version": str,
             "fingerprint": dict, "extra": dict, "assets": dict}
    for key, typ in types.items():
        if m.get(key) is not None and not isinstance(m[key], typ):
            raise InvalidInputError(f"{p}: key {key} must be {'a string' if typ is str else 'an object'}, "
                                    f"got {type(m[key]).__name__}.")
    for key in ("loader", "name", "dtype", "dife_version"):
        if isinstance(m.get(key), str) and len(m[key]) > 256:
            raise InvalidInputError(f"{p}: key {key} is longer than 256 characters.")
    if m.get("dtype") is not None and m["dtype"] not in DTYPES:
        raise InvalidInputError(f"{p}: key dtype {m['dtype']!r} is not one of {', '.join(DTYPES)}.")
    for b, v in (m.get("fingerprint") or {}).items():
        if not isinstance(v, str) or len(v) > 128:
            raise InvalidInputError(f"{p}: key fingerprint.{b} must be a short string.")
    if m.get("attack") is not None and not isinstance(m["attack"], dict):
        raise InvalidInputError(f"{p}: manifest 'attack' must be an object (the attack card) or null.")
    check_preprocess(m["preprocess"], str(p))
    for k, v in (m.get("assets") or {}).items():
        asset_path(path, v, str(p), f"assets.{k}")
    return m


def load_checkpoint(path, *, trust: bool = False, device: str = "cpu", verify: bool = True):
    """Load a DIFE checkpoint folder through the loader its manifest names.

    With ``verify`` (default) the loaded weights must reproduce the branch
    fingerprints recorded in the manifest; a mismatch means the weights were
    changed after the manifest was written.
    """
    from .plugins import get_registry
    from .safeload import validate_safetensors
    from .untrusted import inside

    manifest = read_manifest(path)
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise NotFoundError(f"{path}: DIFE checkpoint has no {WEIGHTS}.")
    inside(path, weights, str(weights), WEIGHTS)
    validate_safetensors(weights)
    loader = get_registry().get("model_loaders", manifest["loader"])
    if loader.from_manifest is None:
        raise InvalidInputError(f"loader {loader.name!r} cannot rebuild DIFE checkpoints.")
    try:
        enc = loader.from_manifest(manifest, weights, trust=trust, device=device)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
        raise InvalidInputError(f"{path}: manifest architecture does not build a {loader.name} model "
                                f"({type(e).__name__}: {str(e)[:200]}).") from None
    enc.name = manifest.get("name", enc.name)
    enc.manifest = manifest
    enc.source = str(path)
    recorded = manifest.get("fingerprint")
    if verify and isinstance(recorded, dict) and recorded:
        actual = enc.fingerprint()
        bad = sorted(b for b in ("visual", "text") if b in recorded and recorded[b] != actual[b])
        if bad:
            raise InvalidInputError(
                f"{path}: {' and '.join(bad)} weights do not match the manifest fingerprint "
                f"({', '.join(f'{b}: recorded {recorded[b]}, loaded {actual[b]}' for b in bad)}); "
                f"the weights were changed after the manifest was written.")
    return enc


def load_artifacts(path, *, device: str = "cpu") -> dict:
    """The attack artifacts of a checkpoint folder (``{}`` when there are none)."""
    from .safeload import load_safetensors
    from .untrusted import inside

    p = Path(path) / ARTIFACTS
    if not p.is_file():
        return {}
    inside(path, p, str(p), ARTIFACTS)
    return load_safetensors(p, device=device)
