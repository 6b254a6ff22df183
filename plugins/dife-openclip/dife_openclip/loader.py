"""Resolve an open_clip source string to an architecture + weight file, and load it.

Source syntax (see docs/models.md):

* ``ViT-B-32`` / ``ViT-B-32:openai`` -- a built-in architecture name and a
  pretrained tag (or ``pretrained=TAG`` option); the tag's weights must
  already be in the local cache. ``ViT-B-32:/path/w.safetensors`` -- a name and
  a local weight file.
* ``hf-hub:org/repo`` -- an open_clip repo in the local Hugging Face cache.
* ``local-dir:/path`` or a folder holding ``open_clip_config.json`` -- config
  and weights from that folder.
* ``/path/arch.json`` -- a custom architecture (open_clip's model-config JSON,
  bare or wrapped as ``{"model_cfg": ..., "preprocess_cfg": ...}``), weights
  from ``pretrained=FILE``.
* ``/path/weights.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` -- a weight
  file; the architecture comes from ``architecture=NAME|JSON`` or from an
  ``open_clip_config.json`` beside it.

Nothing is ever downloaded: cached files are looked up with
``huggingface_hub.try_to_load_from_cache`` only.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Optional

import attrs

from dife_core.errors import InvalidInputError, NotFoundError
from dife_core.safeload import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES

HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"
CONFIG_NAME = "open_clip_config.json"
#: weight file names open_clip looks for in a folder or hub repo, best first
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                "model.safetensors", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth",
                "pytorch_model.bin", "pytorch_model.pth", "model.pth")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES


@attrs.define
class Resolved:
    """What a source string names: an architecture dict and where its weights are."""

    architecture: dict
    weights: Optional[Path]
    source_kind: str  # "pretrained-tag", "hf-hub", "local-dir", "custom-json", "weight-file"
    default_name: str


# -- small helpers -------------------------------------------------------------

def _is_weight_file(p: Path) -> bool:
    return p.suffix.lower() in WEIGHT_SUFFIXES


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise NotFoundError(f"{path}: {what} not found.") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{path}: {what} is not valid JSON ({e}).") from e
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: {what} must be a JSON object.")
    return data


def _split_config(data: dict, where: str) -> tuple:
    """(model_cfg, preprocess_cfg) from an open_clip_config.json or a bare model config."""
    model_cfg = data.get("model_cfg", data)
    preprocess_cfg = data.get("preprocess_cfg", {}) if "model_cfg" in data else {}
    if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg or "text_cfg" not in model_cfg:
        raise InvalidInputError(
            f"{where}: not an open_clip architecture config (needs embed_dim, vision_cfg and text_cfg, "
            f"optionally wrapped in model_cfg); keys found: {sorted(data)[:10]}.")
    return copy.deepcopy(model_cfg), dict(preprocess_cfg or {})


def _preprocess_overrides(cfg: dict) -> dict:
    """open_clip preprocess settings -> DIFE Preprocess keys (image_size comes from vision_cfg)."""
    out = {}
    if cfg.get("mean") is not None:
        out["mean"] = list(cfg["mean"])
    if cfg.get("std") is not None:
        out["std"] = list(cfg["std"])
    interp = cfg.get("interpolation")
    if interp:
        out["interpolation"] = interp if interp in ("bicubic", "bilinear", "nearest") else "bicubic"
    mode = cfg.get("resize_mode")
    if mode:
        # "longest" (pad to square) is rare; the nearest faithful choice on tensors is shortest+crop
        out["resize_mode"] = "squash" if mode == "squash" else "shortest"
    return out


def _open_clip():
    import open_clip

    return open_clip


def _known_models() -> list:
    return _open_clip().list_models()


def _builtin_name(name: str) -> Optional[str]:
    cleaned = name.replace("/", "-")
    return cleaned if cleaned in set(_known_models()) else None


def _tokenizer_spec(model_cfg: dict, model_name: Optional[str], local_dir: Optional[Path]) -> dict:
    text_cfg = model_cfg.get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name"):
        return {"kind": "hf", "name": str(local_dir) if local_dir is not None else text_cfg["hf_tokenizer_name"]}
    if model_name and "siglip" in model_name.lower():
        variant = "gemma" if "siglip2" in model_name.lower() else "mc4" if "i18n" in model_name.lower() else "c4-en"
        return {"kind": "siglip", "variant": variant}
    return {"kind": "simple"}


def _architecture(model_cfg: dict, preprocess_cfg: dict, *, model_name: Optional[str],
                  local_dir: Optional[Path] = None) -> dict:
    arch = copy.deepcopy(model_cfg)
    arch["preprocess"] = {**_preprocess_overrides(arch.get("preprocess") or {}), **_preprocess_overrides(preprocess_cfg)}
    if model_name:
        arch["model_name"] = model_name
    arch.setdefault("tokenizer", _tokenizer_spec(model_cfg, model_name, local_dir))
    return arch


def _hub_cached(repo: str, filename: str, cache_dir=None) -> Optional[Path]:
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    except Exception:  # invalid repo id and the like
        return None
    return Path(hit) if isinstance(hit, str) and os.path.isfile(hit) else None


def _first_weights_in(folder: Path) -> Optional[Path]:
    for n in WEIGHT_NAMES:
        if (folder / n).is_file():
            return folder / n
    found = sorted(p for p in folder.iterdir() if p.is_file() and _is_weight_file(p))
    found.sort(key=lambda p: p.suffix != ".safetensors")
    return found[0] if found else None


def _no_cache_error(what: str, tags: list, model: str) -> NotFoundError:
    listed = ", ".join(tags) if tags else "(none)"
    return NotFoundError(
        f"open_clip {what} is not in the local cache and DIFE never downloads weights. "
        f"Known pretrained tags for {model}: {listed}.",
        hint="Fetch it on a connected machine (e.g. open_clip.create_model(..., pretrained=TAG) or "
             "`huggingface-cli download`), then copy the cache (HF_HOME / ~/.cache/clip), or pass a local weight file.")


# -- resolution -------------------------------------------------------------------

def _resolve_named(name: str, tag: Optional[str], options: dict) -> Resolved:
    oc = _open_clip()
    model_name = _builtin_name(name)
    if model_name is None:
        raise NotFoundError(f"unknown open_clip architecture {name!r}; available: {', '.join(_known_models())}.")
    from open_clip.factory import get_model_config

    model_cfg = get_model_config(model_name)
    preprocess_cfg: dict = {}
    weights: Optional[Path] = None
    kind = "pretrained-tag"
    if tag and os.path.isfile(tag):
        weights, kind = Path(tag), "weight-file"
    elif tag:
        tags = oc.list_pretrained_tags_by_model(model_name)
        pcfg = oc.get_pretrained_cfg(model_name, tag)
        if not pcfg:
            raise NotFoundError(
                f"{tag!r} is neither a pretrained tag of {model_name} nor an existing file; "
                f"known tags: {', '.join(tags) or '(none)'}.")
        weights = _cached_tag_weights(pcfg, options.get("cache_dir"))
        if weights is None:
            raise _no_cache_error(f"pretrained tag {model_name}:{tag}", tags, model_name)
        preprocess_cfg = pcfg
        if "quick_gelu" in pcfg:  # the activation the weights were trained with
            model_cfg["quick_gelu"] = bool(pcfg["quick_gelu"])
    elif not options.get("random_init"):
        tags = oc.list_pretrained_tags_by_model(model_name)
        raise InvalidInputError(
            f"open_clip architecture {model_name!r} given without weights; name a pretrained tag "
            f"({model_name}:TAG or pretrained=TAG), a weight file, or random_init=True. "
            f"Known tags: {', '.join(tags) or '(none)'}.")
    arch = _architecture(model_cfg, preprocess_cfg, model_name=model_name)
    return Resolved(arch, weights, kind, f"{model_name}:{tag}" if tag and kind == "pretrained-tag" else model_name)


def _cached_tag_weights(pcfg: dict, cache_dir=None) -> Optional[Path]:
    """Where a pretrained tag's weights lie in the local cache, if they do."""
    if pcfg.get("file"):
        return Path(pcfg["file"]) if os.path.isfile(pcfg["file"]) else None
    hub = pcfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        candidates = []
        if filename:
            if filename.endswith((".bin", ".pth")):
                candidates.append(filename[:-4] + ".safetensors")
            candidates.append(filename)
        else:
            candidates += ["open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                           "open_clip_pytorch_model.bin"]
        for fn in candidates:
            hit = _hub_cached(repo, fn, cache_dir)
            if hit is not None:
                return hit
    url = pcfg.get("url", "")
    if url:
        root = Path(cache_dir) if cache_dir else Path(os.path.expanduser("~/.cache/clip"))
        p = root / os.path.basename(url)
        if p.is_file():
            return p
    return None


def _resolve_folder(folder: Path, *, label: str) -> Resolved:
    if not folder.is_dir():
        raise NotFoundError(f"{label}: folder {folder} does not exist.")
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise NotFoundError(f"{label}: {folder} has no {CONFIG_NAME}; an open_clip folder needs its config beside the weights.")
    model_cfg, preprocess_cfg = _split_config(_read_json(cfg_path, "open_clip config"), str(cfg_path))
    weights = _first_weights_in(folder)
    if weights is None:
        raise NotFoundError(f"{label}: no weight file in {folder}; looked for {', '.join(WEIGHT_NAMES)} or any *{'/*'.join(WEIGHT_SUFFIXES)}.")
    tokdir = folder if model_cfg.get("text_cfg", {}).get("hf_tokenizer_name") and (folder / "tokenizer.json").is_file() else None
    arch = _architecture(model_cfg, preprocess_cfg, model_name=None, local_dir=tokdir)
    return Resolved(arch, weights, "local-dir", folder.name)


def _resolve_hub(repo: str, options: dict) -> Resolved:
    cache_dir = options.get("cache_dir")
    cfg_path = _hub_cached(repo, CONFIG_NAME, cache_dir)
    if cfg_path is None:
        raise NotFoundError(
            f"hf-hub:{repo}: {CONFIG_NAME} is not in the local Hugging Face cache and DIFE never downloads.",
            hint="Download the repo on a connected machine and copy the cache (HF_HOME), or use local-dir:PATH.")
    model_cfg, preprocess_cfg = _split_config(_read_json(cfg_path, "open_clip config"), f"hf-hub:{repo}/{CONFIG_NAME}")
    weights = None
    for fn in WEIGHT_NAMES:
        weights = _hub_cached(repo, fn, cache_dir)
        if weights is not None:
            break
    if weights is None:
        raise NotFoundError(f"hf-hub:{repo}: config is cached but no weight file is ({', '.join(WEIGHT_NAMES)}); DIFE never downloads.")
    arch = _architecture(model_cfg, preprocess_cfg, model_name=None)
    return Resolved(arch, weights, "hf-hub", repo.split("/")[-1])


def _architecture_option(value, where: str) -> dict:
    """``architecture=`` option: a built-in name, a JSON path, or a dict."""
    if isinstance(value, dict):
        model_cfg, pp = _split_config(value, where)
        return _architecture(model_cfg, pp, model_name=value.get("model_name"))
    value = str(value)
    if value.endswith(".json") or os.path.isfile(value):
        model_cfg, pp = _split_config(_read_json(Path(value), "architecture JSON"), value)
        return _architecture(model_cfg, pp, model_name=None)
    name = _builtin_name(value)
    if name is None:
        raise NotFoundError(f"{where}: unknown open_clip architecture {value!r}; give a built-in name or a JSON file. "
                            f"Available: {', '.join(_known_models())}.")
    from open_clip.factory import get_model_config

    return _architecture(get_model_config(name), {}, model_name=name)


def resolve(source: str, options: dict) -> Resolved:
    """Turn a source string (plus options) into an architecture and a weight path."""
    src = str(source)
    if src.startswith(HF_PREFIX):
        return _resolve_hub(src[len(HF_PREFIX):].strip("/"), options)
    if src.startswith(LOCAL_PREFIX):
        return _resolve_folder(Path(src[len(LOCAL_PREFIX):]).expanduser(), label=src)
    p = Path(src).expanduser()
    if p.is_dir():
        return _resolve_folder(p, label=src)
    if p.is_file() and p.suffix.lower() == ".json":
        model_cfg, pp = _split_config(_read_json(p, "architecture JSON"), src)
        arch = _architecture(model_cfg, pp, model_name=None)
        weights = options.get("pretrained")
        if weights is None and not options.get("random_init"):
            raise InvalidInputError(f"{src}: a custom architecture needs weights: pass pretrained=FILE (or random_init=True).")
        if weights is not None and not os.path.isfile(str(weights)):
            raise NotFoundError(f"{src}: pretrained weight file {weights} does not exist.")
        return Resolved(arch, Path(weights) if weights else None, "custom-json", p.stem)
    if p.is_file():
        if "architecture" in options:
            arch = _architecture_option(options["architecture"], src)
        elif (p.parent / CONFIG_NAME).is_file():
            model_cfg, pp = _split_config(_read_json(p.parent / CONFIG_NAME, "open_clip config"), str(p.parent / CONFIG_NAME))
            arch = _architecture(model_cfg, pp, model_name=None)
        else:
            from dife_core.loading import ArchitectureUnknownError

            raise ArchitectureUnknownError(
                f"{src}: a bare weight file does not say its architecture; pass architecture=NAME|JSON "
                f"(e.g. --option architecture=ViT-B-32) or put {CONFIG_NAME} beside it.")
        return Resolved(arch, p, "weight-file", p.stem)
    # NAME or NAME:TAG
    name, sep, tag = src.partition(":")
    tag = tag if sep else options.get("pretrained")
    if _builtin_name(name) is None:
        if os.sep in src or src.endswith(WEIGHT_SUFFIXES + (".json",)):
            raise NotFoundError(f"{src}: no such file or folder.")
        raise NotFoundError(f"unknown open_clip source {src!r}: not a file, folder, hf-hub:/local-dir: name or "
                            f"architecture; architectures available: {', '.join(_known_models())}.")
    return _resolve_named(name, tag, options)


def sniff(source: str) -> bool:
    """True when the source is plainly an open_clip one (cheap; never loads weights)."""
    src = str(source)
    try:
        if src.startswith(LOCAL_PREFIX):
            return True
        if src.startswith(HF_PREFIX):
            return _hub_cached(src[len(HF_PREFIX):].strip("/"), CONFIG_NAME) is not None
        p = Path(src).expanduser()
        if p.is_dir():
            return (p / CONFIG_NAME).is_file()
        if p.is_file():
            if p.suffix.lower() == ".json":
                data = json.loads(p.read_text(encoding="utf-8"))
                d = data.get("model_cfg", data) if isinstance(data, dict) else {}
                return isinstance(d, dict) and "vision_cfg" in d and "text_cfg" in d
            if (p.parent / CONFIG_NAME).is_file():
                return _is_weight_file(p)
            if p.suffix.lower() in SAFETENSORS_SUFFIXES:
                from dife_core.safeload import validate_safetensors

                return any(n.startswith("visual.") for n in validate_safetensors(p).names)
            return False
        name = src.partition(":")[0]
        return bool(name) and _builtin_name(name) is not None
    except Exception:
        return False


# -- weights ----------------------------------------------------------------------

def fit_state_dict(model, state_dict: dict, *, where: str) -> None:
    """Load a (possibly older-layout) open_clip state dict into ``model``, strictly.

    Applies open_clip's own layout fixes (old text-tower key names, scalar vs
    1-d logit scale, positional-embedding resizing) before a strict load, and
    turns a mismatch into an error that names the keys.
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    sd = convert_state_dict(model, dict(state_dict))
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        sd = convert_to_custom_text_state_dict(sd)
    for key in ("logit_scale", "logit_bias"):
        mine = getattr(model, key, None)
        if key in sd and mine is not None and mine.ndim != sd[key].ndim:
            sd[key] = sd[key].reshape(mine.shape)
    if "logit_bias" not in sd and getattr(model, "logit_bias", None) is not None and "logit_scale" in sd:
        import torch

        sd["logit_bias"] = torch.zeros_like(sd["logit_scale"])
    sd.pop("text.transformer.embeddings.position_ids", None)
    try:
        resize_pos_embed(sd, model)
        resize_text_pos_embed(sd, model)
    except Exception as e:
        raise InvalidInputError(f"{where}: positional embeddings do not fit the architecture ({e}).") from e
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append("shape mismatch: " + ", ".join(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3]))
        raise InvalidInputError(f"{where}: weights do not match the architecture: {'; '.join(parts)}.")
    model.load_state_dict(sd, strict=True)


def build_encoder(architecture: dict, *, name: str, tokenizer_dir=None):
    """An OpenClipEncoder with random weights, errors phrased for users."""
    from .encoder import build_custom

    try:
        return build_custom(architecture, name=name, tokenizer_dir=tokenizer_dir)
    except KeyError as e:
        raise InvalidInputError(f"open_clip architecture for {name!r} lacks {e}.") from e
    except (TypeError, ValueError, AssertionError) as e:
        raise InvalidInputError(f"open_clip architecture for {name!r} is invalid: {e}.") from e
    except OSError as e:  # an HF tokenizer/text config that is not cached
        raise NotFoundError(f"open_clip model {name!r} needs files that are not in the local cache ({e}); DIFE never downloads.") from e


def load(source: str, *, trust: bool = False, device: str = "cpu", name: Optional[str] = None, **options):
    """Load an open_clip model as an OpenClipEncoder (see the module docstring for ``source``)."""
    from dife_core.loading import offline_hub
    from dife_core.safeload import load_state_dict

    known = {"pretrained", "architecture", "cache_dir", "random_init", "precision"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInputError(f"openclip loader: unknown options {unknown}; known: {sorted(known)}.")
    with offline_hub():
        res = resolve(source, options)
        enc = build_encoder(res.architecture, name=name or res.default_name)
    if res.weights is not None:
        sd = load_state_dict(res.weights, trust=trust)
        fit_state_dict(enc.model, sd, where=str(res.weights))
    enc.source = str(source)
    enc.source_kind = res.source_kind
    enc.weights_path = str(res.weights) if res.weights else None
    precision = options.get("precision")
    dtype = _dtype(precision) if precision else None
    enc.to(device, dtype)
    enc.invalidate_fingerprint()
    return enc.eval()


def _dtype(precision: str):
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
             "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if precision not in table:
        raise InvalidInputError(f"unknown precision {precision!r}; known: {', '.join(table)}.")
    return table[precision]


def from_manifest(manifest: dict, weights_path, *, trust: bool = False, device: str = "cpu"):
    """Rebuild an OpenClipEncoder from a DIFE checkpoint (safetensors only, no pickle)."""
    from dife_core.loading import offline_hub
    from dife_core.model import Preprocess
    from dife_core.safeload import load_safetensors

    tok = (manifest.get("assets") or {}).get("tokenizer")
    tokenizer_dir = Path(weights_path).parent / tok if tok else None
    with offline_hub():
        enc = build_encoder(manifest["architecture"], name=manifest.get("name", "model"), tokenizer_dir=tokenizer_dir)
    fit_state_dict(enc.model, load_safetensors(weights_path), where=str(weights_path))
    if manifest.get("preprocess"):
        enc.preprocess = Preprocess.from_dict(manifest["preprocess"])
    dtype = manifest.get("dtype")
    enc.to(device, _dtype(dtype) if dtype else None)
    return enc.eval()
