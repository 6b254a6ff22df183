"""Loading weights from files a stranger wrote, without running their code.

Two formats reach DIFE:

* **safetensors** -- no code at all, but the header is attacker-controlled
  JSON that tells the reader how much to allocate and where to read. We check
  it ourselves (length bound, JSON, dtypes, shapes, offsets) *before* the
  safetensors library maps anything (:func:`validate_safetensors`).
* **pickle** (``torch.save`` zip archives, legacy non-zip pickles, HF
  ``pytorch_model.bin``) -- read only through ``torch.load(weights_only=True)``.
  A file that needs any other global is refused with
  :class:`~dife_core.errors.UnsafeCheckpointError` naming the global; nothing
  in it has run. ``trust=True`` (``--trust-checkpoint``) is the only way past
  that refusal and it warns. There is no silent retry with
  ``weights_only=False``.

Every format problem becomes :class:`~dife_core.errors.InvalidInputError`
(exit 2); every safety refusal :class:`~dife_core.errors.UnsafeCheckpointError`
(exit 3). Nothing here imports torch at module import.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import pickletools
import re
import struct
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import attrs

from .errors import InvalidInputError, NotFoundError, UnsafeCheckpointError
from .untrusted import limit

#: The safetensors library refuses headers above 100 MB; so do we.
MAX_HEADER_BYTES = 100_000_000
#: torch >= 2.10 carries the weights_only unpickler fixes we rely on.
MIN_TORCH = (2, 10)

#: safetensors dtype name -> bits per element.
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")

_ZIP_MAGIC = b"PK\x03\x04"


class TrustWarning(UserWarning):
    """Emitted when a checkpoint is loaded with ``trust=True`` past a refusal."""


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------

@attrs.frozen
class TensorInfo:
    name: str
    dtype: str
    shape: tuple
    begin: int
    end: int


@attrs.frozen
class SafetensorsHeader:
    """A validated safetensors header."""

    path: str
    header_len: int
    tensors: tuple  # of TensorInfo, in file order
    metadata: dict

    @property
    def names(self) -> list:
        return [t.name for t in self.tensors]

    def numel(self, name_filter=None) -> int:
        return sum(math.prod(t.shape) for t in self.tensors if name_filter is None or name_filter(t.name))


def _no_duplicate_keys(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError(f"duplicate key {k!r}")
        seen[k] = v
    return seen


def validate_safetensors(path) -> SafetensorsHeader:
    """Check a safetensors file's header against the file, without allocating
    tensors. Raises :class:`InvalidInputError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such file.")
    size = path.stat().st_size
    where = str(path)
    if size < 8:
        raise InvalidInputError(
            f"{where}: not a safetensors file (only {size} bytes; the 8-byte header length is missing).")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        cap = min(MAX_HEADER_BYTES, limit("header_bytes"))
        if n > cap:
            raise InvalidInputError(
                f"{where}: safetensors header length {n} exceeds the {cap}-byte limit (oversized or corrupt header; "
                f"limit header_bytes).")
        if n > size - 8:
            raise InvalidInputError(
                f"{where}: safetensors header length {n} runs past the end of the file ({size} bytes); "
                f"the file is truncated or corrupt.")
        if n < 2:
            raise InvalidInputError(f"{where}: safetensors header of {n} bytes is too short to hold JSON.")
        raw = f.read(n)
    if not raw.startswith(b"{"):
        raise InvalidInputError(f"{where}: safetensors header does not start with '{{' (not JSON).")
    # count entries before parsing: a million-tensor header costs seconds and GiBs to parse
    approx = raw.count(b'"data_offsets"')
    if approx > limit("tensors"):
        raise InvalidInputError(f"{where}: safetensors header lists about {approx:,} tensors, over the bound "
                                f"(limit tensors={limit('tensors')}; raise it with --limit tensors=N).")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InvalidInputError(f"{where}: safetensors header is not valid JSON ({e}).") from e
    if not isinstance(header, dict):
        raise InvalidInputError(f"{where}: safetensors header must be a JSON object, got {type(header).__name__}.")
    data_len = size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise InvalidInputError(f"{where}: safetensors '__metadata__' must map strings to strings.")
    infos = []
    if len(header) > limit("tensors"):
        raise InvalidInputError(f"{where}: safetensors header lists {len(header):,} tensors, over the bound "
                                f"(limit tensors={limit('tensors')}).")
    for name, entry in header.items():
        check_tensor_name(name, where)
        loc = f"{where}: tensor {name!r}"
        if not isinstance(entry, dict):
            raise InvalidInputError(f"{loc}: header entry must be an object with dtype, shape, data_offsets.")
        missing = {"dtype", "shape", "data_offsets"} - set(entry)
        if missing:
            raise InvalidInputError(f"{loc}: header entry lacks {', '.join(sorted(missing))}.")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPE_BITS:
            raise InvalidInputError(
                f"{loc}: unknown dtype {dtype!r}; known: {', '.join(sorted(SAFETENSORS_DTYPE_BITS))}.")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise InvalidInputError(f"{loc}: shape must be a list of non-negative integers, got {str(shape)[:80]}.")
        if len(shape) > limit("tensor_dims"):
            raise InvalidInputError(
                f"{loc}: {len(shape)} dimensions, over the bound (limit tensor_dims={limit('tensor_dims')}).")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int for o in offsets)):
            raise InvalidInputError(f"{loc}: data_offsets must be two integers, got {offsets!r}.")
        begin, end = offsets
        if not 0 <= begin <= end:
            raise InvalidInputError(f"{loc}: data_offsets {offsets} are not an increasing pair.")
        if end > data_len:
            raise InvalidInputError(
                f"{loc}: data_offsets {offsets} point past the end of the data ({data_len} bytes); "
                f"the file is truncated or corrupt.")
        bits = math.prod(shape) * SAFETENSORS_DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != end - begin:
            raise InvalidInputError(
                f"{loc}: shape {shape} x {dtype} needs {bits / 8:g} bytes but data_offsets span {end - begin}.")
        infos.append(TensorInfo(name, dtype, tuple(shape), begin, end))
    # Tensors must tile the data exactly: no overlap (two names aliasing the
    # same bytes), no gap, no trailing bytes -- the safetensors rule.
    pos = 0
    prev = None
    for t in sorted(infos, key=lambda t: (t.begin, t.end)):
        if t.begin < pos:
            raise InvalidInputError(f"{where}: tensors {prev.name!r} and {t.name!r} overlap "
                                    f"(data_offsets {prev.begin}-{prev.end} and {t.begin}-{t.end}).")
        if t.begin > pos:
            raise InvalidInputError(
                f"{where}: {t.begin - pos} unaccounted bytes before tensor {t.name!r} (gap in data_offsets).")
        pos, prev = t.end, t
    if pos != data_len:
        raise InvalidInputError(f"{where}: {data_len - pos} trailing bytes after the last tensor; "
                                f"the header does not describe the whole file.")
    return SafetensorsHeader(str(path), n, tuple(sorted(infos, key=lambda t: t.begin)), dict(metadata))


def check_tensor_name(name, where: str) -> None:
    """Tensor names are short strings (a 200k-character name is an attack on whatever prints or sorts it)."""
    if not isinstance(name, str):
        raise InvalidInputError(f"{where}: tensor name {str(name)[:40]!r} is not a string.")
    if len(name) > limit("tensor_name_chars"):
        raise InvalidInputError(f"{where}: a tensor name of {len(name):,} characters ({name[:40]!r}...) "
                                f"is over the bound (limit tensor_name_chars={limit('tensor_name_chars')}).")


def load_safetensors(path, *, device: str = "cpu", check_values: bool = True) -> dict:
    """Validate, then load a safetensors file into ``{name: tensor}``; non-finite
    values are refused (see :func:`check_finite`)."""
    validate_safetensors(path)
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path), device=str(device))
    except Exception as e:  # the library's own checks, or a dtype torch lacks
        raise InvalidInputError(f"{path}: safetensors could not load the file ({type(e).__name__}: {e}).") from e
    if check_values:
        check_finite(sd, str(path))
    return sd


# ---------------------------------------------------------------------------
# what loaded tensors may be
# ---------------------------------------------------------------------------

class NonFiniteWeightsError(InvalidInputError):
    """Weights hold NaN or Inf: every figure computed from them would be meaningless."""

    def __init__(self, message: str, *, where: str = "", tensors: tuple = ()):
        super().__init__(message)
        self.where, self.tensors = where, tuple(tensors)


_nonfinite_findings = contextvars.ContextVar("dife_nonfinite_findings", default=None)


@contextlib.contextmanager
def collect_nonfinite():
    """Within this block, non-finite weights are recorded (yielded list of
    ``{"file", "tensor", "nan", "inf"}``) instead of refused -- for ``dife
    inspect``, which reports them as a finding."""
    found: list = []
    token = _nonfinite_findings.set(found)
    try:
        yield found
    finally:
        _nonfinite_findings.reset(token)


def check_finite(sd: dict, where: str) -> None:
    """Refuse (or, under :func:`collect_nonfinite`, record) NaN/Inf in floating tensors."""
    import torch

    bad = []
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()) or t.device.type == "meta":
            continue
        if not bool(torch.isfinite(t).all()):
            bad.append((name, int(torch.isnan(t).sum()), int(torch.isinf(t).sum())))
    if not bad:
        return
    sink = _nonfinite_findings.get()
    if sink is not None:
        sink.extend({"file": where, "tensor": n, "nan": a, "inf": b} for n, a, b in bad)
        return
    n, a, b = bad[0]
    more = f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else ""
    raise NonFiniteWeightsError(
        f"{where}: tensor {n!r} holds non-finite values ({a} NaN, {b} Inf){more}; every score computed from these "
        f"weights would be meaningless, so the checkpoint is refused.", where=where, tensors=[x[0] for x in bad])


def check_views(sd: dict, where: str) -> None:
    """Refuse stride tricks: a tensor whose view needs more memory than its
    storage holds (stride-0 expansions, overlapping strides, spans past the
    storage). Materialising one would allocate what the file never held."""
    import torch

    if len(sd) > limit("tensors"):
        raise InvalidInputError(f"{where}: {len(sd):,} tensors, over the bound (limit tensors={limit('tensors')}).")
    storages: dict = {}
    total_view = 0
    for name, t in sd.items():
        check_tensor_name(name, where)
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            continue
        if t.ndim > limit("tensor_dims"):
            raise InvalidInputError(
                f"{where}: tensor {name!r} has {t.ndim} dimensions (limit tensor_dims={limit('tensor_dims')}).")
        st = t.untyped_storage()
        esize = t.element_size()
        nbytes = st.nbytes()
        numel = t.numel()
        if numel:
            if (any(s == 0 and n > 1 for s, n in zip(t.stride(), t.shape, strict=True))
                    or any(s < 0 for s in t.stride())):
                raise InvalidInputError(
                    f"{where}: tensor {name!r} is malformed: a stride-0 (or negative-stride) view of shape "
                    f"{tuple(t.shape)} over {nbytes} stored bytes; refused rather than expanded.")
            span = (t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True)) + 1) * esize
            if span > nbytes or numel * esize > nbytes:
                raise InvalidInputError(
                    f"{where}: tensor {name!r} is malformed: its view "
                    f"(shape {tuple(t.shape)}, stride {tuple(t.stride())}) "
                    f"needs {numel * esize:,} bytes but its storage holds {nbytes:,}.")
        storages[st.data_ptr()] = nbytes
        total_view += numel * esize
    stored = sum(storages.values())
    # tied weights share storage legitimately; many full views of one storage do not
    if total_view > 2 * stored + 2 ** 20:
        raise InvalidInputError(
            f"{where}: its tensors view {total_view:,} bytes of {stored:,} stored "
            f"(many tensors alias the same storage); refused as malformed.")


# ---------------------------------------------------------------------------
# pickle
# ---------------------------------------------------------------------------

@attrs.frozen
class PickleScan:
    """What a static look at a pickle-based file found (nothing executed)."""

    container: str  # "torch-zip" or "legacy-pickle"
    globals: tuple  # every "module.name" the pickle would import, in order
    suspicious: tuple  # those outside torch's weights_only allowlist
    parse_error: Optional[str] = None  # the stream is not a well-formed pickle


def _allowed_global_names() -> set:
    """Names torch's weights_only unpickler accepts (best effort; private API)."""
    try:
        from torch import _weights_only_unpickler as wou

        names = set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())
    except Exception:
        names = set()
    return names


def _is_torch_name(name: str) -> bool:
    # torch storages, dtypes and tensor rebuild helpers; the unpickler checks these itself
    return name.startswith("torch.") or name.startswith("torch._utils.")


def _scan_globals(data: bytes, *, max_pickles: int = 1) -> tuple:
    """Every global a pickle stream references, found with pickletools (no execution).

    STACK_GLOBAL takes module and name from the two strings pushed before it
    (possibly through the memo), so we track string pushes and memo puts.
    """
    import io

    found = []
    error = None
    f = io.BytesIO(data)
    for _ in range(max_pickles):
        if f.tell() >= len(data):
            break
        strings: list = []
        memo: dict = {}
        try:
            for op, arg, _pos in pickletools.genops(f):
                name = op.name
                if name in ("GLOBAL", "INST") and isinstance(arg, str):
                    found.append(arg.replace(" ", ".", 1))
                elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                              "STRING", "BINSTRING", "SHORT_BINSTRING"):
                    strings.append(arg if isinstance(arg, str) else str(arg))
                elif name in ("MEMOIZE",):
                    if strings:
                        memo[len(memo)] = strings[-1]
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    if strings:
                        memo[arg] = strings[-1]
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    if arg in memo:
                        strings.append(memo[arg])
                elif name == "STACK_GLOBAL":
                    if len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    else:
                        found.append("<unknown>.<stack-global>")
                elif name == "STOP":
                    break
        except Exception as e:  # malformed stream: whatever we saw so far is still worth naming
            error = f"{type(e).__name__}: {e}"
            break
    return found, error


def _py3_name(dotted: str) -> str:
    """The global Python 3 would import for a pickled name: protocol-2 pickles
    spell ``subprocess.call`` as ``commands.call`` and ``eval`` as
    ``__builtin__.eval``, and the unpickler maps them back."""
    import _compat_pickle

    module, _, name = dotted.rpartition(".")
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def scan_pickle(path) -> PickleScan:
    """Statically list the globals a pickle-based checkpoint references.

    Checks the container the way ``torch.load`` will see it: a file is a
    torch zip archive only if it *starts* with a zip local header (so a
    pickle with a zip appended -- a polyglot -- is rejected here rather than
    read two different ways).
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such file.")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC:
        data = _read_torch_zip_pickle(path)
        container = "torch-zip"
        found, error = _scan_globals(data)
    else:
        if zipfile.is_zipfile(path):
            raise InvalidInputError(
                f"{path}: a zip archive is embedded after non-zip data (a polyglot file); "
                f"torch and zip readers would disagree on its content.")
        with open(path, "rb") as f:
            data = f.read(64 * 1024 * 1024)  # the pickles precede raw storage bytes in legacy files
        container = "legacy-pickle"
        # legacy torch.save: magic number, protocol, sys info, the object, storage keys
        found, error = _scan_globals(data, max_pickles=5)
    found = [_py3_name(g) for g in found]
    allowed = _allowed_global_names()
    suspicious = tuple(dict.fromkeys(g for g in found if g not in allowed and not _is_torch_name(g)))
    return PickleScan(container, tuple(dict.fromkeys(found)), suspicious, error)


def _read_torch_zip_pickle(path: Path) -> bytes:
    """Check a torch zip archive's layout and return its ``data.pkl`` bytes."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                dup = sorted({n for n in names if names.count(n) > 1})
                raise InvalidInputError(
                    f"{path}: zip archive has duplicate members {dup[:3]} (a zip trick; torch would read only one).")
            if _looks_torchscript(names):
                raise InvalidInputError(
                    f"{path}: a TorchScript archive (torch.jit.save: it carries code/ and constants.pkl), not a "
                    f"torch.save state dict; DIFE reads its parameters with read_torchscript (no code runs).")
            roots = {n.split("/", 1)[0] for n in names}
            pkls = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
            if len(roots) != 1 or len(pkls) != 1:
                raise InvalidInputError(
                    f"{path}: not a torch.save archive (expected one top folder with one data.pkl; "
                    f"found folders {sorted(roots)[:5]} and {len(pkls)} data.pkl).")
            for i in infos:
                if i.compress_type != zipfile.ZIP_STORED:
                    raise InvalidInputError(
                        f"{path}: zip member {i.filename!r} is compressed; torch.save never compresses, "
                        f"so this archive was altered.")
                if i.file_size > size or i.header_offset > size:
                    raise InvalidInputError(
                        f"{path}: zip member {i.filename!r} claims {i.file_size} bytes at offset {i.header_offset}, "
                        f"beyond the {size}-byte file.")
            return zf.read(pkls[0])
    except InvalidInputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise InvalidInputError(f"{path}: damaged zip archive ({type(e).__name__}: {e}).") from e


_GLOBAL_RE = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


def _torch_ok() -> bool:
    import torch

    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= MIN_TORCH


def _warn_trust(path, what: str) -> None:
    msg = f"loading {path} with trust: {what}. Code in this file may run."
    warnings.warn(msg, TrustWarning, stacklevel=3)
    print(f"dife: warning: {msg}", file=sys.stderr)


def load_pickle(path, *, trust: bool = False, map_location: str = "cpu"):
    """Load a pickle-based checkpoint with ``torch.load(weights_only=True)``.

    Refuses (``UnsafeCheckpointError``) a file that needs any global outside
    torch's weights_only allowlist, naming it. With ``trust=True`` the refusal
    becomes a warning and the file is loaded with ``weights_only=False``.
    """
    import pickle

    import torch

    path = Path(path)
    scan = scan_pickle(path)  # container checks; raises on zip tricks
    if not _torch_ok():
        if not trust:
            raise UnsafeCheckpointError(
                f"{path}: pickle checkpoints need torch >= {'.'.join(map(str, MIN_TORCH))} for safe loading; "
                f"this is torch {torch.__version__}.",
                hint="Convert the file to safetensors, or pass --trust-checkpoint if you trust its author.")
        _warn_trust(path, f"torch {torch.__version__} lacks the safe-unpickler fixes")
        return torch.load(str(path), map_location=map_location, weights_only=False)
    try:
        with warnings.catch_warnings():
            # torch nags about protocol-4 pickles; the verdict below says what matters
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(str(path), map_location=map_location, weights_only=True,
                              mmap=scan.container == "torch-zip")
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" not in text and "weights_only" not in text:
            raise InvalidInputError(f"{path}: not a readable pickle ({_first_line(text)}).") from e
        # torch names the first global it blocked; the static scan adds the rest
        m = _GLOBAL_RE.search(text)
        offending = list(dict.fromkeys(([m.group(1)] if m else []) + list(scan.suspicious)))
        if not offending and scan.parse_error:
            raise InvalidInputError(f"{path}: not a well-formed pickle ({scan.parse_error}).") from None
        what = ((("needs the global " if len(offending) == 1 else "needs the globals ") + ", ".join(offending))
                if offending else
                ("uses pickle features the safe loader does not accept (" + _reason(text) + ")"))
        if not trust:
            raise UnsafeCheckpointError(
                f"{path}: refused, loading it would run code: the pickle {what}. Nothing from it was executed.",
                hint="Pass --trust-checkpoint (trust=True) only if you trust whoever wrote this file.") from None
        _warn_trust(path, f"the pickle {what}")
        return torch.load(str(path), map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise InvalidInputError(
            f"{path}: damaged or truncated checkpoint ({type(e).__name__}: {_first_line(str(e))}).") from e


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else "no detail"


def _reason(text: str) -> str:
    for ln in text.splitlines():
        ln = ln.strip()
        if ln.startswith("Unsupported") or ln.startswith("Trying to") or "not an allowed" in ln:
            return ln[:300]
    return "WeightsUnpickler error"


# ---------------------------------------------------------------------------
# state dicts from any supported weight file
# ---------------------------------------------------------------------------

def weight_format(path) -> str:
    """``"safetensors"``, ``"torch-zip"``, ``"torchscript"``, ``"legacy-pickle"`` or ``"unknown"`` by content."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as zf:
                if _looks_torchscript(zf.namelist()):
                    return "torchscript"
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
            pass  # the torch-zip checks name the damage
        return "torch-zip"
    # safetensors: u64 header length that fits the file, then a JSON object
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= path.stat().st_size - 8:
        return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol >= 2
        return "legacy-pickle"
    if path.suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    return "unknown"


def unwrap_state_dict(obj, *, where: str) -> dict:
    """The tensor mapping inside a loaded checkpoint object.

    Accepts a plain ``{name: tensor}`` or the usual wrappers (``state_dict``,
    ``model``, ``model_state_dict``), strips a DataParallel ``module.`` prefix.
    """
    import torch

    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            for key in ("state_dict", "model_state_dict", "model", "module"):
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, dict):
        raise InvalidInputError(
            f"{where}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}.")
    sd = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not sd:
        raise InvalidInputError(f"{where}: holds no tensors (keys: {sorted(map(str, obj))[:8]}).")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_state_dict(path, *, trust: bool = False, device: str = "cpu") -> dict:
    """``{name: tensor}`` from a safetensors or pickle weight file, loaded safely."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such weight file.")
    fmt = weight_format(path)
    if fmt == "safetensors":
        return load_safetensors(path, device=device)
    if fmt == "torchscript":
        sd = read_torchscript(path)
    elif fmt in ("torch-zip", "legacy-pickle"):
        obj = load_pickle(path, trust=trust, map_location="cpu")
        sd = unwrap_state_dict(obj, where=str(path))
    else:
        sd = None
    if sd is not None:
        check_views(sd, str(path))
        check_finite(sd, str(path))
        return {k: v.to(device) for k, v in sd.items()} if str(device) != "cpu" else sd
    raise InvalidInputError(
        f"{path}: unrecognised weight file (neither safetensors nor a torch pickle); "
        f"supported: {', '.join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)}.")


# ---------------------------------------------------------------------------
# TorchScript archives (OpenAI's original CLIP .pt files)
# ---------------------------------------------------------------------------

_TS_STORAGES = {
    "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16", "DoubleStorage": "float64",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool",
}
_TS_IDENTITY = ("restore_type_tag", "build_intlist", "build_doublelist", "build_boollist", "build_tensorlist")
_TS_CLASS_RE = re.compile(r"^class (\w+)\(Module\):\n((?:  .*\n|\n)*?)(?=^\S|\Z)", re.M)
_TS_LIST_RE = re.compile(r"^  __(parameters|buffers)__ = \[(.*?)\]", re.M)


def _looks_torchscript(names) -> bool:
    """torch.jit.save archives carry ``<root>/code/`` and ``<root>/constants.pkl``; torch.save ones never do."""
    return any(re.match(r"^[^/]+/(code/|constants\.pkl$)", n) for n in names)


class _ScriptObject:
    """Stand-in for a TorchScript class instance: holds its pickled attributes, runs nothing."""

    qualname = "?"

    def __setstate__(self, state):
        self.__dict__["state"] = state


def _read_member(zf, info, cap: int, where: str) -> bytes:
    if info.file_size > cap:
        raise InvalidInputError(f"{where}: zip member {info.filename!r} claims {info.file_size:,} bytes, over "
                                f"{cap:,} (limit archive_ratio={limit('archive_ratio')}); refused as a zip bomb.")
    with zf.open(info) as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise InvalidInputError(f"{where}: zip member {info.filename!r} inflates past its declared size; refused.")
    return data


def _script_classes(zf, root: str, cap: int, where: str) -> dict:
    """``{"__torch__.mod.Class": (parameters, buffers)}`` from the archive's code files, read as text (never run)."""
    out = {}
    for info in zf.infolist():
        n = info.filename
        if not (n.startswith(f"{root}/code/") and n.endswith(".py")):
            continue
        module = n[len(root) + len("/code/"):-3].replace("/", ".")
        text = _read_member(zf, info, cap, where).decode("utf-8", "replace")
        for m in _TS_CLASS_RE.finditer(text):
            lists = {k: [x.strip().strip('"') for x in v.split(",") if x.strip()]
                     for k, v in _TS_LIST_RE.findall(m.group(2))}
            out[f"{module}.{m.group(1)}"] = (set(lists.get("parameters", ())), set(lists.get("buffers", ())))
    return out


def read_torchscript(path) -> dict:
    """The parameters (and buffers) of a TorchScript archive as ``{name: tensor}``.

    Reads ``data.pkl`` with an unpickler that knows only tensor rebuilds,
    storages and stand-ins for the archive's classes: no TorchScript code is
    compiled or run and ``torch.jit.load`` is never called. Parameter names
    come from the attribute paths (``visual.conv1.weight``), so OpenAI's
    original CLIP files give the OpenAI state dict open_clip converts.
    Causal attention masks (``attn_mask`` buffers, -inf by design) are left
    out: models rebuild them from the architecture.
    """
    import collections
    import io
    import pickle

    import torch

    path = Path(path)
    where = str(path)
    size = path.stat().st_size
    cap = size * limit("archive_ratio") + 2 ** 20
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise InvalidInputError(f"{where}: damaged TorchScript archive ({type(e).__name__}: {e}).") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"{where}: TorchScript archive has duplicate zip members (a zip trick).")
        if sum(i.file_size for i in infos) > cap:
            raise InvalidInputError(f"{where}: TorchScript archive inflates to {sum(i.file_size for i in infos):,} "
                                    f"bytes from {size:,} (limit archive_ratio={limit('archive_ratio')}); "
                                    f"refused as a zip bomb.")
        pkls = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
        if len(pkls) != 1:
            raise InvalidInputError(f"{where}: TorchScript archive without exactly one <root>/data.pkl.")
        root = pkls[0].filename.split("/", 1)[0]
        classes = _script_classes(zf, root, cap, where)
        storages: dict = {}
        kinds: dict = {}

        def rebuild(storage, offset, shape, stride, *_rest):
            if not (isinstance(storage, tuple) and len(storage) == 2 and isinstance(offset, int)
                    and isinstance(shape, tuple) and isinstance(stride, tuple) and len(shape) == len(stride)
                    and all(type(x) is int for x in shape + stride)):
                raise ValueError("tensor record is not (storage, offset, shape, stride)")
            st, dtype = storage
            return torch.empty((0,), dtype=dtype).set_(st, offset, shape, stride)

        class Reader(pickle.Unpickler):
            def find_class(self, module, name):
                if module == "torch._utils" and name == "_rebuild_tensor_v2":
                    return rebuild
                if module == "collections" and name == "OrderedDict":
                    return collections.OrderedDict
                if module == "torch" and name in _TS_STORAGES:
                    return getattr(torch, _TS_STORAGES[name])
                if module == "torch.jit._pickle" and name in _TS_IDENTITY:
                    return lambda value, *_: value
                if module == "__torch__" or module.startswith("__torch__."):
                    qn = f"{module}.{name}"
                    if qn not in kinds:
                        if len(kinds) > 100_000:
                            raise ValueError("too many classes")
                        kinds[qn] = type("ScriptObject", (_ScriptObject,), {"qualname": qn})
                    return kinds[qn]
                raise pickle.UnpicklingError(f"global {module}.{name} is not part of a TorchScript module's data")

            def persistent_load(self, pid):
                if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                        and isinstance(pid[1], torch.dtype) and isinstance(pid[2], str) and pid[2].isdigit()
                        and type(pid[4]) is int):
                    raise ValueError(f"unexpected persistent id {str(pid)[:80]}")
                _, dtype, key, _loc, numel = pid
                if key not in storages:
                    try:
                        info = zf.getinfo(f"{root}/data/{key}")
                    except KeyError:
                        raise ValueError(f"storage {key} is missing from the archive") from None
                    raw = _read_member(zf, info, cap, where)
                    esize = torch.empty((), dtype=dtype).element_size()
                    if len(raw) != numel * esize:
                        raise ValueError(f"storage {key} holds {len(raw)} bytes, not {numel} x {esize}")
                    storages[key] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).untyped_storage() if raw \
                        else torch.UntypedStorage(0)
                return (storages[key], dtype)

        try:
            top = Reader(io.BytesIO(_read_member(zf, pkls[0], cap, where))).load()
        except InvalidInputError:
            raise
        except RecursionError:
            raise InvalidInputError(f"{where}: TorchScript data.pkl nests too deeply.") from None
        except Exception as e:  # unpickling errors, bad records
            raise InvalidInputError(f"{where}: TorchScript archive whose data.pkl DIFE cannot read as module "
                                    f"parameters ({type(e).__name__}: {str(e)[:200]}). Nothing was run.",
                                    hint="Load it with torch.jit.load on a machine you trust and save "
                                         "model.state_dict() with safetensors.") from None
    sd: dict = {}
    seen: set = set()

    def walk(obj, prefix: str, depth: int):
        if id(obj) in seen or depth > 64:
            return
        seen.add(id(obj))
        state = obj.__dict__.get("state")
        if not isinstance(state, dict):
            return
        params, buffers = classes.get(obj.qualname, (None, None))
        for k, v in state.items():
            if not isinstance(k, str):
                continue
            if isinstance(v, torch.Tensor):
                if params is None or k in params or (k in buffers and k != "attn_mask"):
                    sd[prefix + k] = v
            elif isinstance(v, _ScriptObject):
                walk(v, f"{prefix}{k}.", depth + 1)

    if not isinstance(top, _ScriptObject):
        raise InvalidInputError(f"{where}: TorchScript archive whose data.pkl holds no module.")
    walk(top, "", 0)
    if not sd:
        raise InvalidInputError(f"{where}: TorchScript archive holds no parameters.")
    return sd


__all__ = [
    "read_torchscript", "check_views", "check_finite", "collect_nonfinite", "NonFiniteWeightsError",
    "validate_safetensors", "load_safetensors", "scan_pickle", "load_pickle", "load_state_dict",
    "unwrap_state_dict", "weight_format", "SafetensorsHeader", "PickleScan", "TrustWarning",
    "MAX_HEADER_BYTES",
]
