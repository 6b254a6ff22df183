"""DualEncoder over an open_clip model, and building one from an architecture dict.

The *architecture* dict is open_clip's model-config JSON shape
(``{"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text", ...}``)
plus three DIFE keys that travel in checkpoint manifests:

* ``"model_name"``  -- the open_clip name it came from (``"ViT-B-32"``), if any;
* ``"preprocess"``  -- mean/std/interpolation/resize_mode overrides;
* ``"tokenizer"``   -- ``{"kind": "simple"}`` (open_clip's bundled BPE),
  ``{"kind": "hf", "name": ...}`` or ``{"kind": "siglip", "variant": ...}``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
from pathlib import Path

import torch

from dife_core.model import DualEncoder, Preprocess

#: keys of an architecture dict that are not constructor arguments of open_clip's CLIP
META_KEYS = ("model_name", "preprocess", "tokenizer", "custom_text", "multimodal_cfg")
CONSTRUCTOR_KEYS = ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale",
                    "init_logit_bias", "nonscalar_logit_scale")


class OpenClipEncoder(DualEncoder):
    """An open_clip ``CLIP``/``CustomTextCLIP`` model as a DualEncoder.

    Visual branch: every ``visual.*`` key; text branch: everything else except
    ``logit_scale`` (and ``logit_bias``).
    """

    loader = "openclip"

    def __init__(self, model: torch.nn.Module, tokenizer, preprocess: Preprocess, *,
                 architecture: dict, name: str = "model"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.architecture = architecture
        self.name = name
        self._fingerprint = None

    def is_visual_param(self, name: str) -> bool:
        return name.startswith("visual.")

    def tokenize(self, strings) -> torch.Tensor:
        from dife_core.untrusted import foreign_call

        with foreign_call(f"{self.name}", "the tokenizer"):  # a Rust panic is a BaseException
            return self.tokenizer(list(strings))

    def _image_forward(self, pixels):
        return self.model.encode_image(pixels)

    def _text_forward(self, strings):
        tokens = self.tokenize(strings).to(self.device)
        return self.model.encode_text(tokens)

    def save_assets(self, folder) -> dict:
        """A Hugging Face tokenizer travels with the checkpoint; the bundled BPE needs nothing."""
        hf = getattr(self.tokenizer, "tokenizer", None)
        if hf is not None and hasattr(hf, "save_pretrained"):
            hf.save_pretrained(str(Path(folder) / "tokenizer"))
            return {"tokenizer": "tokenizer"}
        return {}


def model_kwargs(architecture: dict) -> dict:
    """Constructor arguments for open_clip's CLIP from an architecture dict,
    with every 'fetch pretrained tower weights' switch turned off (we load
    weights ourselves, from files we have checked)."""
    cfg = {k: copy.deepcopy(v) for k, v in architecture.items() if k in CONSTRUCTOR_KEYS}
    if "embed_dim" not in cfg or "vision_cfg" not in cfg or "text_cfg" not in cfg:
        missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
        raise KeyError(", ".join(missing))
    if "timm_model_name" in cfg["vision_cfg"]:
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    if "hf_model_name" in cfg["text_cfg"]:
        cfg["text_cfg"]["hf_model_pretrained"] = False
    return cfg


_INIT_LOCK = threading.Lock()
_SKIPPING = threading.local()


@contextlib.contextmanager
def skipped_init():
    """Module constructors *in this thread* skip their random initialisation
    (``torch.nn.init`` fills return their tensor untouched, as in
    transformers' ``no_init_weights``). Only for a model whose every
    parameter and buffer is loaded right after, strictly (``fit_state_dict``):
    it saves the random fill of every weight (0.6 s of a ViT-B/32 load).
    While the block runs, the fills are wrappers that ask a thread-local
    flag, so a module built meanwhile in another thread is still filled."""
    import torch.nn.init as init

    with _INIT_LOCK:
        names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_")
                 and callable(getattr(init, n))]
        saved = {n: getattr(init, n) for n in names}
        try:
            for n, f in saved.items():
                setattr(init, n, _skipping(f))
            _SKIPPING.on = True
            yield
        finally:
            _SKIPPING.on = False
            for n, f in saved.items():
                setattr(init, n, f)


def _skipping(fill):
    def maybe(*args, **kwargs):
        if getattr(_SKIPPING, "on", False):
            return args[0] if args else kwargs.get("tensor")
        return fill(*args, **kwargs)

    return maybe


def build_model(architecture: dict, *, init_weights: bool = True) -> torch.nn.Module:
    """Instantiate the open_clip model an architecture dict describes: random
    init, or -- ``init_weights=False``, for weights loaded strictly right after
    -- uninitialised memory."""
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = model_kwargs(architecture)
    custom = bool(architecture.get("custom_text")) or "hf_model_name" in cfg["text_cfg"]
    if architecture.get("multimodal_cfg"):
        raise ValueError("CoCa (multimodal_cfg) models are generative captioners, not dual encoders; not supported")
    with contextlib.nullcontext() if init_weights else skipped_init():
        return (CustomTextCLIP if custom else CLIP)(**cfg)


def build_tokenizer(architecture: dict, *, tokenizer_dir=None):
    """The tokenizer an architecture dict names (bundled BPE unless told otherwise).

    ``tokenizer_dir``: saved tokenizer files (a DIFE checkpoint's ``tokenizer/``)
    that replace a hub name for ``hf`` and ``siglip`` kinds.
    """
    text_cfg = architecture.get("text_cfg", {})
    ctx = text_cfg.get("context_length", 77)
    spec = dict(architecture.get("tokenizer") or {})
    kind = spec.get("kind")
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    # only named, allow-listed arguments: nothing from a file reaches AutoTokenizer's **kwargs
    hf_kwargs = {k: kwargs[k] for k in _HF_TOKENIZER_ARGS if k in kwargs}
    if tokenizer_dir is not None and kind in ("hf", "siglip", None):
        from open_clip.tokenizer import HFTokenizer

        return HFTokenizer(str(tokenizer_dir), context_length=ctx, tokenizer_mode=text_cfg.get("tokenizer_mode"),
                           trust_remote_code=False, local_files_only=True, **hf_kwargs)
    if kind is None:
        kind = "hf" if text_cfg.get("hf_tokenizer_name") else "simple"
    if kind == "simple":
        simple = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items() if k in _SIMPLE_TOKENIZER_ARGS}
        return _simple_tokenizer(ctx, tuple(sorted(simple.items())))
    if kind == "hf":
        from open_clip.tokenizer import HFTokenizer

        name = spec.get("name") or text_cfg.get("hf_tokenizer_name")
        return HFTokenizer(name, context_length=ctx, tokenizer_mode=text_cfg.get("tokenizer_mode"),
                           trust_remote_code=False, **hf_kwargs)
    if kind == "siglip":
        # open_clip's SigLipTokenizer fetches its vocabulary over HTTP (fsspec): never from DIFE
        from dife_core.errors import NotFoundError

        raise NotFoundError(
            "the 'siglip' tokenizer kind downloads its vocabulary and DIFE never downloads; load the model from "
            "files that carry their tokenizer (a DIFE checkpoint's tokenizer/ folder, an hf-hub: open_clip repo "
            "or a transformers SigLIP folder).")
    raise ValueError(f"unknown tokenizer kind {kind!r} (known: simple, hf, siglip)")


#: tokenizer arguments passed on by name (see dife_core.untrusted.TOKENIZER_KWARGS)
_HF_TOKENIZER_ARGS = ("clean", "strip_sep_token", "language")
_SIMPLE_TOKENIZER_ARGS = ("clean", "additional_special_tokens", "reduction_mask")


@functools.lru_cache(maxsize=8)
def _simple_tokenizer(ctx: int, kwargs: tuple):
    """open_clip's bundled BPE; building it reads ~50k merges, so share one per setting."""
    from open_clip.tokenizer import SimpleTokenizer

    kw = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs}
    return SimpleTokenizer(context_length=ctx, **kw)


def preprocess_from(architecture: dict) -> Preprocess:
    """Preprocessing from the architecture's ``preprocess`` overrides and its image size."""
    image_size = architecture["vision_cfg"].get("image_size", 224)
    if isinstance(image_size, (list, tuple)):
        image_size = image_size[0]
    pp = dict(architecture.get("preprocess") or {})
    pp.setdefault("image_size", image_size)
    return Preprocess.from_dict(pp)


def build_custom(architecture: dict, *, name: str = "model", tokenizer_dir=None,
                 init_weights: bool = True) -> OpenClipEncoder:
    """Build an open_clip CLIP from a custom architecture config (random init).

    ``architecture`` is open_clip's model-config JSON shape:
    ``{"embed_dim", "vision_cfg": {...}, "text_cfg": {...}}`` plus optional
    ``"quick_gelu"``, ``"custom_text"``, ``"preprocess"`` (mean/std/
    interpolation/resize_mode overrides) and ``"tokenizer"``. A ``vision_cfg``
    whose ``layers`` is a list of four ints builds a ResNet visual tower.
    """
    model = build_model(architecture, init_weights=init_weights)
    return OpenClipEncoder(model, build_tokenizer(architecture, tokenizer_dir=tokenizer_dir),
                           preprocess_from(architecture), architecture=copy.deepcopy(architecture), name=name)
