"""dife_core.training.contrastive_train: the CLIP trainer attacks reuse.

Tiny open_clip ResNet models built in the test; a few steps each.
"""

import pytest
import torch

from dife_core.errors import InvalidInputError
from dife_core.training import TrainBatch, clip_loss, contrastive_train, cosine_schedule


def _data(n=32, seed=0):
    """Two visually obvious concepts: red and blue squares, with captions."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 32, 32, generator=g) * 0.2
    labels = torch.arange(n) % 2
    images[labels == 0, 0] += 0.8
    images[labels == 1, 2] += 0.8
    captions = ["a red square" if y == 0 else "a blue square" for y in labels.tolist()]
    return images.clamp(0, 1), captions, labels


def _enc(seed=0):
    from dife_openclip.testing import tiny_encoder

    return tiny_encoder("resnet", seed=seed)


def _accuracy(enc, images, labels):
    with torch.no_grad():
        img = torch.nn.functional.normalize(enc.encode_image(images), dim=-1)
        txt = torch.nn.functional.normalize(enc.encode_text(["a red square", "a blue square"]), dim=-1)
    return float(((img @ txt.t()).argmax(1) == labels).float().mean())


def test_training_learns_an_easy_pairing():
    images, captions, labels = _data()
    enc = _enc()
    contrastive_train(enc, images, captions, steps=40, batch_size=16, lr=3e-3, warmup=4, seed=0, progress=False)
    assert _accuracy(enc, images, labels) == 1.0
    stats = enc.train_stats
    assert stats.steps == 40 and stats.losses[-1] < stats.losses[0]
    assert not enc.model.training  # handed back in eval mode
    assert all(p.requires_grad for p in enc.model.parameters())  # nothing left frozen


def test_same_seed_same_weights_and_fingerprint_is_refreshed():
    images, captions, _ = _data()
    fps = []
    for _ in range(2):
        enc = _enc()
        before = enc.fingerprint()
        contrastive_train(enc, images, captions, steps=3, batch_size=8, seed=5, progress=False)
        fps.append(enc.fingerprint())
        assert fps[-1] != before  # invalidate_fingerprint ran
    assert fps[0] == fps[1]
    enc = _enc()
    contrastive_train(enc, images, captions, steps=3, batch_size=8, seed=6, progress=False)
    assert enc.fingerprint() != fps[0]


@pytest.mark.parametrize("branch,frozen", [("text", "visual"), ("visual", "text")])
def test_single_branch_training_leaves_the_other_branch_and_scale_untouched(branch, frozen):
    images, captions, _ = _data()
    enc = _enc()
    frozen_state = {k: v.clone() for k, v in enc.branch_state(frozen).items()}  # incl. batch-norm statistics
    scale = enc.logit_scale
    fp = enc.fingerprint()
    contrastive_train(enc, images, captions, steps=3, batch_size=8, trainable=branch, progress=False)
    after = enc.branch_state(frozen)
    assert all(torch.equal(after[k], v) for k, v in frozen_state.items())
    assert enc.logit_scale == pytest.approx(scale)
    assert enc.fingerprint()[frozen] == fp[frozen]
    assert enc.fingerprint()[branch] != fp[branch]


def test_extra_loss_sees_the_batch_and_steers_training():
    images, captions, _ = _data()
    seen = []

    def pull_text_to_zero(encoder, batch):
        assert isinstance(batch, TrainBatch)
        seen.append((batch.step, len(batch.captions), tuple(batch.image_features.shape)))
        return 10.0 * batch.text_features.pow(2).mean()

    enc = _enc()
    with torch.no_grad():
        before = enc.encode_text(["a red square"]).norm()
    contrastive_train(enc, images, captions, steps=5, batch_size=8, lr=3e-3, warmup=1, trainable="text",
                      extra_loss=pull_text_to_zero, progress=False)
    assert [s[0] for s in seen] == list(range(5))
    assert seen[0][1] == 8 and seen[0][2][0] == 8
    with torch.no_grad():
        assert enc.encode_text(["a red square"]).norm() < before


def test_epochs_uint8_pixels_augment_and_callback():
    images, captions, _ = _data(n=20)
    calls, augmented = [], []

    def augment(pix, gen):
        augmented.append(pix.dtype)
        return pix.flip(-1)

    enc = _enc()
    contrastive_train(enc, (images * 255).to(torch.uint8), captions, epochs=2, batch_size=8, progress=False,
                      augment=augment, callback=lambda step, loss: calls.append((step, loss)))
    assert len(calls) == 5  # ceil(2 * 20 / 8)
    assert augmented and all(d == torch.float32 for d in augmented)


def test_progress_bar_runs():
    images, captions, _ = _data(n=8)
    calls = []
    enc = contrastive_train(_enc(), images, captions, steps=2, batch_size=4, progress=True,
                            callback=lambda step, loss: calls.append(step))
    assert len(calls) == 2 and not enc.model.training  # trained with the bar on, back in eval mode


@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 2, "epochs": 1}, "exactly one of steps or epochs"),
    ({}, "exactly one of steps or epochs"),
    ({"steps": 2, "trainable": "prompt"}, "trainable must be one of"),
])
def test_bad_arguments_are_user_errors(kwargs, match):
    images, captions, _ = _data(n=8)
    with pytest.raises(InvalidInputError, match=match):
        contrastive_train(_enc(), images, captions, progress=False, **kwargs)
    with pytest.raises(InvalidInputError, match="8 images but 7 captions"):
        contrastive_train(_enc(), images, captions[:7], steps=1, progress=False)


def test_clip_loss_and_schedule():
    f = torch.eye(4)
    assert clip_loss(f, f, 100.0) < 1e-3  # perfectly matched pairs
    assert clip_loss(f, f.roll(1, 0), 100.0) > 10
    assert cosine_schedule(0, 100, 10) == pytest.approx(0.1)
    assert cosine_schedule(9, 100, 10) == pytest.approx(1.0)
    assert cosine_schedule(10, 100, 10) == pytest.approx(1.0)
    assert cosine_schedule(55, 100, 10) == pytest.approx(0.5)
    assert cosine_schedule(100, 100, 10) == pytest.approx(0.0)


def test_tokens_are_memoised_during_training_only():
    from dife_core.training import _MemoTokenizer

    enc = _enc()
    original = enc.tokenizer
    memo = _MemoTokenizer(original)
    texts = ["a red square", "xbtd a blue square", "a red square"]
    assert torch.equal(memo(texts), original(texts))
    assert torch.equal(memo(texts[::-1]), original(texts[::-1]))
    images, captions, _ = _data(n=8)
    contrastive_train(enc, images, captions, steps=1, batch_size=4, progress=False)
    assert enc.tokenizer is original
