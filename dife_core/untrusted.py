"""The untrusted-config gate: every architecture, tokenizer and preprocessing
field read from a file is checked here *before* anything is built or allocated.

Three kinds of refusal:

* a key that could load code or reach the network (``trust_remote_code``,
  ``auto_map``, a URL, a hub repo name where a local file is expected) ->
  :class:`~dife_core.errors.UnsafeCheckpointError` (exit 3);
* a key outside the allow-list, a value of the wrong type, a number outside
  its bound -> :class:`~dife_core.errors.InvalidInputError` (exit 2);
* a file reference that leaves the checkpoint folder (``..``, an absolute
  path, a symlink pointing outside) -> InvalidInputError.

Every message names the file and the key path (``text_cfg.tokenizer_kwargs``).

Bounds are the module constant :data:`DEFAULT_LIMITS` (documented in
docs/security.md). They can be raised for one process only through
:func:`set_limits` -- the CLI's ``--limit KEY=VALUE`` -- never by a file.
Nothing here imports torch at module import.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from pathlib import Path
from typing import Optional

from .errors import DifeError, InvalidInputError, NotFoundError, UnsafeCheckpointError

#: Bounds on what a file may ask DIFE to build or read. Generous for every
#: released CLIP/SigLIP (ViT-bigG: 48 layers, width 1664; SigLIP so400m: 27
#: layers, width 1152, context 64), small enough that a refusal is instant.
DEFAULT_LIMITS = {
    "layers": 256,              # transformer blocks per tower; ResNet blocks per stage
    "width": 16_384,            # hidden/embedding width, embed_dim, projection_dim
    "intermediate_size": 131_072,  # MLP hidden width
    "heads": 512,               # attention heads
    "head_width": 4_096,        # width per attention head
    "mlp_ratio": 64,            # MLP width / width
    "context_length": 16_384,   # text positions
    "vocab_size": 2_000_000,    # token embeddings
    "image_size": 4_096,        # pixels per side
    "patch_size": 1_024,        # pixels per patch side
    "parameters": 20_000_000_000,  # elements of a model built without weights (random_init)
    "model_weights_ratio": 2,   # a model may hold at most this x the weights' elements (+ 2**20)
    "tensors": 200_000,         # tensors in one weight file
    "tensor_name_chars": 1_024,  # characters in one tensor name
    "tensor_dims": 16,          # dimensions of one tensor
    "header_bytes": 100_000_000,  # safetensors JSON header
    "json_bytes": 16_000_000,   # one config / manifest JSON file
    "json_depth": 64,           # nesting in a config JSON
    "int_digits": 64,           # digits of one JSON integer (transformers writes 1e30 as 31 digits)
    "archive_ratio": 16,        # TorchScript zip: uncompressed member bytes / archive bytes (+ 1 MiB)
}

#: The bounds in force now, one process-wide dict. Other gates (specs, attack
#: cards) add their own bounds with ``LIMITS.setdefault(name, default)``.
LIMITS: dict = dict(DEFAULT_LIMITS)
_before_override: dict = {}


def limit(name: str):
    """The bound ``name`` in force now (default or overridden)."""
    return LIMITS[name]


def limits() -> dict:
    """Every bound in force now (a copy)."""
    return dict(LIMITS)


def set_limits(**overrides) -> None:
    """Raise (or lower) bounds for this process: ``set_limits(layers=512)``.

    Only the person running DIFE can call this (CLI ``--limit KEY=VALUE``);
    no file read by DIFE reaches it. Values must be positive integers
    (strings such as ``"1_000"`` are parsed).
    """
    checked = {}
    for k, v in overrides.items():
        if k not in LIMITS:
            raise InvalidInputError(f"unknown limit {k!r}; known: {', '.join(sorted(LIMITS))}.")
        if isinstance(v, str):
            v = parse_limit_value(k, v)
        if type(v) is not int or v <= 0:
            raise InvalidInputError(f"limit {k} must be a positive integer, got {v!r}.")
        checked[k] = v
    for k, v in checked.items():
        _before_override.setdefault(k, LIMITS[k])
        LIMITS[k] = v


def reset_limits() -> None:
    """Undo every :func:`set_limits`."""
    LIMITS.update(_before_override)
    _before_override.clear()


def parse_limit_value(key: str, value: str) -> int:
    text = str(value).replace("_", "")
    if not re.fullmatch(r"[0-9]{1,20}", text) or int(text) <= 0:
        raise InvalidInputError(f"--limit {key}={value}: the value must be a positive integer.")
    return int(text)


def parse_limit(item: str) -> tuple:
    """``"layers=512"`` -> ``("layers", 512)`` (for the CLI's ``--limit``)."""
    key, sep, value = str(item).partition("=")
    key = key.strip().replace("-", "_")
    if not sep or key not in LIMITS:
        raise InvalidInputError(f"--limit expects KEY=VALUE with KEY one of {', '.join(sorted(LIMITS))}; got {item!r}.")
    return key, parse_limit_value(key, value.strip())


def _hint(name: str) -> str:
    return f"(limit {name}={limit(name)}; raise it with --limit {name}=N if you trust this file's size)"


# ---------------------------------------------------------------------------
# JSON files
# ---------------------------------------------------------------------------

def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > limit("int_digits"):
        raise ValueError(f"integer with {len(text)} digits (limit int_digits={limit('int_digits')})")
    return int(text)


def _no_constants(name: str):
    raise ValueError(f"non-finite number {name} (JSON has no NaN or Infinity)")


def parse_json(text, where: str, what: str = "JSON"):
    """JSON from an untrusted file: bounded integers, no NaN/Infinity, bounded depth."""
    try:
        data = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidInputError(f"{where}: {what} is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise InvalidInputError(f"{where}: {what} is not valid JSON ({str(e)[:200]}).") from None
    _check_depth(data, where)
    return data


def load_json(path, what: str = "JSON file", *, where: Optional[str] = None) -> dict:
    """A JSON object from an untrusted file (size, integers, depth bounded)."""
    path = Path(path)
    where = where or str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NotFoundError(f"{where}: {what} not found.") from None
    except OSError as e:
        raise InvalidInputError(f"{where}: cannot read {what} ({e}).") from None
    if size > limit("json_bytes"):
        raise InvalidInputError(f"{where}: {what} is {size} bytes, over the limit {_hint('json_bytes')}.")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InvalidInputError(f"{where}: cannot read {what} ({e}).") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{where}: {what} is not UTF-8 ({e}).") from None
    data = parse_json(text, where, what)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: {what} must be a JSON object, got {type(data).__name__}.")
    return data


def _check_depth(data, where: str) -> None:
    stack = [(data, 0)]
    cap = limit("json_depth")
    while stack:
        obj, d = stack.pop()
        if d > cap:
            raise InvalidInputError(f"{where}: JSON nested deeper than {cap} levels {_hint('json_depth')}.")
        if isinstance(obj, dict):
            stack.extend((v, d + 1) for v in obj.values())
        elif isinstance(obj, list):
            stack.extend((v, d + 1) for v in obj)


# ---------------------------------------------------------------------------
# code and network
# ---------------------------------------------------------------------------

#: keys that make transformers / open_clip import code named by the file
CODE_KEYS = ("trust_remote_code", "auto_map", "custom_pipelines")
_URL_RE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://")
_HUB_RE = re.compile(r"^(hf-hub:|hf://)?[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def refuse_code_and_network(obj, where: str, path: str = "") -> None:
    """Refuse (exit 3) any ``trust_remote_code``/``auto_map`` key and any URL
    string anywhere in ``obj``."""
    stack = [(obj, path)]
    while stack:
        o, p = stack.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                kp = _join(p, k)
                if k in CODE_KEYS and v not in (None, False, {}, [], ""):
                    raise UnsafeCheckpointError(
                        f"{where}: key {kp} asks to load code named by the file; "
                        f"refused (nothing was imported or run).")
                stack.append((v, kp))
        elif isinstance(o, list):
            stack.extend((v, f"{p}[{i}]") for i, v in enumerate(o))
        elif isinstance(o, str) and _URL_RE.match(o):
            raise UnsafeCheckpointError(
                f"{where}: key {p or '(top level)'} is a URL ({o[:80]!r}); DIFE never reaches the network for a file.")


def local_only(value, where: str, key: str, *, base: Optional[Path]) -> Path:
    """A local folder named by a config key, inside ``base``; a hub name or URL is refused (exit 3)."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{where}: key {key} must be a non-empty string.")
    p = Path(value).expanduser()
    if base is not None and not p.is_absolute():
        p = Path(base) / p
    if p.is_dir():
        if base is not None:
            return inside(base, p, where, key)
        return p
    if _URL_RE.match(value) or _HUB_RE.match(value):
        raise UnsafeCheckpointError(
            f"{where}: key {key} names {value!r}, a model hub name, not a local folder; DIFE does not fetch or "
            f"load hub files a checkpoint names (put the files beside the weights instead).")
    raise NotFoundError(f"{where}: key {key} names {value!r}, which is not a folder.")


# ---------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------

def inside(base, target, where: str, key: str) -> Path:
    """``target`` (resolved, symlinks followed) if it lies inside ``base``; else refuse."""
    root = Path(os.path.realpath(base))
    real = Path(os.path.realpath(target))
    if real != root and root not in real.parents:
        raise InvalidInputError(
            f"{where}: key {key} refers to {str(target)!r}, which resolves outside the checkpoint folder "
            f"({real}); file references must stay inside it.")
    return real


def containing_root(folder) -> Path:
    """The folder whose inside a model folder's files must resolve to: the
    folder itself, or, for a Hugging Face cache snapshot
    (``models--org--name/snapshots/<rev>``, files symlinked to ``../../blobs``),
    the cached repo's folder."""
    folder = Path(folder)
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent
    return folder


def plain_name(value, where: str, key: str) -> str:
    """A file or folder name inside the checkpoint: no separators, no '..', not absolute."""
    if (not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value
            or "\x00" in value or Path(value).is_absolute() or Path(value).name != value):
        raise InvalidInputError(
            f"{where}: key {key} must be a plain file or folder name inside the checkpoint, got {value!r}.")
    return value


def asset_path(base, value, where: str, key: str) -> Path:
    """``base / value`` for a manifest asset, refused if it leaves ``base``."""
    plain_name(value, where, key)
    return inside(base, Path(base) / value, where, key)


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------

def _num(d: dict, key: str, where: str, path: str, *, bound: Optional[str] = None, lo=1, integer=True,
         optional=True, cap=None):
    if key not in d or (optional and d[key] is None):
        return None
    v = d[key]
    kp = _join(path, key)
    if integer:
        if type(v) is not int:
            raise InvalidInputError(f"{where}: key {kp} must be an integer, got {_show(v)}.")
    else:
        if type(v) not in (int, float) or not math.isfinite(v):
            raise InvalidInputError(f"{where}: key {kp} must be a finite number, got {_show(v)}.")
    if lo is not None and v < lo:
        raise InvalidInputError(f"{where}: key {kp} must be at least {lo}, got {v}.")
    top = limit(bound) if bound else cap
    if top is not None and v > top:
        raise InvalidInputError(f"{where}: key {kp} = {v} exceeds the bound {_hint(bound) if bound else top}.")
    return v


def _show(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _obj(d, where: str, path: str) -> dict:
    if not isinstance(d, dict):
        raise InvalidInputError(f"{where}: key {path} must be an object, got {type(d).__name__}.")
    return d


def _allowed(d: dict, allowed, where: str, path: str) -> None:
    extra = sorted(str(k) for k in d if k not in allowed)
    if extra:
        raise InvalidInputError(f"{where}: unknown key {_join(path, extra[0])} "
                                f"(allowed under {path or 'the top level'}: {', '.join(sorted(allowed))}).")


def _type(d: dict, key: str, types, where: str, path: str, *, maxlen: int = 256) -> None:
    if key in d and d[key] is not None:
        v = d[key]
        if not isinstance(v, types) or (isinstance(v, bool)
                                        and bool not in (types if isinstance(types, tuple) else (types,))):
            raise InvalidInputError(f"{where}: key {_join(path, key)} has the wrong type ({_show(v)}).")
        if isinstance(v, str) and len(v) > maxlen:
            raise InvalidInputError(f"{where}: key {_join(path, key)} is longer than {maxlen} characters.")


def _scalar_kwargs(d: dict, key: str, where: str, path: str) -> None:
    """``act_kwargs``/``norm_kwargs``: a few scalar constructor arguments."""
    if key not in d or d[key] is None:
        return
    kw = _obj(d[key], where, _join(path, key))
    if len(kw) > 16:
        raise InvalidInputError(f"{where}: key {_join(path, key)} has more than 16 entries.")
    for k, v in kw.items():
        if not re.fullmatch(r"[A-Za-z_]\w{0,63}", str(k)) or not (
                v is None or isinstance(v, bool) or (isinstance(v, (int, float)) and math.isfinite(v))
                or (isinstance(v, str) and len(v) <= 64)):
            raise InvalidInputError(f"{where}: key {_join(_join(path, key), k)} must be a short scalar.")


# ---------------------------------------------------------------------------
# open_clip architectures
# ---------------------------------------------------------------------------

OPENCLIP_TOP = ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text", "init_logit_scale",
                "init_logit_bias", "nonscalar_logit_scale", "multimodal_cfg", "cast_dtype",
                # DIFE's own keys in a manifest architecture
                "model_name", "preprocess", "tokenizer")
OPENCLIP_VISION = ("layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "ls_init_value",
                   "patch_dropout", "attentional_pool", "attn_pooler_queries", "attn_pooler_heads", "no_ln_pre",
                   "pos_embed_type", "final_ln_after_pool", "pool_type", "output_tokens", "act_kwargs",
                   "norm_kwargs", "block_type", "qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner",
                   "scale_attn", "scale_fc", "timm_model_name", "timm_model_pretrained", "timm_pool", "timm_proj",
                   "timm_proj_bias", "timm_drop", "timm_drop_path")
OPENCLIP_TEXT = ("context_length", "vocab_size", "hf_tokenizer_name", "tokenizer_mode", "tokenizer_kwargs", "width",
                 "heads", "layers", "mlp_ratio", "ls_init_value", "embed_cls", "pad_id", "eos_id", "no_causal_mask",
                 "final_ln_after_pool", "pool_type", "proj_bias", "proj_type", "output_tokens", "act_kwargs",
                 "norm_kwargs", "block_type", "qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner",
                 "scale_attn", "scale_fc", "hf_model_name", "hf_model_pretrained", "hf_proj_type", "hf_pooler_type")
#: tokenizer keyword arguments a file may set; anything else could reach
#: AutoTokenizer.from_pretrained (revision, cache_dir, trust_remote_code ...)
TOKENIZER_KWARGS = ("clean", "strip_sep_token", "language", "additional_special_tokens", "reduction_mask")
TOKENIZER_KINDS = ("simple", "hf", "siglip")
_BOOL_KEYS = ("quick_gelu", "custom_text", "nonscalar_logit_scale")
_VISION_BOOLS = ("attentional_pool", "no_ln_pre", "final_ln_after_pool", "output_tokens", "qk_norm",
                 "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc",
                 "timm_model_pretrained", "timm_proj_bias")
_TEXT_BOOLS = ("embed_cls", "no_causal_mask", "final_ln_after_pool", "proj_bias", "output_tokens", "qk_norm",
               "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc",
               "hf_model_pretrained")


def check_openclip_architecture(arch, where: str, *, base: Optional[Path] = None,
                                tokenizer_dir: Optional[Path] = None) -> dict:
    """Gate an open_clip architecture read from a file (model config, manifest
    architecture, custom JSON). ``base``: the folder its file references must
    stay inside; ``tokenizer_dir``: local tokenizer files that replace any
    tokenizer name in the config."""
    arch = _obj(arch, where, "architecture")
    refuse_code_and_network(arch, where)
    _allowed(arch, OPENCLIP_TOP, where, "")
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if arch.get(k) is None]
    if missing:
        raise InvalidInputError(f"{where}: the open_clip architecture lacks {', '.join(missing)}.")
    _num(arch, "embed_dim", where, "", bound="width")
    for k in _BOOL_KEYS:
        _type(arch, k, bool, where, "")
    for k in ("init_logit_scale", "init_logit_bias"):
        _num(arch, k, where, "", integer=False, lo=-1e4, cap=1e4)
    _type(arch, "model_name", str, where, "")
    _type(arch, "cast_dtype", str, where, "")
    if arch.get("multimodal_cfg"):
        raise InvalidInputError(f"{where}: key multimodal_cfg: CoCa captioners are not dual encoders; not supported.")
    v = _obj(arch.get("vision_cfg"), where, "vision_cfg")
    t = _obj(arch.get("text_cfg"), where, "text_cfg")
    _check_vision(v, where)
    _check_text(t, where, base=base, tokenizer_dir=tokenizer_dir)
    if arch.get("preprocess") is not None:
        check_preprocess(arch["preprocess"], where, path="preprocess")
    if arch.get("tokenizer") is not None:
        check_tokenizer_spec(arch["tokenizer"], where, base=base, tokenizer_dir=tokenizer_dir)
    return arch


def _check_vision(v: dict, where: str) -> None:
    p = "vision_cfg"
    _allowed(v, OPENCLIP_VISION, where, p)
    layers = v.get("layers")
    if isinstance(layers, list):  # ResNet: blocks per stage
        if not 1 <= len(layers) <= 8:
            raise InvalidInputError(f"{where}: key {p}.layers must list 1-8 stage depths, got {len(layers)}.")
        for i, n in enumerate(layers):
            _num({"x": n}, "x", where, f"{p}.layers[{i}]", bound="layers")
    else:
        _num(v, "layers", where, p, bound="layers")
    _num(v, "width", where, p, bound="width")
    _num(v, "head_width", where, p, bound="head_width")
    _num(v, "mlp_ratio", where, p, integer=False, lo=0, cap=limit("mlp_ratio"))
    _num(v, "attn_pooler_queries", where, p, bound="context_length")
    _num(v, "attn_pooler_heads", where, p, bound="heads")
    _num(v, "ls_init_value", where, p, integer=False, lo=None, cap=1e4)
    _num(v, "patch_dropout", where, p, integer=False, lo=0, cap=1)
    _num(v, "timm_drop", where, p, integer=False, lo=0, cap=1)
    _num(v, "timm_drop_path", where, p, integer=False, lo=0, cap=1)
    for k in _VISION_BOOLS:
        _type(v, k, bool, where, p)
    for k in ("pos_embed_type", "pool_type", "block_type", "timm_pool", "timm_proj"):
        _type(v, k, str, where, p, maxlen=64)
    for k in ("act_kwargs", "norm_kwargs"):
        _scalar_kwargs(v, k, where, p)
    sizes = {}
    for k in ("image_size", "patch_size"):
        val = v.get(k)
        vals = val if isinstance(val, list) else [val] if val is not None else []
        if isinstance(val, list) and len(val) != 2:
            raise InvalidInputError(f"{where}: key {p}.{k} must be an integer or a pair, got {_show(val)}.")
        for i, x in enumerate(vals):
            _num({"x": x}, "x", where, f"{p}.{k}" + (f"[{i}]" if isinstance(val, list) else ""), bound=k)
        sizes[k] = max(vals) if vals else None
    if sizes["image_size"] and sizes["patch_size"] and sizes["patch_size"] > sizes["image_size"]:
        raise InvalidInputError(f"{where}: key {p}.patch_size is larger than {p}.image_size.")
    name = v.get("timm_model_name")
    if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", name)):
        # timm resolves "hf-hub:org/repo" names by downloading their config
        raise UnsafeCheckpointError(f"{where}: key {p}.timm_model_name {name!r} is not a plain timm architecture "
                                    f"name (hub names are fetched); refused.")


def _check_text(t: dict, where: str, *, base, tokenizer_dir) -> None:
    p = "text_cfg"
    _allowed(t, OPENCLIP_TEXT, where, p)
    _num(t, "context_length", where, p, bound="context_length")
    _num(t, "vocab_size", where, p, bound="vocab_size")
    _num(t, "width", where, p, bound="width")
    _num(t, "heads", where, p, bound="heads")
    _num(t, "layers", where, p, bound="layers")
    _num(t, "mlp_ratio", where, p, integer=False, lo=0, cap=limit("mlp_ratio"))
    _num(t, "ls_init_value", where, p, integer=False, lo=None, cap=1e4)
    for k in ("pad_id", "eos_id"):
        _num(t, k, where, p, lo=0, bound="vocab_size")
    for k in _TEXT_BOOLS:
        _type(t, k, bool, where, p)
    for k in ("pool_type", "proj_type", "block_type", "tokenizer_mode", "hf_proj_type", "hf_pooler_type"):
        _type(t, k, str, where, p, maxlen=64)
    for k in ("act_kwargs", "norm_kwargs"):
        _scalar_kwargs(t, k, where, p)
    if t.get("width") and t.get("heads") and t["width"] % t["heads"]:
        raise InvalidInputError(f"{where}: key {p}.width ({t['width']}) is not a multiple of {p}.heads ({t['heads']}).")
    check_tokenizer_kwargs(t.get("tokenizer_kwargs"), where, f"{p}.tokenizer_kwargs")
    if t.get("hf_model_name") is not None:
        # open_clip builds the text tower through AutoConfig/AutoModel from this name
        folder = local_only(t["hf_model_name"], where, f"{p}.hf_model_name", base=base)
        if (folder / "config.json").is_file():
            check_hf_config(load_json(folder / "config.json", "text tower config"), str(folder / "config.json"))
    if t.get("hf_tokenizer_name") is not None and tokenizer_dir is None:
        local_only(t["hf_tokenizer_name"], where, f"{p}.hf_tokenizer_name", base=base)


def check_tokenizer_kwargs(kw, where: str, path: str) -> dict:
    """Tokenizer keyword arguments from a file: allow-listed scalars only."""
    if kw is None:
        return {}
    kw = _obj(kw, where, path)
    for k, v in kw.items():
        kp = _join(path, k)
        if k not in TOKENIZER_KWARGS:
            raise UnsafeCheckpointError(
                f"{where}: key {kp} is not an allowed tokenizer argument (allowed: {', '.join(TOKENIZER_KWARGS)}); "
                f"tokenizer arguments reach Hugging Face loaders, so unknown ones are refused.")
        if k == "additional_special_tokens":
            if not isinstance(v, list) or len(v) > 1024 or not all(isinstance(s, str) and len(s) <= 64 for s in v):
                raise InvalidInputError(f"{where}: key {kp} must be a list of at most 1024 short strings.")
        elif k == "strip_sep_token":
            _type(kw, k, bool, where, path)
        else:
            _type(kw, k, str, where, path, maxlen=64)
    return dict(kw)


def check_tokenizer_spec(spec, where: str, *, base: Optional[Path] = None,
                         tokenizer_dir: Optional[Path] = None) -> dict:
    """A DIFE tokenizer spec (``{"kind": ...}``): only kinds that load from local files."""
    path = "tokenizer"
    spec = _obj(spec, where, path)
    _allowed(spec, ("kind", "name", "variant"), where, path)
    kind = spec.get("kind")
    if kind not in TOKENIZER_KINDS and kind is not None:
        raise InvalidInputError(f"{where}: key {path}.kind {kind!r} is unknown (known: {', '.join(TOKENIZER_KINDS)}).")
    if kind == "siglip" and tokenizer_dir is None:
        raise UnsafeCheckpointError(
            f"{where}: key {path}.kind 'siglip' loads its vocabulary from the network (fsspec download); refused. "
            f"A SigLIP checkpoint must carry its tokenizer files (a 'tokenizer' asset folder).")
    if kind == "hf" and tokenizer_dir is None:
        local_only(spec.get("name"), where, f"{path}.name", base=base)
    _type(spec, "variant", str, where, path, maxlen=32)
    return spec


# ---------------------------------------------------------------------------
# preprocessing
# ---------------------------------------------------------------------------

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
RESIZE_MODES = ("shortest", "squash", "longest")
PREPROCESS_KEYS = ("image_size", "size", "mode", "mean", "std", "interpolation", "resize_mode", "fill_color")


def _triple(v, where: str, kp: str, *, positive: bool) -> list:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v] * 3
    if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(
            type(x) in (int, float) and math.isfinite(x) for x in v):
        raise InvalidInputError(f"{where}: key {kp} must be three finite numbers, got {_show(v)}.")
    if positive and not all(x > 0 for x in v):
        raise InvalidInputError(f"{where}: key {kp} must be positive (a zero or negative std divides pixels by "
                                f"zero and makes every feature meaningless), got {_show(list(v))}.")
    return list(v)


def check_preprocess(pp, where: str, *, path: str = "preprocess") -> dict:
    """open_clip / DIFE preprocessing settings from a file."""
    pp = _obj(pp, where, path)
    _allowed(pp, PREPROCESS_KEYS, where, path)
    if pp.get("mean") is not None:
        _triple(pp["mean"], where, f"{path}.mean", positive=False)
    if pp.get("std") is not None:
        _triple(pp["std"], where, f"{path}.std", positive=True)
    for k, known in (("interpolation", INTERPOLATIONS), ("resize_mode", RESIZE_MODES)):
        if pp.get(k) is not None and (not isinstance(pp[k], str) or len(pp[k]) > 32):
            raise InvalidInputError(f"{where}: key {path}.{k} must be one of {', '.join(known)}, got {_show(pp[k])}.")
    _type(pp, "mode", str, where, path, maxlen=16)
    _num(pp, "image_size", where, path, bound="image_size")
    if pp.get("size") is not None:
        s = pp["size"]
        for x in (s if isinstance(s, list) else [s]):
            _num({"x": x}, "x", where, f"{path}.size", bound="image_size")
    if pp.get("fill_color") is not None and not (type(pp["fill_color"]) in (int, float)
                                                 and math.isfinite(pp["fill_color"])):
        raise InvalidInputError(f"{where}: key {path}.fill_color must be a finite number.")
    return pp


def check_hf_preprocessor(pp, where: str) -> dict:
    """A Hugging Face ``preprocessor_config.json``: types and bounds of what DIFE reads."""
    pp = _obj(pp, where, "preprocessor_config")
    refuse_code_and_network(pp, where)
    if pp.get("image_mean") is not None:
        _triple(pp["image_mean"], where, "image_mean", positive=False)
    if pp.get("image_std") is not None:
        _triple(pp["image_std"], where, "image_std", positive=True)
    for k in ("do_normalize", "do_center_crop", "do_resize", "do_rescale", "do_convert_rgb"):
        _type(pp, k, bool, where, "")
    if "resample" in pp and pp["resample"] is not None:
        _num(pp, "resample", where, "", lo=0, cap=5)
    _num(pp, "rescale_factor", where, "", integer=False, lo=None, cap=1e6)
    for k in ("size", "crop_size"):
        v = pp.get(k)
        if v is None:
            continue
        if isinstance(v, dict):
            _allowed(v, ("height", "width", "shortest_edge", "longest_edge"), where, k)
            for kk in v:
                _num(v, kk, where, k, bound="image_size")
        else:
            _num(pp, k, where, "", bound="image_size")
    return pp


# ---------------------------------------------------------------------------
# Hugging Face config.json
# ---------------------------------------------------------------------------

HF_BOUNDS = {
    "num_hidden_layers": "layers", "hidden_size": "width", "intermediate_size": "intermediate_size",
    "max_position_embeddings": "context_length", "vocab_size": "vocab_size", "image_size": "image_size",
    "patch_size": "patch_size", "num_attention_heads": "heads", "projection_dim": "width",
    "num_key_value_heads": "heads", "num_channels": None, "num_patches": "context_length",
    "head_dim": "head_width", "projection_size": "width",
}
#: attention backends that run built-in code only (others name hub kernels)
HF_ATTENTION = ("eager", "sdpa")


def check_hf_config(cfg, where: str) -> dict:
    """Gate a transformers ``config.json`` (top level, ``text_config``, ``vision_config``)."""
    cfg = _obj(cfg, where, "config")
    refuse_code_and_network(cfg, where)
    for sect, path in ((cfg, ""), (cfg.get("text_config"), "text_config"), (cfg.get("vision_config"), "vision_config")):
        if sect is None:
            continue
        sect = _obj(sect, where, path)
        for key, bound in HF_BOUNDS.items():
            if key == "num_channels":
                _num(sect, key, where, path, cap=16)
            elif key in ("head_dim",):
                _num(sect, key, where, path, bound=bound)
            else:
                _num(sect, key, where, path, bound=bound)
        for k in ("attn_implementation", "_attn_implementation"):
            v = sect.get(k)
            if v is not None and v not in HF_ATTENTION:
                raise UnsafeCheckpointError(f"{where}: key {_join(path, k)} = {_show(v)}; "
                                            f"only {', '.join(HF_ATTENTION)} "
                                            f"are allowed (other backends load kernels from the hub).")
        if sect.get("quantization_config") is not None:
            raise InvalidInputError(
                f"{where}: key {_join(path, 'quantization_config')}: quantized checkpoints are not supported.")
        hs, nh = sect.get("hidden_size"), sect.get("num_attention_heads")
        if isinstance(hs, int) and isinstance(nh, int) and nh > 0 and hs % nh:
            raise InvalidInputError(f"{where}: key {_join(path, 'hidden_size')} ({hs}) is not a multiple of "
                                    f"{_join(path, 'num_attention_heads')} ({nh}).")
        ims, ps = sect.get("image_size"), sect.get("patch_size")
        if isinstance(ims, int) and isinstance(ps, int) and ps > ims:
            raise InvalidInputError(
                f"{where}: key {_join(path, 'patch_size')} is larger than {_join(path, 'image_size')}.")
    return cfg


def check_tokenizer_config(cfg, where: str) -> dict:
    """``tokenizer_config.json`` / ``special_tokens_map.json``: no code, no network."""
    refuse_code_and_network(_obj(cfg, where, "tokenizer_config"), where)
    return cfg


# ---------------------------------------------------------------------------
# building: nothing larger than the weights
# ---------------------------------------------------------------------------

def check_model_size(build, where: str, *, weights_elements: Optional[int] = None):
    """Build ``build()`` on torch's ``meta`` device (no memory) and refuse a
    model with more elements than the weights describe (or, without weights,
    than the ``parameters`` bound). Returns the element count."""
    import torch

    try:
        with torch.device("meta"):
            model = build()
    except DifeError:
        raise
    except Exception as e:  # a config the model code rejects
        raise InvalidInputError(
            f"{where}: the architecture does not build ({type(e).__name__}: {str(e)[:200]}).") from None
    n = sum(t.numel() for t in model.state_dict().values())
    del model
    if weights_elements is None:
        if n > limit("parameters"):
            raise InvalidInputError(
                f"{where}: the architecture describes {n:,} weights, over the bound {_hint('parameters')}.")
        return n
    allowed = weights_elements * limit("model_weights_ratio") + 2 ** 20
    if n > allowed:
        raise InvalidInputError(
            f"{where}: the architecture describes {n:,} weights but the weight file holds {weights_elements:,}; "
            f"refusing to build a model larger than its weights {_hint('model_weights_ratio')}.")
    return n


# ---------------------------------------------------------------------------
# foreign code that may panic
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def foreign_call(where: str, what: str):
    """Run a tokenizer/library call on untrusted files; any failure, including
    a Rust panic (``PanicException`` is a BaseException), becomes an
    InvalidInputError naming the file."""
    try:
        yield
    except DifeError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as e:  # noqa: B036 -- PanicException derives from BaseException
        text = str(e).strip().splitlines()
        raise InvalidInputError(
            f"{where}: {what} failed ({type(e).__name__}: {text[0][:200] if text else 'no detail'}); "
            f"refused.") from None


__all__ = [
    "DEFAULT_LIMITS", "LIMITS", "limit", "limits", "set_limits", "reset_limits", "parse_limit", "load_json",
    "parse_json",
    "refuse_code_and_network", "local_only", "inside", "containing_root", "plain_name", "asset_path",
    "check_openclip_architecture", "check_tokenizer_spec", "check_tokenizer_kwargs", "check_preprocess",
    "check_hf_preprocessor", "check_hf_config", "check_tokenizer_config", "check_model_size", "foreign_call",
]
