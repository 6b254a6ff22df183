"""Run `dife audit` on the hand-made world in a fresh process (resume tests).

usage: python run_hand_audit.py SPEC OUT [--resume]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from dife_core.cli import main  # noqa: E402
from dife_core.plugins import get_registry  # noqa: E402
from tests.engine.handmade import HandPlugin  # noqa: E402

torch.set_num_threads(1)
get_registry().register_object(HandPlugin(), "hand")
main(["audit", sys.argv[1], "--out", sys.argv[2], "--no-progress", *sys.argv[3:]])
