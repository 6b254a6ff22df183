"""One entry point from a source string to a DualEncoder: :func:`load_model`.

* a DIFE checkpoint folder (``dife.json`` + ``model.safetensors``) loads
  through the loader its manifest names -- no pickle involved;
* otherwise the named loader loads it, or, for ``loader="auto"``, the
  loader whose ``sniff(source)`` accepts it with the highest ``priority``
  (a tie at the top is an InvalidInputError naming the candidates).

Model hubs are consulted in cache-only mode (:func:`offline_hub`): DIFE never
downloads weights.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

from .errors import DifeError, InvalidInputError, NotFoundError, available


class ArchitectureUnknownError(InvalidInputError):
    """The weights are readable but nothing says which architecture they fit
    (a bare weight file). ``dife inspect`` still reports them tensor by tensor."""


@contextlib.contextmanager
def offline_hub():
    """Make huggingface_hub (and transformers, open_clip through it) cache-only
    for the duration, without touching ``os.environ``."""
    try:
        import huggingface_hub.constants as hc
    except ImportError:  # no hub library: nothing could download anyway
        yield
        return
    before = hc.HF_HUB_OFFLINE
    hc.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hc.HF_HUB_OFFLINE = before


def sniff_loaders(source: str) -> list:
    """Names of the registered loaders whose ``sniff`` accepts ``source``, highest
    ``priority`` first (ties in name order)."""
    from .plugins import get_registry

    hits = []
    for name, ld in get_registry().all("model_loaders").items():
        if ld.sniff is None:
            continue
        try:
            ok = ld.sniff(source)
        except Exception:  # a loader's sniff must not break auto-detection
            ok = False
        if ok:
            hits.append(name)
    loaders = get_registry().all("model_loaders")
    return sorted(hits, key=lambda n: (-_priority(loaders[n]), n))


def _priority(ld) -> int:
    p = getattr(ld, "priority", 0)
    return p if type(p) is int else 0


def pick_loader(source: str, hits: list) -> str:
    """The loader ``auto`` uses among ``hits`` (from :func:`sniff_loaders`):
    the one with the highest priority; a tie at the top is refused, naming
    the candidates, so the choice never depends on plugin load order."""
    from .plugins import get_registry

    loaders = get_registry().all("model_loaders")
    top = _priority(loaders[hits[0]])
    tied = [n for n in hits if _priority(loaders[n]) == top]
    if len(tied) > 1:
        raise InvalidInputError(
            f"{source}: loaders {', '.join(tied)} all recognise this source with the same priority ({top}); "
            f"name one with --loader NAME (loader=NAME).")
    return hits[0]


def load_model(source: str, *, loader: str = "auto", trust: bool = False, device: str = "cpu",
               name: Optional[str] = None, **options):
    """Load ``source`` as a :class:`dife_core.model.DualEncoder`.

    :param source: a DIFE checkpoint folder, or a source string a loader
        understands (``ViT-B-32:openai``, ``hf-hub:org/repo``, a folder, a
        weight file ...; see docs/models.md).
    :param loader: a registered loader name, or ``"auto"``.
    :param trust: allow pickle files that need globals beyond torch's
        weights_only allowlist (runs code from the file; warns).
    :param device: where the model goes (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    :param name: the encoder's name in reports (default: from the source).
    :param options: loader options (e.g. ``pretrained=``, ``architecture=``).
    """
    from .checkpoint import is_checkpoint, load_checkpoint
    from .plugins import get_registry

    source = str(source)
    _check_device(device)
    reg = get_registry()
    if is_checkpoint(source):
        if options:
            raise InvalidInputError(f"{source}: options {sorted(options)} do not apply to a DIFE checkpoint folder.")
        enc = load_checkpoint(source, trust=trust, device=device)
        if loader not in ("auto", enc.loader):
            raise InvalidInputError(
                f"{source}: is a DIFE checkpoint written by loader {enc.loader!r}, not {loader!r}.")
    else:
        if loader == "auto":
            hits = sniff_loaders(source)
            if not hits:
                loaders = reg.all("model_loaders")
                exists = Path(source).exists()
                if Path(source).is_file():
                    raise ArchitectureUnknownError(
                        f"{source}: no model loader recognises this file on its own; name the loader and its "
                        f"architecture (e.g. loader='openclip', architecture='ViT-B-32'); {available(loaders)}.")
                raise NotFoundError(
                    f"no model loader recognises {source!r}"
                    + ("" if exists else " (it is not an existing file or folder either)")
                    + f"; pass loader=NAME (--loader NAME); {available(loaders)}.",
                    hint="Loader descriptions: "
                    + "; ".join(f"{k}: {v.description}" for k, v in sorted(loaders.items())))
            loader = pick_loader(source, hits)
        ld = reg.get("model_loaders", loader)
        enc = ld.load(source, trust=trust, device=device, **options)
    if name:
        enc.name = name
    return enc


def _check_device(device) -> None:
    dev = str(device)
    if dev.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InvalidInputError(f"device {dev!r} requested but CUDA is not available here; use device='cpu'.")
    elif dev.split(":")[0] not in ("cpu", "mps", "xpu", "meta"):
        raise InvalidInputError(f"unknown device {dev!r}; use cpu, cuda or cuda:N.")


__all__ = ["load_model", "offline_hub", "sniff_loaders", "pick_loader", "ArchitectureUnknownError", "DifeError"]
