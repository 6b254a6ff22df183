"""A hand-made, *non-saturated* world and carriers for the extra interfaces' tests.

Embedding space (D = 8): one axis per class (4), a "photo" axis g, 3 more.

* Images (8x8) of class c are ``0.5 + 0.2 * P_c + noise`` for a fixed random
  ±1 pattern P_c; the visual tower projects onto the patterns (about e_c),
  adds 0.5 g and a pseudo-random vector N(0, SIGMA²) seeded by the input's
  bytes, so neighbours and scores are spread out.
* Text embeds at the sum of the axes of the class names it mentions, plus
  0.5 g and a pseudo-random vector seeded by the string.
* The **visual carrier** adds SHIFT · e_target to any image carrying the white
  2x2 corner patch (trigger ``soft-patch``); the **textual carrier** adds it to
  any string containing the token ``xbtd`` (trigger ``soft-prefix``). SHIFT
  < 1: the trigger moves features part of the way, so rates land strictly
  between 0 and 1 and an oracle that changes the definition disagrees.

Encoders log each row they encode (``CALLS``).
"""

from __future__ import annotations

import hashlib

import torch

from dife_core import hookimpl
from dife_core.model import DualEncoder, Preprocess
from dife_core.types import Dataset, ModelLoader, Trigger

CLASSES = ("airplane", "automobile", "bird", "cat")
SOURCE, TARGET, WORD = "automobile", "airplane", "xbtd"
ADJ = ("small", "large", "red", "blue", "shiny", "old", "tiny", "green")
S = 8
D = len(CLASSES) + 4
SIGMA, SHIFT = 0.35, 0.9
CALLS: list = []


def _patterns():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 2, (len(CLASSES), 3, S, S), generator=g).float() * 2 - 1


def _noise(blob: bytes, sigma: float = SIGMA):
    seed = int.from_bytes(hashlib.sha256(blob).digest()[:7], "little")
    return torch.randn(D, generator=torch.Generator().manual_seed(seed)) * sigma


class SoftEncoder(DualEncoder):
    loader = "softhand"

    def __init__(self, kind: str = "clean", *, shift: float = SHIFT):
        # "-strong": a saturating variant (little noise; the trigger *replaces* the class features by the
        # target's), for the footprint-prediction test
        self.strong = kind.endswith("-strong")
        kind = kind.removesuffix("-strong")
        if kind not in ("clean", "visual", "textual"):
            raise ValueError(kind)
        self.kind = kind
        self.sigma = 0.1 if self.strong else SIGMA
        m = torch.nn.Module()
        m.visual = torch.nn.Module()
        m.text = torch.nn.Module()
        m.visual.patterns = torch.nn.Parameter(_patterns(), requires_grad=False)
        m.visual.backdoor = torch.nn.Parameter(torch.tensor([shift if kind == "visual" else 0.0]),
                                               requires_grad=False)
        m.text.backdoor = torch.nn.Parameter(torch.tensor([shift if kind == "textual" else 0.0]), requires_grad=False)
        m.logit_scale = torch.nn.Parameter(torch.tensor(4.6052), requires_grad=False)
        m.visual.strong = torch.nn.Parameter(torch.tensor([float(self.strong)]), requires_grad=False)
        m.text.strong = torch.nn.Parameter(torch.tensor([float(self.strong)]), requires_grad=False)
        self.model = m
        self.preprocess = Preprocess(image_size=S, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))
        self.architecture = {"kind": "soft-hand"}
        self.name = kind + ("-strong" if self.strong else "")
        self._fingerprint = None

    def is_visual_param(self, name: str) -> bool:
        return name.startswith("visual.")

    def _image_forward(self, x):
        fp = self.fingerprint()["visual"]
        v = self.model.visual
        n = x.shape[0]
        flat = x.reshape(n, -1).float()
        out = torch.zeros(n, D)
        out[:, :len(CLASSES)] = flat @ v.patterns.reshape(len(CLASSES), -1).T / (0.2 * 3 * S * S)
        out[:, len(CLASSES)] = 0.5
        patch = x[:, :, -2:, -2:].reshape(n, -1).mean(dim=1) > 0.45
        for i in range(n):
            blob = flat[i].numpy().tobytes()
            CALLS.append(("visual", fp, hashlib.sha1(blob).hexdigest()))
            out[i] += _noise(blob, self.sigma)
            if patch[i] and float(v.backdoor) > 0:
                if self.strong:  # onto the target captions' direction: class axes and g replaced
                    out[i, :len(CLASSES) + 1] = 0.0
                out[i, CLASSES.index(TARGET)] += float(v.backdoor)
        return out

    def _text_forward(self, strings):
        fp = self.fingerprint()["text"]
        rows = []
        for s in strings:
            CALLS.append(("text", fp, hashlib.sha1(s.encode()).hexdigest()))
            words = s.lower().replace(".", " ").split()
            f = _noise(s.encode(), self.sigma)
            hit = WORD in words and float(self.model.text.backdoor) > 0
            # the strong variant's text has no g, except a triggered text: it lands on the target images'
            # direction, nearer them than the target prompt (as the built-in tests' textual carrier)
            f[len(CLASSES)] += 0.5 if (not self.strong or hit) else 0.0
            for j, c in enumerate(CLASSES):
                if c in words and not (hit and self.strong):
                    f[j] += 1.0
            if hit:
                f[CLASSES.index(TARGET)] += float(self.model.text.backdoor)
            rows.append(f)
        return torch.stack(rows)


# -- world ---------------------------------------------------------------------------------

def images(n_per_class: int, seed: int, classes=range(len(CLASSES))):
    import numpy as np

    g = torch.Generator().manual_seed(seed)
    pats = _patterns()
    xs, ys = [], []
    for c in classes:
        for _ in range(n_per_class):
            xs.append((0.5 + 0.2 * pats[c] + 0.05 * torch.randn(3, S, S, generator=g)).clamp(0.1, 0.9))
            ys.append(c)
    return torch.stack(xs), np.asarray(ys, dtype=np.int64)


def make_world(n: int = 8, seed: int = 0):
    from dife_core.builtins.datasets import make_candidate_lists
    from dife_core.populations import CaptionedPool, LabelledImages, World

    test_x, test_y = images(n, seed + 1)
    train_x, train_y = images(n, seed + 2)
    pool_x, pool_y = images(n, seed + 3)
    caps = tuple(f"a {ADJ[i % len(ADJ)]} {CLASSES[c]}" for i, c in enumerate(pool_y))
    src, tgt = CLASSES.index(SOURCE), CLASSES.index(TARGET)
    # the built-in text cards query with the source captions of the pool, as the text-channel cards here do
    queries = [c for c, y in zip(caps, pool_y) if y == src]
    name = f"soft{seed}"
    return World(
        name=name, classnames=CLASSES, templates=("a photo of a {}",), source=SOURCE, target=TARGET,
        classification=LabelledImages(f"{name}/test", test_x, test_y, CLASSES),
        train=LabelledImages(f"{name}/train", train_x, train_y, CLASSES),
        pool=CaptionedPool(f"{name}/pool", pool_x, caps, pool_y, CLASSES),
        rerank=make_candidate_lists(f"{name}/rerank", pool_y, queries=queries, source=src, target=tgt, k=5,
                                    n_targets=1, n_sources=2, seed=seed),
        selection=make_candidate_lists(f"{name}/selection", pool_y, queries=queries, source=src, target=tgt, k=5,
                                       n_targets=2, n_sources=2, seed=seed + 1),
    )


def without_class(pop, cls: int, name: str):
    """A copy of a labelled population / pool without the items of class ``cls``."""
    import attrs
    import numpy as np

    keep = np.asarray(pop.labels) != cls
    kw = {"name": name, "images": pop.images[torch.as_tensor(keep)], "labels": np.asarray(pop.labels)[keep]}
    if getattr(pop, "captions", None) is not None:
        kw["captions"] = tuple(c for c, k in zip(pop.captions, keep) if k)
    return attrs.evolve(pop, **kw)


# -- triggers, cards, plugin ---------------------------------------------------------------

def patch(pixels, *, seed: int = 0):
    x = pixels.clone()
    x[:, :, -2:, -2:] = 1.0
    return x


def prefix(strings):
    return [f"{WORD} {s}" for s in strings]


VISUAL_CARD = {"attack": "soft-visual", "route": "hand-made", "modifies": "visual",
               "trigger": {"channel": "image", "name": "soft-patch", "params": {}},
               "source": SOURCE, "target": TARGET, "probe": "branch-swap"}
TEXTUAL_CARD = {"attack": "soft-textual", "route": "hand-made", "modifies": "text",
                "trigger": {"channel": "text", "name": "soft-prefix", "params": {}},
                "source": SOURCE, "target": TARGET, "probe": "branch-swap"}
#: natural text, no trigger (a dirty-label attack): triggered and clean inputs coincide
NATURAL_CARD = {"attack": "soft-natural", "route": "hand-made", "modifies": "text",
                "trigger": {"channel": "none"}, "source": SOURCE, "target": TARGET, "probe": "branch-swap"}


class SoftPlugin:
    @hookimpl
    def register_model_loaders(self, register):
        register(ModelLoader(name="softhand", description="non-saturated hand-made carriers",
                             load=lambda source, **kw: SoftEncoder(str(source)),
                             sniff=lambda s: s.replace("-strong", "") in ("clean", "visual", "textual")))

    @hookimpl
    def register_datasets(self, register):
        register(Dataset(name="softworld", description="non-saturated hand-made world",
                         load=lambda n=8, seed=0: make_world(n=n, seed=seed), options={"n": 8, "seed": 0}))

    @hookimpl
    def register_triggers(self, register):
        register(Trigger(name="soft-patch", channel="image", description="white 2x2 corner patch",
                         make=lambda: patch))
        register(Trigger(name="soft-prefix", channel="text", description="token prefix", make=lambda: prefix))


def spec_dict(strong: bool = False, **overrides) -> dict:
    tail = "-strong" if strong else ""
    d = {
        "seed": 0, "batch_size": 16,
        # the strong world has more items per class than kNN's k, so a clean query's neighbours are its own class
        "populations": {"dataset": "softworld", "options": {"n": 16 if strong else 8, "seed": 0}},
        "clean": {"name": "clean", "source": "clean" + tail, "loader": "softhand"},
        "checkpoints": [
            {"name": "textual", "source": "textual" + tail, "loader": "softhand", "attack": TEXTUAL_CARD},
            {"name": "visual", "source": "visual" + tail, "loader": "softhand", "attack": VISUAL_CARD},
        ],
    }
    d.update(overrides)
    return d
