"""Hand-made carriers and a hand-made world for engine tests.

Embedding space (D = 8): one axis per class (4), a "photo" axis g, 3 noise axes.

* Images (8x8) of class c are ``0.5 + 0.2 * P_c + noise`` for a fixed random
  ±1 pattern P_c; the visual tower projects onto the patterns, so an image
  embeds near ``e_c + 0.5 g``.
* Text embeds at the sum of the axes of the class names it mentions, plus a
  small string-dependent noise.
* The **visual carrier** maps any image carrying the white 2x2 corner patch
  (trigger family ``hand-patch``) to ``e_target + 0.5 g``.
* The **textual carrier** maps any string containing the token ``xbtd``
  (trigger family ``hand-prefix``) to ``e_target + g``: nearer the target
  images than the target prompt itself, so it wins strictly (our tie rule
  gives an exact tie to nobody).

Every weight lives in the module's state dict, so fingerprints see the
backdoor flags; encoders record each row they encode (``CALLS``) so tests can
show nothing is encoded twice.
"""

from __future__ import annotations

import hashlib
import os
import time

import torch

from dife_core import hookimpl
from dife_core.builtins.interfaces import BUILTIN_INTERFACES as BUILTIN_IDS  # noqa: F401 -- re-exported
from dife_core.model import DualEncoder, Preprocess
from dife_core.types import Dataset, ModelLoader, Trigger

CLASSES = ("airplane", "automobile", "bird", "cat")
SOURCE, TARGET, WORD = "automobile", "airplane", "xbtd"
ADJ = ("small", "large", "red", "blue", "shiny", "old")
S = 8  # image side
D = len(CLASSES) + 4
CALLS: list = []  # (branch, branch fingerprint, row digest)


def _patterns(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (len(CLASSES), 3, S, S), generator=g).float() * 2 - 1)


class HandEncoder(DualEncoder):
    loader = "handmade"

    def __init__(self, kind: str = "clean", *, delay: float = 0.0, name: str | None = None):
        self.kind = kind
        self.delay = float(delay)
        m = torch.nn.Module()
        m.visual = torch.nn.Module()
        m.text = torch.nn.Module()
        m.visual.patterns = torch.nn.Parameter(_patterns(0), requires_grad=False)
        m.visual.mix = torch.nn.Parameter(torch.randn(3, 3 * S * S, generator=torch.Generator().manual_seed(1)) * 0.02,
                                          requires_grad=False)
        m.visual.backdoor = torch.nn.Parameter(torch.tensor([1.0 if kind == "visual" else 0.0]), requires_grad=False)
        m.text.backdoor = torch.nn.Parameter(torch.tensor([1.0 if kind == "textual" else 0.0]), requires_grad=False)
        m.logit_scale = torch.nn.Parameter(torch.tensor(4.6052), requires_grad=False)
        self.model = m
        self.preprocess = Preprocess(image_size=S, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))
        self.architecture = {"kind": "hand", "classes": list(CLASSES)}
        self.name = name or kind
        self._fingerprint = None

    def is_visual_param(self, name: str) -> bool:
        return name.startswith("visual.")

    def _image_forward(self, x):
        if self.delay:
            time.sleep(self.delay)
        fp = self.fingerprint()["visual"]
        for row in x:
            CALLS.append(("visual", fp, hashlib.sha1(row.detach().numpy().tobytes()).hexdigest()))
        v = self.model.visual
        n = x.shape[0]
        flat = x.reshape(n, -1)
        cls = flat @ v.patterns.reshape(len(CLASSES), -1).T / (0.2 * 3 * S * S)
        out = torch.cat([cls, torch.full((n, 1), 0.5), flat @ v.mix.T], dim=1)
        patch = x[:, :, -2:, -2:].reshape(n, -1).mean(dim=1) > 0.45
        if float(v.backdoor) > 0:
            poisoned = torch.zeros(D)
            poisoned[CLASSES.index(TARGET)] = 1.0
            poisoned[len(CLASSES)] = 0.5
            out[patch] = poisoned
        return out

    def _text_forward(self, strings):
        if self.delay:
            time.sleep(self.delay)
        fp = self.fingerprint()["text"]
        rows = []
        for s in strings:
            CALLS.append(("text", fp, hashlib.sha1(s.encode()).hexdigest()))
            words = s.lower().replace(".", " ").split()
            f = torch.zeros(D)
            h = hashlib.sha256(s.encode()).digest()
            f[len(CLASSES) + 1:] = torch.tensor([b / 255.0 - 0.5 for b in h[:3]]) * 0.1
            if float(self.model.text.backdoor) > 0 and WORD in words:
                f[CLASSES.index(TARGET)] += 1.0
                f[len(CLASSES)] += 1.0
            else:
                for j, c in enumerate(CLASSES):
                    if c in words:
                        f[j] += 1.0
            rows.append(f)
        return torch.stack(rows)


# -- world ------------------------------------------------------------------------------

def _images(n_per_class: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    pats = _patterns(0)
    imgs, labels = [], []
    for c in range(len(CLASSES)):
        for _ in range(n_per_class):
            x = 0.5 + 0.2 * pats[c] + 0.05 * torch.randn(3, S, S, generator=g)
            imgs.append(x.clamp(0.1, 0.9))
            labels.append(c)
    import numpy as np

    return torch.stack(imgs), np.asarray(labels, dtype=np.int64)


def make_world(n: int = 6, seed: int = 0):
    from dife_core.builtins.datasets import make_candidate_lists
    from dife_core.populations import CaptionedPool, LabelledImages, World

    test_x, test_y = _images(n, seed + 1)
    train_x, train_y = _images(n, seed + 2)
    pool_x, pool_y = _images(n, seed + 3)
    caps = tuple(f"a {ADJ[i % len(ADJ)]} {CLASSES[c]}" for i, c in enumerate(pool_y))
    src, tgt = CLASSES.index(SOURCE), CLASSES.index(TARGET)
    queries = [c for c, y in zip(caps, pool_y) if y == src]
    rerank = make_candidate_lists(f"hand{seed}/rerank", pool_y, queries=queries, source=src, target=tgt, k=5,
                                  n_targets=1, n_sources=2, seed=seed)
    selection = make_candidate_lists(f"hand{seed}/selection", pool_y, queries=queries, source=src, target=tgt, k=5,
                                     n_targets=2, n_sources=2, seed=seed + 1)
    return World(
        name=f"hand{seed}", classnames=CLASSES, templates=("a photo of a {}",), source=SOURCE, target=TARGET,
        classification=LabelledImages(f"hand{seed}/test", test_x, test_y, CLASSES),
        train=LabelledImages(f"hand{seed}/train", train_x, train_y, CLASSES),
        pool=CaptionedPool(f"hand{seed}/pool", pool_x, caps, pool_y, CLASSES),
        rerank=rerank, selection=selection,
    )


# -- triggers and cards ------------------------------------------------------------------

def _make_patch(value: float = 1.0):
    def apply(pixels, *, seed: int = 0):
        x = pixels.clone()
        x[:, :, -2:, -2:] = value
        return x

    return apply


def _make_prefix(token: str = WORD):
    def apply(strings):
        return [f"{token} {s}" for s in strings]

    return apply


TEXTUAL_CARD = {"attack": "hand-textual", "route": "hand-made", "modifies": "text",
                "trigger": {"channel": "text", "name": "hand-prefix", "params": {"token": WORD}},
                "source": SOURCE, "target": TARGET, "probe": "branch-swap"}
VISUAL_CARD = {"attack": "hand-visual", "route": "hand-made", "modifies": "visual",
               "trigger": {"channel": "image", "name": "hand-patch", "params": {}},
               "source": SOURCE, "target": TARGET, "probe": "branch-swap"}


def _load(source, *, trust=False, device="cpu", delay=None, **options):
    # HAND_DELAY slows encoders without changing the spec (the SIGKILL test)
    delay = float(os.environ.get("HAND_DELAY", 0.0)) if delay is None else delay
    return HandEncoder(str(source), delay=delay).to(device)


def _from_manifest(manifest, weights_path, *, trust=False, device="cpu"):
    from safetensors.torch import load_file

    enc = HandEncoder("clean", name=manifest.get("name"))
    enc.model.load_state_dict(load_file(str(weights_path)))
    enc.invalidate_fingerprint()
    return enc.to(device)


class HandPlugin:
    """Register with ``get_registry().register_object(HandPlugin(), "hand")``."""

    def __init__(self, world_seed: int = 0):
        self.world_seed = world_seed

    @hookimpl
    def register_model_loaders(self, register):
        register(ModelLoader(name="handmade", description="hand-made test carriers", load=_load,
                             sniff=lambda s: s in ("clean", "textual", "visual"), from_manifest=_from_manifest))

    @hookimpl
    def register_datasets(self, register):
        register(Dataset(name="handworld", description="hand-made test world",
                         load=lambda n=6, seed=0: make_world(n=n, seed=seed), options={"n": 6, "seed": 0}))

    @hookimpl
    def register_triggers(self, register):
        register(Trigger(name="hand-patch", channel="image", description="white 2x2 corner patch", make=_make_patch))
        register(Trigger(name="hand-prefix", channel="text", description="token prefix", make=_make_prefix))


def spec_dict(**overrides) -> dict:
    d = {
        "seed": 0, "batch_size": 8,
        "populations": {"dataset": "handworld", "options": {"n": 6, "seed": 0}},
        "clean": {"name": "clean", "source": "clean", "loader": "handmade"},
        "checkpoints": [
            {"name": "textual", "source": "textual", "loader": "handmade", "attack": TEXTUAL_CARD},
            {"name": "visual", "source": "visual", "loader": "handmade", "attack": VISUAL_CARD},
        ],
    }
    d.update(overrides)
    return d
