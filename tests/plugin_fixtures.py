"""Helpers that put a real (fake) distribution with a `dife` entry point on sys.path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def make_dist(root: Path, dist: str, module: str, source: str, version: str = "1.2.3",
              ep_name: str | None = None) -> Path:
    """Write ``module.py`` and a ``.dist-info`` declaring it under group ``dife``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[dife]\n{ep_name or module} = {module}\n")
    return root


def run_dife(*args, pythonpath=None, env=None, importtime=False):
    e = dict(os.environ)
    e.pop("DIFE_LOAD_PLUGINS", None)
    e["DIFE_STRICT_PLUGINS"] = "0"
    if pythonpath:
        e["PYTHONPATH"] = os.pathsep.join([str(p) for p in pythonpath] + [e.get("PYTHONPATH", "")])
    if env:
        e.update(env)
    cmd = [sys.executable] + (["-X", "importtime"] if importtime else []) + ["-m", "dife_core", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120)
