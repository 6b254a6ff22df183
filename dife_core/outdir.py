"""The output folder an audit owns: what may be written there, and how.

``--out`` names a folder DIFE writes into; anything already inside it may
have been planted. So DIFE never follows a symbolic link inside it: every
file is opened with ``O_NOFOLLOW`` (new files also with ``O_EXCL``), whole
files are written to a uniquely named temporary file in the folder and
renamed over the destination (a rename replaces a link, never its target).

A folder is a *DIFE output folder* when it holds the store's key file (or,
from releases before the key, a cell store). :func:`check_out_dir` refuses a
non-empty folder that is not one unless ``force``, and an existing DIFE
output folder without ``resume`` unless ``force`` (it says what would be
replaced). Nothing here imports torch.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from .errors import InvalidInputError

STORE = "cells.jsonl"
LOCK = ".dife-audit.lock"
KEY_FILE = ".dife-store-key"
#: files an audit writes; ``--force`` replaces exactly these
OWNED = (STORE, KEY_FILE, "spec.toml", "results.json", "report.md", "report.html")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _plain_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")
    return name


def _link_error(path: Path, e: OSError) -> InvalidInputError:
    if e.errno == errno.ELOOP:
        why = "is a symbolic link; DIFE never writes or reads through a link in its output folder"
    elif e.errno == errno.EEXIST:
        why = "appeared while DIFE was creating it (another process is writing into the folder)"
    elif e.errno in (errno.EISDIR, errno.ENOTDIR):
        why = "is not a plain file"
    else:
        why = f"cannot be opened ({e.strerror or e})"
    return InvalidInputError(f"{path} {why}. Remove it or choose another --out folder.")


def open_nofollow(path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` (one paragraph)."""
    path = Path(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as e:
        raise _link_error(path, e) from e
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device would block or leak
        os.close(fd)
        raise InvalidInputError(f"{path} is not a plain file. Remove it or choose another --out folder.")
    return fd


def read_bytes_nofollow(path) -> bytes:
    fd = open_nofollow(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def write_bytes_atomic(out_dir, name: str, data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``out_dir/name`` whole: a new uniquely named temporary file in
    the folder (``O_EXCL|O_NOFOLLOW``), fsynced, then renamed over ``name``.
    A link planted at ``name`` is replaced, its target never written."""
    out = Path(out_dir)
    dest = out / _plain_name(name)
    if dest.is_dir() and not dest.is_symlink():
        raise InvalidInputError(f"{dest} is a folder; DIFE writes a file of that name there. Remove it or choose "
                                f"another --out folder.")
    return replace_atomic(out / f".{name}.{secrets.token_hex(8)}.tmp", dest, data, mode=mode)


def replace_atomic(tmp, dest, data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to the new file ``tmp`` (``O_EXCL|O_NOFOLLOW``, in
    ``dest``'s folder), fsync it and rename it over ``dest``: readers see the
    old file or the whole new one; a failed write leaves neither ``tmp`` nor a
    partial ``dest``."""
    tmp, dest = Path(tmp), Path(dest)
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dest


def write_text_atomic(out_dir, name: str, text: str) -> Path:
    """Write the text file ``out_dir/name`` safely (see :func:`write_bytes_atomic`).
    Report writers (results.json, report.md, report.html) go through this."""
    return write_bytes_atomic(out_dir, name, text.encode("utf-8", "backslashreplace"))


def remove_owned(out_dir, name: str) -> None:
    """Remove one of DIFE's own files (a link is removed, never its target)."""
    try:
        os.unlink(Path(out_dir) / _plain_name(name))
    except FileNotFoundError:
        pass
    except IsADirectoryError as e:
        raise InvalidInputError(f"{Path(out_dir) / name} is a folder; remove it or choose another --out "
                                f"folder.") from e


# -- whose folder is it --------------------------------------------------------------

def is_dife_folder(out_dir) -> bool:
    out = Path(out_dir)
    return os.path.lexists(out / KEY_FILE) or os.path.lexists(out / STORE)


def _entries(out: Path) -> list:
    return sorted(e for e in os.listdir(out) if e != LOCK and not (e.startswith(".") and e.endswith(".tmp")))


def check_out_dir(out_dir, *, resume: bool, force: bool) -> str:
    """Decide how an audit may use ``out_dir`` before anything is written.

    Returns ``"new"`` (absent or empty), ``"resume"`` (a DIFE output folder,
    kept) or ``"replace"`` (DIFE's files there are replaced); raises
    :class:`InvalidInputError` when the folder is not DIFE's to write.
    """
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise InvalidInputError(f"--out {out} exists and is not a folder.")
    if not out.exists():
        return "new"
    entries = _entries(out)
    if not entries:
        return "new"
    if is_dife_folder(out):
        if resume:
            return "resume"
        if force:
            return "replace"
        mine = [e for e in entries if e in OWNED]
        raise InvalidInputError(
            f"--out {out} already holds an audit ({', '.join(mine)}); running again would replace its "
            f"records and reports. Use --resume to keep finished cells, --force to replace them, or another "
            f"--out folder.")
    if force:
        return "replace"
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise InvalidInputError(
        f"--out {out} is not empty ({shown}) and is not a DIFE output folder; DIFE writes only into an "
        f"empty or new folder, or one of its own. Choose another --out folder, or pass --force to write "
        f"DIFE's files ({', '.join(OWNED)}) into it anyway.")


def make_out_dir(out_dir) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise InvalidInputError(f"--out {out} exists and is not a folder.") from e
    except OSError as e:
        raise InvalidInputError(f"--out {out} cannot be created ({e.strerror or e}).") from e
    return out


def clear_owned(out_dir) -> None:
    """Forget a previous audit in ``out_dir``: its store, key and reports."""
    for name in OWNED:
        remove_owned(out_dir, name)


__all__ = ["write_text_atomic", "write_bytes_atomic", "replace_atomic", "open_nofollow", "read_bytes_nofollow",
           "check_out_dir", "make_out_dir", "clear_owned", "is_dife_folder", "STORE", "LOCK", "KEY_FILE", "OWNED"]
