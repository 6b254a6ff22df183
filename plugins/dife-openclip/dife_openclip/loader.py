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
    #: the file the architecture came from (None: open_clip's own built-in config, trusted)
    config_file: Optional[str] = None
    #: the folder that file's references must stay inside
    base: Optional[Path] = None


# -- small helpers -------------------------------------------------------------

def _is_weight_file(p: Path) -> bool:
    return p.suffix.lower() in WEIGHT_SUFFIXES


def _read_json(path: Path, what: str) -> dict:
    from dife_core.untrusted import load_json

    return load_json(path, what)


def _split_config(data: dict, where: str) -> tuple:
    """(model_cfg, preprocess_cfg) from an open_clip_config.json or a bare model config."""
    from dife_core.untrusted import check_preprocess, refuse_code_and_network

    refuse_code_and_network(data, where)
    model_cfg = data.get("model_cfg", data)
    preprocess_cfg = data.get("preprocess_cfg", {}) if "model_cfg" in data else {}
    if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg or "text_cfg" not in model_cfg:
        raise InvalidInputError(
            f"{where}: not an open_clip architecture config (needs embed_dim, vision_cfg and text_cfg, "
            f"optionally wrapped in model_cfg); keys found: {sorted(map(str, data))[:10]}.")
    if preprocess_cfg is not None and not isinstance(preprocess_cfg, dict):
        raise InvalidInputError(f"{where}: key preprocess_cfg must be an object.")
    check_preprocess(preprocess_cfg or {}, where, path="preprocess_cfg")
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
    if isinstance(text_cfg, dict) and text_cfg.get("hf_tokenizer_name"):
        return {"kind": "hf", "name": str(local_dir) if local_dir is not None else text_cfg["hf_tokenizer_name"]}
    if model_name and "siglip" in model_name.lower():
        variant = "gemma" if "siglip2" in model_name.lower() else "mc4" if "i18n" in model_name.lower() else "c4-en"
        return {"kind": "siglip", "variant": variant}
    return {"kind": "simple"}


def _architecture(model_cfg: dict, preprocess_cfg: dict, *, model_name: Optional[str],
                  local_dir: Optional[Path] = None) -> dict:
    from dife_core.untrusted import check_preprocess

    arch = copy.deepcopy(model_cfg)
    check_preprocess(arch.get("preprocess") or {}, "open_clip architecture", path="preprocess")
    arch["preprocess"] = {**_preprocess_overrides(arch.get("preprocess") or {}),
                          **_preprocess_overrides(preprocess_cfg)}
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
        raise NotFoundError(
            f"{label}: {folder} has no {CONFIG_NAME}; an open_clip folder needs its config beside the weights.")
    model_cfg, preprocess_cfg = _split_config(_read_json(cfg_path, "open_clip config"), str(cfg_path))
    weights = _first_weights_in(folder)
    if weights is None:
        raise NotFoundError(f"{label}: no weight file in {folder}; "
                            f"looked for {', '.join(WEIGHT_NAMES)} or any *{'/*'.join(WEIGHT_SUFFIXES)}.")
    from dife_core.untrusted import containing_root, inside

    for f, key in ((cfg_path, CONFIG_NAME), (weights, weights.name)):  # symlinks may not lead out of the folder
        inside(containing_root(folder), f, str(folder), key)
    tokdir = (folder if model_cfg.get("text_cfg", {}).get("hf_tokenizer_name") and (folder / "tokenizer.json").is_file()
              else None)
    arch = _architecture(model_cfg, preprocess_cfg, model_name=None, local_dir=tokdir)
    return Resolved(arch, weights, "local-dir", folder.name, config_file=str(cfg_path), base=folder)


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
        raise NotFoundError(f"hf-hub:{repo}: config is cached but no weight file is ({', '.join(WEIGHT_NAMES)}); "
                            f"DIFE never downloads.")
    tokdir = cfg_path.parent if model_cfg.get("text_cfg", {}).get("hf_tokenizer_name") and \
        _hub_cached(repo, "tokenizer.json", cache_dir) is not None else None
    arch = _architecture(model_cfg, preprocess_cfg, model_name=None, local_dir=tokdir)
    return Resolved(arch, weights, "hf-hub", repo.split("/")[-1], config_file=f"hf-hub:{repo}/{CONFIG_NAME}",
                    base=cfg_path.parent)


def _architecture_option(value, where: str) -> tuple:
    """``architecture=`` option: a built-in name, a JSON path, or a dict.
    Returns (architecture, the file it came from or None when built in, base folder)."""
    if isinstance(value, dict):  # from a spec: as untrusted as a file
        model_cfg, pp = _split_config(value, f"{where} (architecture option)")
        name = value.get("model_name")
        return _architecture(model_cfg, pp, model_name=name if isinstance(name, str) else None), \
            f"{where} (architecture option)", None
    value = str(value)
    if value.endswith(".json") or os.path.isfile(value):
        model_cfg, pp = _split_config(_read_json(Path(value), "architecture JSON"), value)
        return _architecture(model_cfg, pp, model_name=None), value, Path(value).parent
    name = _builtin_name(value)
    if name is None:
        raise NotFoundError(f"{where}: unknown open_clip architecture {value!r}; give a built-in name or a JSON file. "
                            f"Available: {', '.join(_known_models())}.")
    from open_clip.factory import get_model_config

    return _architecture(get_model_config(name), {}, model_name=name), None, None


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
            raise InvalidInputError(
                f"{src}: a custom architecture needs weights: pass pretrained=FILE (or random_init=True).")
        if weights is not None and not os.path.isfile(str(weights)):
            raise NotFoundError(f"{src}: pretrained weight file {weights} does not exist.")
        return Resolved(arch, Path(weights) if weights else None, "custom-json", p.stem, config_file=src, base=p.parent)
    if p.is_file():
        cfg_file, base = None, None
        if "architecture" in options:
            arch, cfg_file, base = _architecture_option(options["architecture"], src)
        elif (p.parent / CONFIG_NAME).is_file():
            cfg_file, base = str(p.parent / CONFIG_NAME), p.parent
            model_cfg, pp = _split_config(_read_json(p.parent / CONFIG_NAME, "open_clip config"), cfg_file)
            arch = _architecture(model_cfg, pp, model_name=None)
        else:
            from dife_core.loading import ArchitectureUnknownError

            raise ArchitectureUnknownError(
                f"{src}: a bare weight file does not say its architecture; pass architecture=NAME|JSON "
                f"(e.g. --option architecture=ViT-B-32) or put {CONFIG_NAME} beside it.")
        return Resolved(arch, p, "weight-file", p.stem, config_file=cfg_file, base=base)
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
                data = _read_json(p, "architecture JSON")
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


def describe(source: str, keys=None) -> Optional[dict]:
    """For ``dife inspect``: the format of an open_clip source and how its keys
    split into branches; None when ``source`` is not open_clip's (by name or,
    for a bare weight file, by its tensor names)."""
    src = str(source)
    p = Path(src).expanduser()
    layout = {"visual_prefixes": ("visual.",), "exclude_suffixes": ("logit_scale", "logit_bias")}
    try:
        if src.startswith(LOCAL_PREFIX) or (p.is_dir() and (p / CONFIG_NAME).is_file()):
            return {"format": "open_clip-folder", **layout}
        if src.startswith(HF_PREFIX) and sniff(src):
            return {"format": "open_clip-hub", **layout}
        if p.is_file() and p.suffix.lower() == ".json" and sniff(src):
            return {"format": "architecture-json", **layout}
    except OSError:
        return None
    if keys is not None and any(str(k).startswith("visual.") for k in keys):
        return {"format": None, **layout}
    return None


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
            parts.append("shape mismatch: "
                         + ", ".join(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3]))
        raise InvalidInputError(f"{where}: weights do not match the architecture: {'; '.join(parts)}.")
    model.load_state_dict(sd, strict=True)


def build_encoder(architecture: dict, *, name: str, tokenizer_dir=None, init_weights: bool = True):
    """An OpenClipEncoder with random weights (uninitialised with
    ``init_weights=False``: only when ``fit_state_dict`` follows), errors
    phrased for users."""
    from dife_core.untrusted import foreign_call

    from .encoder import build_custom

    try:
        with foreign_call(f"open_clip model {name!r}", "building the tokenizer"):
            enc = build_custom(architecture, name=name, tokenizer_dir=tokenizer_dir, init_weights=init_weights)
            enc.tokenize(["a photo of a cat."])  # a tokenizer that panics is refused here, not mid-audit
        return enc
    except KeyError as e:
        raise InvalidInputError(f"open_clip architecture for {name!r} lacks {e}.") from e
    except (TypeError, ValueError, AssertionError) as e:
        raise InvalidInputError(f"open_clip architecture for {name!r} is invalid: {e}.") from e
    except OSError as e:  # an HF tokenizer/text config that is not cached
        raise NotFoundError(
            f"open_clip model {name!r} needs files that are not in the local cache ({e}); DIFE never downloads.") from e


def gate(architecture: dict, where: str, *, base=None, tokenizer_dir=None) -> None:
    """The untrusted-config gate for an architecture read from a file, plus
    its tokenizer folder's configs (no auto_map / trust_remote_code there)."""
    from dife_core.untrusted import check_openclip_architecture

    check_openclip_architecture(architecture, where, base=base, tokenizer_dir=tokenizer_dir)
    spec = architecture.get("tokenizer") or {}
    folder = tokenizer_dir or (Path(spec["name"]) if spec.get("kind") == "hf" and spec.get("name") else None)
    if folder is not None:
        check_tokenizer_folder(Path(folder), where)


def check_tokenizer_folder(folder: Path, where: str) -> None:
    """Tokenizer configs beside a checkpoint may not ask for code or the network."""
    from dife_core.untrusted import load_json, refuse_code_and_network

    for n in ("tokenizer_config.json", "special_tokens_map.json", "config.json"):
        f = folder / n
        if f.is_file():
            refuse_code_and_network(load_json(f, n), str(f))


def _weights_elements(path: Path, sd: Optional[dict]) -> int:
    if sd is not None:
        return sum(v.numel() for v in sd.values())
    from dife_core.safeload import validate_safetensors

    return validate_safetensors(path).numel()


def check_size(architecture: dict, where: str, *, weights_elements: Optional[int]) -> None:
    """Refuse an architecture larger than its weights before allocating it (built on ``meta``)."""
    from dife_core.untrusted import check_model_size

    from .encoder import build_model

    check_model_size(lambda: build_model(architecture), where, weights_elements=weights_elements)


def _is_safetensors(path: Path) -> bool:
    from dife_core.safeload import weight_format

    return weight_format(path) == "safetensors"


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
        where = res.config_file or f"open_clip architecture {res.architecture.get('model_name', source)!r}"
        if res.config_file is not None:
            gate(res.architecture, res.config_file, base=res.base)
        sd = None
        if res.weights is not None:
            # safetensors: the header says how big the weights are; a pickle is read first (its size is the file's)
            sd = None if _is_safetensors(res.weights) else load_state_dict(res.weights, trust=trust)
            check_size(res.architecture, where, weights_elements=_weights_elements(res.weights, sd))
            if sd is None:
                sd = load_state_dict(res.weights, trust=trust)
        else:
            check_size(res.architecture, where, weights_elements=None)
        enc = build_encoder(res.architecture, name=name or res.default_name, init_weights=sd is None)
    if sd is not None:
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
    from dife_core.untrusted import asset_path

    folder = Path(weights_path).parent
    where = str(folder / "dife.json")
    tok = (manifest.get("assets") or {}).get("tokenizer")
    tokenizer_dir = asset_path(folder, tok, where, "assets.tokenizer") if tok else None
    arch = manifest["architecture"]
    gate(arch, where, base=folder, tokenizer_dir=tokenizer_dir)
    check_size(arch, where, weights_elements=_weights_elements(Path(weights_path), None))
    with offline_hub():
        enc = build_encoder(arch, name=manifest.get("name", "model"), tokenizer_dir=tokenizer_dir,
                            init_weights=False)
    fit_state_dict(enc.model, load_safetensors(weights_path), where=str(weights_path))
    if manifest.get("preprocess"):
        enc.preprocess = Preprocess.from_dict(manifest["preprocess"])
    dtype = manifest.get("dtype")
    enc.to(device, _dtype(dtype) if dtype else None)
    return enc.eval()
