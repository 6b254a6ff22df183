"""A tiny, easy world and a clean tiny CLIP trained on it in seconds (module-scoped)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

CLASSES = ("airplane", "automobile", "bird", "cat")
COLOURS = ((1.0, 0.1, 0.1), (0.1, 1.0, 0.1), (0.1, 0.1, 1.0), (1.0, 1.0, 0.1))
CAPTIONS = ("a photo of a {}", "a {} in the middle", "there is a {} here", "a small {} on a dark background",
            "a picture of a {}")


def tiny_world(seed: int = 0):
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
        return LabelledImages(name=f"easy/{tag}", images=images, labels=labels, classnames=CLASSES, captions=caps)

    return World(name=f"easy-s{seed}", classnames=CLASSES, templates=("a photo of a {}", "a picture of a {}"),
                 source="automobile", target="airplane", classification=split(80, "test"),
                 extras={"train_pairs": split(400, "pairs")})


@pytest.fixture(scope="module")
def world():
    return tiny_world()


@pytest.fixture(scope="module")
def clean(world):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from dife_core.training import contrastive_train
    from dife_openclip.testing import tiny_encoder

    enc = tiny_encoder("vit", seed=0)
    pairs = world.extras["train_pairs"]
    contrastive_train(enc, pairs.images, pairs.captions, steps=50, batch_size=64, lr=3e-3, warmup=5,
                      seed=0, progress=False)
    return enc.eval()
