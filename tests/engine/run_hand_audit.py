"""Run `dife audit` on the hand-made world in a fresh process (resume tests).

usage: python run_hand_audit.py SPEC OUT [--resume]

With HAND_PAUSE_AFTER_CELLS=N in the environment the audit stops right after
its N-th cell record is on disk: it prints ``paused`` on stdout and blocks, so
a test can kill it at that exact point (an event, not a timer).
"""

import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from dife_core.cli import main  # noqa: E402
from dife_core.plugins import get_registry  # noqa: E402
from tests.engine.handmade import HandPlugin  # noqa: E402

torch.set_num_threads(1)
get_registry().register_object(HandPlugin(), "hand")

PAUSE = int(os.environ.get("HAND_PAUSE_AFTER_CELLS") or 0)
if PAUSE:
    from dife_core.engine import store

    _append = store.CellStore.append
    cells = [0]

    def append(self, kind, key, record, **kw):
        _append(self, kind, key, record, **kw)
        cells[0] += kind == "cell"
        if kind == "cell" and cells[0] == PAUSE:
            print("paused", flush=True)
            threading.Event().wait()  # until the test kills this process

    store.CellStore.append = append
main(["audit", sys.argv[1], "--out", sys.argv[2], "--no-progress", *sys.argv[3:]])
