"""Test-run settings for the whole repository (core, plugins, contrib)."""

import os

# Keep stray third-party plugins installed in the environment out of the test
# run: only DIFE's own plugins and the contrib template load.
FIRST_PARTY = "openclip,hfclip,shapes,backdoors,badtexttower,interfaces_extra,scan,plugin_template"
os.environ.setdefault("DIFE_LOAD_PLUGINS", FIRST_PARTY)
os.environ.setdefault("DIFE_STRICT_PLUGINS", "1")

# One torch thread count for the whole run, set once here: modules that set
# their own at import time overrode each other in collection order (the last
# one imported, 1 thread, won for every test). Two threads match the 2-core CI
# machine and the benchmarks; DIFE_TEST_THREADS overrides (e.g. 1 on a busy box).
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("DIFE_TEST_THREADS") or min(2, os.cpu_count() or 1)))


def pytest_configure(config):
    # `gpu`: the CUDA / bf16 paths; they run wherever torch.cuda.is_available()
    # and skip elsewhere (`make test-gpu` runs only them, failing without a GPU)
    config.addinivalue_line("markers", "gpu: needs a CUDA device (make test-gpu)")
