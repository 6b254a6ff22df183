"""Shared fixtures for test suites: the test world and the clean test-recipe CLIP.

Training the test recipe takes about 45 s, so a test process trains it
once and every test gets a private copy (attacks train their copy in place).
The checkpoint goes to ``$DIFE_CACHE_DIR`` when set (reused across runs),
else to a temporary folder removed when the process exits; nothing is
written to the home folder.

    from dife_shapes.testing import clean_test_clip, shapes_test_world

    def test_my_attack():
        world = shapes_test_world()
        clean = clean_test_clip()
"""

from __future__ import annotations

import atexit
import copy
import functools
import os
import shutil
import tempfile
import threading

_lock = threading.Lock()
_models: dict = {}
_tmp_dir = None


@functools.lru_cache(maxsize=4)
def shapes_test_world(seed: int = 0):
    """``make_world("test", seed)``, built once per process (treat it as read-only)."""
    from .world import make_world

    return make_world("test", seed)


def _cache_dir():
    global _tmp_dir
    if os.environ.get("DIFE_CACHE_DIR"):
        return os.environ["DIFE_CACHE_DIR"]
    if _tmp_dir is None:
        _tmp_dir = tempfile.mkdtemp(prefix="dife-test-cache-")
        atexit.register(shutil.rmtree, _tmp_dir, True)
    return _tmp_dir


def clean_test_clip(seed: int = 0):
    """A private copy of the clean test-recipe CLIP (trained once per process)."""
    with _lock:
        if seed not in _models:
            from .recipe import clean_clip

            _models[seed] = clean_clip("test", seed, cache_dir=_cache_dir(), progress=False)
    enc = copy.deepcopy(_models[seed])
    enc.invalidate_fingerprint()
    return enc
