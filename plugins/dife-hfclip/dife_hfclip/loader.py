"""Load Hugging Face CLIP-like checkpoints without running code from them.

Sources: a ``save_pretrained`` folder (``config.json`` + weights + tokenizer
files), ``hf-hub:org/repo`` or a bare ``org/repo`` id that is in the local
cache. The config is read as JSON, checked by the untrusted-config gate
(:mod:`dife_core.untrusted`: bounds on every size, no ``auto_map`` or
``trust_remote_code`` -- refused, exit 3) and the model class is chosen from
DIFE's family table by ``model_type``; ``trust_remote_code`` is never set.
The model is first built on the ``meta`` device and refused when it would be
larger than its weights.
Weights go through :mod:`dife_core.safeload` (safetensors header checks,
weights_only pickle), never through ``from_pretrained``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from dife_core.errors import InvalidInputError, NotFoundError

from .encoder import FAMILIES, Family, family_for

HF_PREFIX = "hf-hub:"
CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "spiece.model", "tokenizer.model", "added_tokens.json")


class RemoteCodeWarning(UserWarning):
    """Kept for compatibility: a config asking for custom code is now refused."""


# -- where the files are ----------------------------------------------------------

class _Files:
    """Files of one model, in a local folder or in the hub cache (never fetched)."""

    def __init__(self, folder: Optional[Path] = None, repo: Optional[str] = None, cache_dir=None):
        self.folder, self.repo, self.cache_dir = folder, repo, cache_dir
        self.label = str(folder) if folder is not None else f"hf-hub:{repo}"

    def get(self, filename: str) -> Optional[Path]:
        if Path(filename).name != filename or filename in ("", ".", ".."):
            raise InvalidInputError(
                f"{self.label}: refusing file name {filename!r} (not a plain file name inside the model).")
        if self.folder is not None:
            p = self.folder / filename
            if not p.is_file():
                return None
            from dife_core.untrusted import containing_root, inside

            inside(containing_root(self.folder), p, self.label, filename)  # a symlink may not lead out of the folder
            return p
        from huggingface_hub import try_to_load_from_cache

        try:
            hit = try_to_load_from_cache(self.repo, filename, cache_dir=self.cache_dir)
        except Exception:
            return None
        return Path(hit) if isinstance(hit, str) and os.path.isfile(hit) else None

    @property
    def tokenizer_source(self) -> str:
        if self.folder is not None:
            return str(self.folder)
        cfg = self.get(CONFIG) or self.get("tokenizer_config.json")
        return str(cfg.parent) if cfg is not None else self.repo


def _read_json(path: Path, label: str) -> dict:
    from dife_core.untrusted import load_json

    return load_json(path, Path(path).name, where=f"{label}/{Path(path).name}")


def _files_for(source: str, options: dict) -> _Files:
    src = str(source)
    cache_dir = options.get("cache_dir")
    if src.startswith(HF_PREFIX):
        return _Files(repo=src[len(HF_PREFIX):].strip("/"), cache_dir=cache_dir)
    p = Path(src).expanduser()
    if p.is_dir():
        return _Files(folder=p)
    if p.is_file() and p.name == CONFIG:
        return _Files(folder=p.parent)
    if p.exists():
        raise InvalidInputError(
            f"{src}: the hfclip loader needs a save_pretrained folder (with {CONFIG}), not a single file.")
    if _looks_like_repo_id(src):
        return _Files(repo=src, cache_dir=cache_dir)
    raise NotFoundError(f"{src}: no such folder, and not a hub id (org/name).")


def _looks_like_repo_id(src: str) -> bool:
    parts = src.split("/")
    return len(parts) == 2 and all(parts) and not src.startswith((".", "~")) and " " not in src


# -- config -------------------------------------------------------------------------

def read_config(files: _Files) -> tuple:
    """(config dict, Family, notes) -- JSON only, nothing imported or executed."""
    path = files.get(CONFIG)
    if path is None:
        where = "the local Hugging Face cache" if files.repo else files.label
        raise NotFoundError(f"{files.label}: {CONFIG} not found in {where}; DIFE never downloads.",
                            hint="Use a save_pretrained folder, or fetch the repo on a connected machine "
                                 "and copy the cache (HF_HOME).")
    from dife_core.untrusted import check_hf_config, check_hf_preprocessor, refuse_code_and_network

    cfg = _read_json(path, files.label)
    check_hf_config(cfg, f"{files.label}/{CONFIG}")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        p = files.get(name)
        if p is not None:
            refuse_code_and_network(_read_json(p, files.label), f"{files.label}/{name}")
    p = files.get(PREPROCESSOR)
    if p is not None:
        check_hf_preprocessor(_read_json(p, files.label), f"{files.label}/{PREPROCESSOR}")
    notes: list = []
    model_type = cfg.get("model_type")
    family = family_for(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise InvalidInputError(
            f"{files.label}: model_type {model_type!r} is not a CLIP-like family DIFE knows; "
            f"supported: {', '.join(sorted(FAMILIES))}.")
    return cfg, family, notes


def _maybe_json(files: _Files, name: str) -> Optional[dict]:
    p = files.get(name)
    if p is None:
        return None
    return _read_json(p, files.label)


def build_config(family: Family, cfg: dict):
    import transformers

    cls = getattr(transformers, family.config_class)
    clean = {k: v for k, v in cfg.items() if k not in ("auto_map",)}
    try:
        config = cls.from_dict(clean)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise InvalidInputError(f"{family.model_type} config is invalid: {str(e)[:200]}.") from None
    # the attention backend is ours to choose: other values name kernels on the hub
    for c in (config, getattr(config, "text_config", None), getattr(config, "vision_config", None)):
        if c is not None:
            try:
                c._attn_implementation = "sdpa"
            except Exception:  # older transformers: a plain attribute
                pass
    return config


def build_model(family: Family, config):
    import transformers

    return getattr(transformers, family.model_class)(config)


def check_size(family: Family, config, where: str, *, weights_elements: int) -> None:
    """Build on ``meta`` (no memory) and refuse a model larger than its weights."""
    from dife_core.untrusted import check_model_size

    check_model_size(lambda: build_model(family, config), where, weights_elements=weights_elements)


def _weight_elements(files: "_Files") -> Optional[int]:
    """Elements in the safetensors weights, from their headers (None for pickles: counted after loading)."""
    from dife_core.safeload import validate_safetensors

    p = files.get(SAFE_WEIGHTS)
    if p is not None:
        return validate_safetensors(p).numel()
    if files.get(PICKLE_WEIGHTS) is not None:
        return None
    ip = files.get(SAFE_INDEX)
    if ip is not None:
        wmap = _read_json(ip, files.label).get("weight_map")
        if isinstance(wmap, dict) and wmap:
            total = 0
            for shard in sorted(set(map(str, wmap.values()))):
                sp = files.get(shard)
                if sp is None:
                    raise NotFoundError(f"{files.label}: shard {shard!r} named in {SAFE_INDEX} is missing.")
                total += validate_safetensors(sp).numel()
            return total
    return None


# -- preprocessing ---------------------------------------------------------------

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "bicubic", 4: "bilinear", 5: "bicubic"}


def preprocess_from(family: Family, config, pp: Optional[dict]):
    """DIFE Preprocess from preprocessor_config.json (or family defaults)."""
    from dife_core.model import Preprocess

    size = int(config.vision_config.image_size)
    mean, std, interp, mode = family.mean, family.std, "bicubic", family.resize_mode
    if pp:
        if pp.get("do_normalize", True) is False:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        else:
            mean = tuple(pp.get("image_mean") or mean)
            std = tuple(pp.get("image_std") or std)
        interp = _RESAMPLE.get(pp.get("resample"), interp) if isinstance(pp.get("resample"), int) else interp
        crop = pp.get("crop_size")
        if pp.get("do_center_crop") and crop:
            size = int(crop["height"] if isinstance(crop, dict) else crop)
            mode = "shortest"
        elif isinstance(pp.get("size"), dict) and "height" in pp["size"]:
            size, mode = int(pp["size"]["height"]), "squash"
        elif isinstance(pp.get("size"), dict) and "shortest_edge" in pp["size"]:
            size, mode = int(pp["size"]["shortest_edge"]), "shortest"
    return Preprocess(image_size=size, mean=mean, std=std, interpolation=interp, resize_mode=mode)


# -- weights ---------------------------------------------------------------------

def load_weights(files: _Files, *, trust: bool) -> tuple:
    """(state dict, list of weight files) -- safetensors preferred, shards supported."""
    from dife_core.safeload import load_state_dict

    for single, index in ((SAFE_WEIGHTS, SAFE_INDEX), (PICKLE_WEIGHTS, PICKLE_INDEX)):
        p = files.get(single)
        if p is not None:
            return load_state_dict(p, trust=trust), [p]
        ip = files.get(index)
        if ip is not None:
            idx = _read_json(ip, files.label)
            wmap = idx.get("weight_map")
            if not isinstance(wmap, dict) or not wmap:
                raise InvalidInputError(f"{files.label}: {index} has no weight_map.")
            shards = sorted(set(map(str, wmap.values())))
            sd, paths = {}, []
            for shard in shards:
                sp = files.get(shard)  # refuses ../ tricks
                if sp is None:
                    raise NotFoundError(f"{files.label}: shard {shard!r} named in {index} is missing.")
                part = load_state_dict(sp, trust=trust)
                dup = set(sd) & set(part)
                if dup:
                    raise InvalidInputError(f"{files.label}: tensor {sorted(dup)[0]!r} appears in two shards.")
                sd.update(part)
                paths.append(sp)
            return sd, paths
    raise NotFoundError(f"{files.label}: no weights found; "
                        f"looked for {SAFE_WEIGHTS}, {SAFE_INDEX}, {PICKLE_WEIGHTS}, {PICKLE_INDEX}.")


def fit_state_dict(model, sd: dict, *, where: str) -> None:
    """Strict load, tolerating only buffers transformers no longer saves."""
    own = model.state_dict()
    sd = {k: v for k, v in sd.items() if not (k.endswith("position_ids") and k not in own)}
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
        raise InvalidInputError(f"{where}: weights do not match the config: {'; '.join(parts)}.")
    model.load_state_dict(sd, strict=True)


#: files that carry a vocabulary; without one transformers 5 would build an empty tokenizer
VOCAB_FILES = ("tokenizer.json", "vocab.json", "spiece.model", "tokenizer.model", "vocab.txt",
               "sentencepiece.bpe.model")


def _require_tokenizer_files(files: "_Files") -> None:
    if not any(files.get(n) is not None for n in VOCAB_FILES):
        raise NotFoundError(f"{files.label}: no tokenizer vocabulary found; expected one of {', '.join(VOCAB_FILES)}.")


def load_tokenizer(source: str, label: str):
    """AutoTokenizer from local files only, without remote code; a tokenizer
    that fails or panics (Rust ``PanicException`` is a BaseException) while
    loading or on a probe sentence is refused."""
    from transformers import AutoTokenizer

    from dife_core.untrusted import foreign_call

    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # missing files, unknown class, remote code request
        text = str(e).splitlines()
        raise NotFoundError(
            f"{label}: could not load its tokenizer from local files "
            f"({type(e).__name__}: {text[0][:200] if text else ''}); "
            f"expected one of {', '.join(TOKENIZER_FILES)}.") from None
    except BaseException as e:  # noqa: B036 -- a Rust panic
        if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise InvalidInputError(f"{label}: its tokenizer files make the tokenizer library fail "
                                f"({type(e).__name__}: {str(e)[:200]}); refused.") from None
    with foreign_call(label, "the tokenizer on a probe sentence"):
        tok(["a photo of a cat."], padding=True, truncation=True, max_length=16)
    return tok


# -- public entry points -------------------------------------------------------

def _architecture(family: Family, config, notes: list) -> dict:
    arch = {"family": family.model_type, "config": config.to_dict(), "padding": family.padding,
            "max_length": int(config.text_config.max_position_embeddings),
            "text_inputs": list(family.text_inputs)}
    if notes:
        arch["notes"] = list(notes)
    return arch


def _dtype(precision):
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
             "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if precision not in table:
        raise InvalidInputError(f"unknown precision {precision!r}; known: {', '.join(table)}.")
    return table[precision]


def load(source: str, *, trust: bool = False, device: str = "cpu", name: Optional[str] = None, **options):
    """Load a transformers CLIP/SigLIP model as an HFClipEncoder."""
    from dife_core.loading import offline_hub

    from .encoder import HFClipEncoder

    known = {"cache_dir", "precision"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInputError(f"hfclip loader: unknown options {unknown}; known: {sorted(known)}.")
    with offline_hub():
        files = _files_for(source, options)
        cfg, family, notes = read_config(files)
        config = build_config(family, cfg)
        where = f"{files.label}/{CONFIG}"
        n = _weight_elements(files)
        if n is not None:
            check_size(family, config, where, weights_elements=n)
        sd, paths = load_weights(files, trust=trust)
        if n is None:
            check_size(family, config, where, weights_elements=sum(v.numel() for v in sd.values()))
        _require_tokenizer_files(files)
        tokenizer = load_tokenizer(files.tokenizer_source, files.label)
        model = build_model(family, config)
        fit_state_dict(model, sd, where=files.label)
        try:
            pp = preprocess_from(family, config, _maybe_json(files, PREPROCESSOR))
        except (TypeError, ValueError, KeyError) as e:
            raise InvalidInputError(f"{files.label}/{PREPROCESSOR}: unusable preprocessing ({str(e)[:200]}).") from None
    default = files.repo.split("/")[-1] if files.repo else files.folder.name
    enc = HFClipEncoder(model, tokenizer, pp, family=family, architecture=_architecture(family, config, notes),
                        name=name or default)
    enc.source = str(source)
    enc.weights_path = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
    enc.notes = notes
    precision = options.get("precision")
    enc.to(device, _dtype(precision) if precision else None)
    enc.invalidate_fingerprint()
    return enc.eval()


def from_manifest(manifest: dict, weights_path, *, trust: bool = False, device: str = "cpu"):
    """Rebuild an HFClipEncoder from a DIFE checkpoint (safetensors + tokenizer files)."""
    from dife_core.model import Preprocess
    from dife_core.safeload import load_safetensors, validate_safetensors
    from dife_core.untrusted import asset_path, check_hf_config, limit, refuse_code_and_network

    from .encoder import HFClipEncoder

    arch = manifest["architecture"]
    folder = Path(weights_path).parent
    where = str(folder / "dife.json")
    refuse_code_and_network(arch, where)
    family = family_for(arch.get("family")) if isinstance(arch.get("family"), str) else None
    if family is None:
        raise InvalidInputError(f"{where}: key architecture.family {str(arch.get('family'))[:40]!r} "
                                f"is not an hfclip family; supported: {', '.join(sorted(FAMILIES))}.")
    if not isinstance(arch.get("config"), dict):
        raise InvalidInputError(f"{where}: key architecture.config must be an object (the transformers config).")
    for k, typ in (("padding", str), ("max_length", int), ("text_inputs", list)):
        if arch.get(k) is not None and not isinstance(arch[k], typ):
            raise InvalidInputError(f"{where}: key architecture.{k} has the wrong type.")
    if isinstance(arch.get("max_length"), int) and not 1 <= arch["max_length"] <= limit("context_length"):
        raise InvalidInputError(f"{where}: key architecture.max_length must be 1..{limit('context_length')} "
                                f"(limit context_length).")
    if arch.get("padding") not in (None, "longest", "max_length"):
        raise InvalidInputError(f"{where}: key architecture.padding must be 'longest' or 'max_length'.")
    check_hf_config(arch["config"], where)
    tok_rel = (manifest.get("assets") or {}).get("tokenizer", "tokenizer")
    tok_dir = asset_path(folder, tok_rel, where, "assets.tokenizer")
    if not tok_dir.is_dir():
        raise InvalidInputError(f"{folder}: hfclip checkpoint lacks its tokenizer folder {tok_rel!r}.")
    for name in ("tokenizer_config.json", "special_tokens_map.json", "config.json"):
        if (tok_dir / name).is_file():
            refuse_code_and_network(_read_json(tok_dir / name, str(tok_dir)), str(tok_dir / name))
    config = build_config(family, arch["config"])
    check_size(family, config, where, weights_elements=validate_safetensors(weights_path).numel())
    model = build_model(family, config)
    fit_state_dict(model, load_safetensors(weights_path), where=str(weights_path))
    from dife_core.loading import offline_hub

    _require_tokenizer_files(_Files(folder=tok_dir))
    with offline_hub():
        tokenizer = load_tokenizer(str(tok_dir), str(folder))
    pp = Preprocess.from_dict(manifest["preprocess"])
    enc = HFClipEncoder(model, tokenizer, pp, family=family, architecture=arch, name=manifest.get("name", "model"))
    dtype = manifest.get("dtype")
    enc.to(device, _dtype(dtype) if dtype else None)
    return enc.eval()


def sniff(source: str) -> bool:
    """True for a folder or cached hub id whose config.json names a supported family."""
    src = str(source)
    try:
        if src.startswith(HF_PREFIX):
            files = _Files(repo=src[len(HF_PREFIX):].strip("/"))
        else:
            p = Path(src).expanduser()
            if p.is_dir():
                files = _Files(folder=p)
            elif p.exists() or not _looks_like_repo_id(src):
                return False
            else:
                files = _Files(repo=src)
        if files.get("open_clip_config.json") is not None:
            return False  # an open_clip repo; the openclip loader owns it
        cfg_path = files.get(CONFIG)
        if cfg_path is None:
            return False
        cfg = _read_json(cfg_path, files.label)
        return cfg.get("model_type") in FAMILIES
    except Exception:
        return False


def describe(source: str, keys=None) -> Optional[dict]:
    """For ``dife inspect``: a transformers folder's format and branch prefixes
    (every supported family), or None when ``source`` is not one."""
    prefixes = {"visual_prefixes": tuple(sorted({p for f in FAMILIES.values() for p in f.visual_prefixes})),
                "text_prefixes": tuple(sorted({p for f in FAMILIES.values() for p in f.text_prefixes})),
                "exclude_suffixes": ("logit_scale", "logit_bias")}
    p = Path(str(source)).expanduser()
    try:
        if p.is_dir() and (p / CONFIG).is_file() and not (p / "open_clip_config.json").is_file():
            return {"format": "hf-pretrained-folder", **prefixes}
    except OSError:
        return None
    if keys is not None and any(str(k).startswith(prefixes["visual_prefixes"]) for k in keys):
        return {"format": None, **prefixes}
    return None


def wrap_model(model, tokenizer, *, name: str = "model", preprocessor_config: Optional[dict] = None):
    """An in-memory transformers CLIPModel/SiglipModel (plus tokenizer) as an HFClipEncoder."""
    from .encoder import HFClipEncoder

    family = family_for(getattr(model.config, "model_type", None))
    if family is None:
        raise InvalidInputError(f"model_type {model.config.model_type!r} is not supported; "
                                f"supported: {', '.join(sorted(FAMILIES))}.")
    pp = preprocess_from(family, model.config, preprocessor_config)
    return HFClipEncoder(model, tokenizer, pp, family=family, architecture=_architecture(family, model.config, []),
                         name=name)
