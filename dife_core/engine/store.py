"""The cell store: one JSON record per line, appended and fsynced as each
cell (or footprint, or clean-utility measurement) finishes.

An interrupted audit loses at most the record being written: a torn last
line is ignored on reading and cut off before the next append. Records carry
a content ``key``; the latest record with a key wins. ``--resume`` reuses
finished records whose key (inputs) is unchanged.

Tamper evidence: each record carries its position (``seq``), the store's id
and an HMAC-SHA256 (``mac``) over its content chained to the previous
record's HMAC. The key is drawn when the store is created and kept in the
output folder (``.dife-store-key``, mode 0600). Reading verifies every line,
so an edited, reordered, deleted-from-the-middle or copied-in (foreign)
record is an error naming its line and key, never reused. This detects
changes by anyone who does not read the key file (a hand edit, a store
copied from elsewhere); it is no defence against someone who can read it.
Cutting records off the end is indistinguishable from an interrupted audit:
the missing cells are simply computed again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Iterator, Optional

from ..errors import DifeError, InvalidInputError
from ..outdir import KEY_FILE, LOCK, STORE, open_nofollow, read_bytes_nofollow, remove_owned, write_bytes_atomic

__all__ = ["STORE", "LOCK", "KEY_FILE", "AuditLock", "CellStore", "TamperedStoreError"]


class TamperedStoreError(InvalidInputError):
    """A store line that is not what this output folder's audits wrote."""


class AuditLock:
    """An exclusive lock on an output folder for the duration of an audit, so
    two audits never interleave records. The OS drops it when the process
    dies (even by SIGKILL), so a killed audit never leaves a stale lock."""

    def __init__(self, out_dir):
        self.path = Path(out_dir) / LOCK
        self._fd = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise DifeError(f"another audit is writing to {self.path.parent}; wait for it or use another --out "
                            f"folder.") from e
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return False


def _canonical(obj: dict) -> bytes:
    # ensure_ascii: a lone surrogate in a record is written escaped, never as invalid UTF-8
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _mac(key: bytes, prev: str, body: bytes) -> str:
    return hmac.new(key, prev.encode() + b"\n" + body, hashlib.sha256).hexdigest()


class CellStore:
    def __init__(self, out_dir, *, fresh: bool = False):
        self.out = Path(out_dir)
        self.path = self.out / STORE
        self.key_path = self.out / KEY_FILE
        if fresh:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_owned(self.out, STORE)
            remove_owned(self.out, KEY_FILE)
        self._fh = None  # opened (and its torn tail cut) on the first append: readers never modify the file
        self._key = None  # (store id, key bytes)
        self._prev = ""  # HMAC of the last record
        self._seq = 0  # position of the next record

    # -- the key -------------------------------------------------------------------------
    def _read_key(self) -> Optional[tuple]:
        if not os.path.lexists(self.key_path):
            return None
        raw = read_bytes_nofollow(self.key_path)
        try:
            d = json.loads(raw)
            sid, key = str(d["store"]), bytes.fromhex(d["key"])
            if len(key) < 16:
                raise ValueError("short key")
        except (ValueError, KeyError, TypeError) as e:
            raise TamperedStoreError(f"{self.key_path} is not a DIFE store key ({type(e).__name__}); the store "
                                     f"cannot be verified. Start again with --force or another --out "
                                     f"folder.") from e
        return sid, key

    def _key_or_create(self) -> tuple:
        if self._key is None:
            self._key = self._read_key()
        if self._key is None:
            if os.path.lexists(self.path) and os.path.getsize(self.path):
                raise self._unkeyed()
            self._key = (secrets.token_hex(8), secrets.token_bytes(32))
            data = json.dumps({"store": self._key[0], "key": self._key[1].hex()}).encode()
            write_bytes_atomic(self.out, KEY_FILE, data, mode=0o600)
        return self._key

    def _unkeyed(self) -> TamperedStoreError:
        return TamperedStoreError(
            f"{self.path} has no key file ({KEY_FILE}) beside it: it was written by an older DIFE or by another "
            f"program, so its records cannot be verified and are not reused. Run the audit again with --force "
            f"(or into another --out folder).")

    # -- reading ---------------------------------------------------------------------
    def _scan(self) -> tuple:
        """Verify every complete line; returns (records, byte length of the verified part)."""
        if not os.path.lexists(self.path):
            return [], 0
        data = read_bytes_nofollow(self.path)
        if not data:
            return [], 0
        key = self._key if self._key is not None else self._read_key()
        if key is None:
            raise self._unkeyed()
        self._key = key
        sid, k = key
        recs, prev, pos = [], "", 0
        for n, line in enumerate(data.splitlines(keepends=True), start=1):
            if not line.endswith(b"\n"):
                break  # torn write: the process died mid-line
            where = f"{self.path} line {n}"
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                raise TamperedStoreError(f"{where} is not a JSON record ({type(e).__name__}); the store was "
                                         f"edited. Start again with --force or another --out folder.") from e
            if not isinstance(obj, dict):
                raise TamperedStoreError(f"{where} is a JSON {type(obj).__name__}, not a record object; the store "
                                         f"was edited. Start again with --force or another --out folder.")
            rkey = obj.get("key")
            label = f"{where} (key {str(rkey)[:40]!r}, type {str(obj.get('type'))[:20]!r})"
            mac = obj.pop("mac", None)
            if obj.get("store") != sid:
                raise TamperedStoreError(f"{label} is foreign: it was not written by this folder's audits "
                                         f"(another store, or no checksum). Start again with --force.")
            if obj.get("seq") != len(recs):
                raise TamperedStoreError(f"{label} is out of place: it is record {obj.get('seq')!r} of the store "
                                         f"but sits at position {len(recs)}; records were reordered or deleted. "
                                         f"Start again with --force.")
            try:
                want = _mac(k, prev, _canonical(obj))
            except (ValueError, TypeError) as e:
                raise TamperedStoreError(f"{label} cannot be checked ({e}); the store was edited.") from e
            if not isinstance(mac, str) or not hmac.compare_digest(mac, want):
                raise TamperedStoreError(f"{label} was edited: its checksum does not match its content (or a "
                                         f"record before it changed). Its values are not reused; start again "
                                         f"with --force.")
            prev = mac
            pos += len(line)
            recs.append(obj)
        self._prev, self._seq = prev, len(recs)
        return recs, pos

    def records(self) -> Iterator[dict]:
        yield from self._scan()[0]

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
        if self._fh is None:
            self._open_for_append()
        sid, k = self._key
        obj = {"type": kind, "key": key, "run": run, "time": round(time.time(), 3), "record": record,
               "store": sid, "seq": self._seq}
        # default=str, then a round trip: the record hashed is exactly the record read back
        obj = json.loads(json.dumps(obj, allow_nan=False, default=str))
        body = _canonical(obj)
        mac = _mac(k, self._prev, body)
        obj["mac"] = mac
        self._fh.write(_canonical(obj) + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._prev, self._seq = mac, self._seq + 1

    def _open_for_append(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self._key_or_create()
        _, good = self._scan()  # verifies the chain and finds its end
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fh = os.fdopen(fd, "r+b")
        if os.fstat(fd).st_size != good:  # cut a torn final line so the next append starts on a fresh line
            fh.truncate(good)
            fh.flush()
            os.fsync(fd)
        fh.seek(0, os.SEEK_END)
        self._fh = fh

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
