"""Craft hostile checkpoint files for the safe-loading tests.

Every pickle payload, if ever executed, creates ``sentinel`` -- the tests
assert that file never appears. ``PAYLOADS`` maps a case name to a function
``(sentinel: Path) -> object`` whose pickling embeds the payload.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import struct
import subprocess
import zipfile
from pathlib import Path


class _Reduce:
    """An object that pickles as ``fn(*args)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _touch_code(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').close()"


PAYLOADS = {
    "os.system": lambda s: _Reduce(os.system, f"touch {s}"),
    "eval": lambda s: _Reduce(builtins.eval, _touch_code(s)),
    "subprocess": lambda s: _Reduce(subprocess.call, ["touch", str(s)]),
    "builtins.exec": lambda s: _Reduce(builtins.exec, _touch_code(s)),
    # a harmless-looking outer pickle that unpickles an inner malicious one
    "nested-pickle": lambda s: _Reduce(pickle.loads, pickle.dumps(_Reduce(os.system, f"touch {s}"), protocol=2)),
}

#: the global each payload makes the unpickler import
PAYLOAD_GLOBAL = {
    "os.system": "system",
    "eval": "eval",
    "subprocess": "subprocess",
    "builtins.exec": "exec",
    "nested-pickle": "loads",
}


def state_dict_with(payload, tensors=None) -> dict:
    """A plausible state dict with the payload hidden among real tensors."""
    import torch

    sd = dict(tensors or {"visual.proj": torch.zeros(2, 2), "text_projection": torch.ones(2, 2)})
    sd["_extra_state"] = payload
    return sd


def write_torch_zip(path: Path, obj) -> Path:
    import torch

    torch.save(obj, path)
    return path


def write_legacy(path: Path, obj) -> Path:
    """A legacy (non-zip) torch.save file."""
    import torch

    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


def write_raw_pickle(path: Path, obj, protocol: int = 2) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def rezip(src: Path, dst: Path, *, compress: bool = False, duplicate: bool = False) -> Path:
    """Rewrite a torch zip: deflate its members, or add a second data.pkl with the same name."""
    with zipfile.ZipFile(src) as zin:
        members = [(i, zin.read(i)) for i in zin.infolist()]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is the point
        with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zout:
            for info, data in members:
                zout.writestr(info.filename, data)
            if duplicate:
                pkl = next(i for i, _ in members if i.filename.endswith("data.pkl"))
                zout.writestr(pkl.filename, b"\x80\x02}q\x00.")
    return dst


def polyglot(path: Path, pickle_bytes: bytes, zip_path: Path) -> Path:
    """A pickle with a zip archive appended: two readers, two contents."""
    path.write_bytes(pickle_bytes + zip_path.read_bytes())
    return path


# -- safetensors ---------------------------------------------------------------

def safetensors_bytes(header: dict, data: bytes, *, declared_len: int | None = None, pad: bool = True) -> bytes:
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    n = len(raw) if declared_len is None else declared_len
    return struct.pack("<Q", n) + raw + data


def f32(n: int) -> bytes:
    return b"\x00" * (4 * n)


MALFORMED_SAFETENSORS = {
    "oversized-header-length": lambda: struct.pack("<Q", 2**62) + b"{}",
    "header-past-end-of-file": lambda: safetensors_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                                                         f32(2), declared_len=10_000),
    "overlapping-offsets": lambda: safetensors_bytes(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32(3)),
    "bad-json": lambda: struct.pack("<Q", 16) + b'{"a": {"dtype":,',
    "unknown-dtype": lambda: safetensors_bytes(
        {"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, f32(2)),
    "shape-size-mismatch": lambda: safetensors_bytes(
        {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, f32(2)),
    "offsets-past-end": lambda: safetensors_bytes(
        {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32(2)),
    "truncated-data": lambda: safetensors_bytes(
        {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32(4))[:-5],
    "gap-between-tensors": lambda: safetensors_bytes(
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
         "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, f32(3)),
    "duplicate-key": lambda: _dup_key_file(),
    "header-not-object": lambda: safetensors_bytes([1, 2], b""),  # type: ignore[arg-type]
    "too-short": lambda: b"\x01\x00",
    "negative-shape": lambda: safetensors_bytes({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b""),
}


def _dup_key_file() -> bytes:
    raw = (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
           b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}')
    return struct.pack("<Q", len(raw)) + raw + f32(1)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


__all__ = ["PAYLOADS", "PAYLOAD_GLOBAL", "MALFORMED_SAFETENSORS"]
