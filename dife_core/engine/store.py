"""The cell store: one JSON record per line, appended and fsynced as each
cell (or footprint, or clean-utility measurement) finishes.

An interrupted audit loses at most the record being written: a torn last
line is ignored on reading and cut off before the next append. Records carry
a content ``key``; the latest record with a key wins. ``--resume`` reuses
finished records whose key (inputs) is unchanged.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator, Optional

STORE = "cells.jsonl"
LOCK = ".dife-audit.lock"


class AuditLock:
    """An exclusive lock on an output folder for the duration of an audit, so
    two audits never interleave records. The OS drops it when the process
    dies (even by SIGKILL), so a killed audit never leaves a stale lock."""

    def __init__(self, out_dir):
        self.path = Path(out_dir) / LOCK
        self._fh = None

    def __enter__(self):
        import fcntl

        from ..errors import DifeError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._fh.close()
            self._fh = None
            raise DifeError(f"another audit is writing to {self.path.parent}; wait for it or use another --out "
                            f"folder.") from e
        return self

    def __exit__(self, *exc):
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        return False


class CellStore:
    def __init__(self, out_dir, *, fresh: bool = False):
        self.path = Path(out_dir) / STORE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            self.path.unlink()
        self._fh = None  # opened (and its torn tail cut) on the first append: readers never modify the file

    # -- reading ---------------------------------------------------------------------
    def records(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # torn write: the process died mid-line
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def latest(self, kind: Optional[str] = None) -> dict:
        """key -> latest record (of ``kind``: cell, footprint, utility, plan, run)."""
        out: dict = {}
        for r in self.records():
            if kind is None or r.get("type") == kind:
                out[r.get("key")] = r
        return out

    def last(self, kind: str) -> Optional[dict]:
        rec = None
        for r in self.records():
            if r.get("type") == kind:
                rec = r
        return rec

    # -- writing -----------------------------------------------------------------------
    def append(self, kind: str, key: Optional[str], record: dict, *, run: Optional[str] = None) -> None:
        line = json.dumps({"type": kind, "key": key, "run": run, "time": round(time.time(), 3), "record": record},
                          sort_keys=True, allow_nan=False, default=str)
        if self._fh is None:
            self._repair_tail()
            self._fh = open(self.path, "ab")
        self._fh.write(line.encode("utf-8") + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _repair_tail(self) -> None:
        """Cut a torn final line so the next append starts on a fresh line."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
