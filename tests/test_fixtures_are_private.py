"""Shared test models are handed out as private copies: a test that trains or
edits the one it got never changes what the next test gets."""

from __future__ import annotations

import torch


def _nudge(enc):
    with torch.no_grad():
        next(iter(enc.model.parameters())).add_(1.0)
    enc.invalidate_fingerprint()


def test_easy_clean_hands_out_copies():
    from dife_backdoors.testing import easy_clean

    a = easy_clean()
    before = a.fingerprint()
    _nudge(a)
    b = easy_clean()
    assert b is not a and b.model is not a.model
    assert a.fingerprint() != before and b.fingerprint() == before


def test_clean_test_clip_hands_out_copies(monkeypatch):
    from dife_openclip.testing import tiny_encoder
    from dife_shapes import testing

    monkeypatch.setitem(testing._models, 12345, tiny_encoder("vit", seed=0))  # no training here
    a = testing.clean_test_clip(12345)
    before = a.fingerprint()
    _nudge(a)
    b = testing.clean_test_clip(12345)
    assert b is not a and a.fingerprint() != before and b.fingerprint() == before
