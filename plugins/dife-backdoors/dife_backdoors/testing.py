"""A tiny, easy world and a clean tiny CLIP for attack tests (seconds on a CPU).

Four classes told apart by the colour of a square at a random position;
captions name the class in a few phrasings. Attack tests train a tiny
open_clip model on it (``easy_clean``) and check that an attack works, fast.
"""

from __future__ import annotations

import functools

CLASSES = ("airplane", "automobile", "bird", "cat")
COLOURS = ((1.0, 0.1, 0.1), (0.1, 1.0, 0.1), (0.1, 0.1, 1.0), (1.0, 1.0, 0.1))
CAPTIONS = ("a photo of a {}", "a {} in the middle", "there is a {} here", "a small {} on a dark background",
            "a picture of a {}")


@functools.lru_cache(maxsize=4)
def easy_world(seed: int = 0, *, n_pairs: int = 400, n_test: int = 80):
    """A :class:`dife_core.populations.World` with train pairs and a test set
    (source automobile, target airplane). Memoised: treat it as read-only."""
    import numpy as np
    import torch

    from dife_core.populations import LabelledImages, World

    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def split(n, tag):
        labels = np.arange(n) % len(CLASSES)
        images = torch.rand(n, 3, 32, 32, generator=g) * 0.25
        for i, y in enumerate(labels):
            top, left = rng.integers(0, 16, size=2)
            images[i, :, top:top + 16, left:left + 16] = torch.tensor(COLOURS[y]).view(3, 1, 1)
        caps = tuple(CAPTIONS[rng.integers(len(CAPTIONS))].format(CLASSES[y]) for y in labels)
        return LabelledImages(name=f"easy-s{seed}/{tag}", images=images, labels=labels, classnames=CLASSES,
                              captions=caps)

    return World(name=f"easy-s{seed}", classnames=CLASSES, templates=("a photo of a {}", "a picture of a {}"),
                 source="automobile", target="airplane", classification=split(n_test, "test"),
                 extras={"train_pairs": split(n_pairs, "pairs")})


def easy_clean(world_seed: int = 0, *, steps: int = 40, seed: int = 0):
    """A private copy of a tiny open_clip ViT trained contrastively on
    ``easy_world(world_seed)`` (clean accuracy ~1). Trained once per process;
    every call returns a fresh copy, so a test may train or edit it in place."""
    from dife_core.building import copy_encoder

    enc = copy_encoder(_easy_clean(world_seed, steps=steps, seed=seed))
    enc.invalidate_fingerprint()
    return enc.eval()


@functools.lru_cache(maxsize=4)
def _easy_clean(world_seed: int = 0, *, steps: int = 40, seed: int = 0):
    from dife_core.training import contrastive_train
    from dife_openclip.testing import tiny_encoder

    world = easy_world(world_seed)
    enc = tiny_encoder("vit", seed=seed)
    pairs = world.extras["train_pairs"]
    contrastive_train(enc, pairs.images, pairs.captions, steps=steps, batch_size=64, lr=3e-3, warmup=5,
                      seed=seed, progress=False)
    return enc.eval()
