"""The persistent embedding store: encoder features on disk, shared by audits.

One safetensors file per *(tower, input set, trigger)*: the features
``[N, D]`` (float32, L2-normalised, exactly what the embedding service
returned) under the key

    tower key (branch fingerprint + preprocessing) x branch x population
    content key x trigger key (+ seed and shard size for an image trigger,
    whose random placement depends on them) x precision (fp32 CPU / bf16 CUDA)

so a second audit that adds one checkpoint encodes only that checkpoint's new
towers, in this process or any other. The store lives at
``$DIFE_CACHE_DIR/embeddings`` (``~/.cache/dife/embeddings``) unless told
otherwise.

Concurrency: a writer writes a uniquely named temp file in the entry's folder
(``O_EXCL``), fsyncs it and ``os.replace``-s it onto the entry's name, so a
reader sees either no entry or a whole one, and two writers of the same entry
(identical features) simply race to the same content. A writer killed
mid-write leaves only a temp file, which no reader opens and ``prune``
removes. Readers check the file's key and the SHA-256 of its features before
trusting it; a file that fails is ignored (and re-encoded).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Optional

VERSION = 1
SUFFIX = ".safetensors"
TMP_PREFIX = ".tmp-"


def default_root() -> Path:
    """``$DIFE_CACHE_DIR/embeddings`` (or ``~/.cache/dife/embeddings``)."""
    return Path(os.environ.get("DIFE_CACHE_DIR") or Path.home() / ".cache" / "dife") / "embeddings"


def from_env() -> Optional["EmbeddingStore"]:
    """The store ``$DIFE_EMBED_STORE`` asks for: unset, ``0`` or ``off`` -> none;
    ``1``, ``on`` or ``default`` -> :func:`default_root`; anything else -> that folder."""
    v = (os.environ.get("DIFE_EMBED_STORE") or "").strip()
    if v.lower() in ("", "0", "off", "false", "no"):
        return None
    return EmbeddingStore(default_root() if v.lower() in ("1", "on", "true", "yes", "default") else Path(v))


def _digest(t) -> str:
    import torch

    t = t.detach().cpu().contiguous()
    return hashlib.sha256(t.view(torch.uint8).numpy().reshape(-1).data if t.numel() else b"").hexdigest()


def entry_id(key: dict) -> str:
    """The file name (without suffix) of ``key``: a hash of its canonical JSON."""
    blob = json.dumps({"v": VERSION, **key}, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:40]


class EmbeddingStore:
    """Features on disk under ``root`` (see the module docstring)."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, key: dict) -> Path:
        eid = entry_id(key)
        return self.root / eid[:2] / (eid + SUFFIX)

    # -- read / write ------------------------------------------------------------------
    def get(self, key: dict):
        """The stored features of ``key`` (float32 CPU tensor), or None."""
        from safetensors import safe_open

        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                feats = f.get_tensor("features")
        except Exception:  # truncated, corrupt, or not a safetensors file: treat as absent
            return None
        if meta.get("key") != _canonical(key) or meta.get("sha256") != _digest(feats):
            return None
        try:
            os.utime(p)  # last use, for prune --older-than
        except OSError:
            pass
        return feats

    def put(self, key: dict, feats, *, info: Optional[dict] = None) -> Path:
        """Store ``feats`` under ``key`` atomically (temp file + fsync + os.replace)."""
        from safetensors.torch import save

        feats = feats.detach().float().cpu().contiguous()
        meta = {"key": _canonical(key), "sha256": _digest(feats), "created": f"{time.time():.0f}",
                "info": json.dumps(info or {}, sort_keys=True)}
        data = save({"features": feats}, metadata=meta)
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        from .outdir import replace_atomic

        # the writer's pid in the temp name lets `prune` remove a dead writer's leftovers
        tmp = p.parent / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}{SUFFIX}"
        return replace_atomic(tmp, p, data, mode=0o600)

    # -- housekeeping ------------------------------------------------------------------
    def entries(self) -> list:
        """One dict per stored entry: path, bytes, rows, dim, last use and its key/info."""
        from safetensors import safe_open

        out = []
        if not self.root.is_dir():
            return out
        for p in sorted(self.root.glob("*/*" + SUFFIX)):
            if p.name.startswith(TMP_PREFIX) or p.is_symlink():
                continue
            st = p.stat()
            row = {"path": str(p), "bytes": st.st_size, "used": st.st_mtime}
            try:
                with safe_open(str(p), framework="pt") as f:
                    meta = f.metadata() or {}
                    shape = f.get_slice("features").get_shape()
                row.update(json.loads(meta.get("key", "{}")), rows=shape[0], dim=shape[1] if len(shape) > 1 else 0,
                           info=json.loads(meta.get("info", "{}")))
            except Exception:
                row["broken"] = True
            out.append(row)
        return out

    def temp_files(self) -> list:
        return sorted(self.root.glob(f"*/{TMP_PREFIX}*")) if self.root.is_dir() else []

    def prune(self, *, older_than_s: Optional[float] = None, everything: bool = False, dry_run: bool = False,
              temp_grace_s: float = 3600.0) -> list:
        """Remove entries unused for ``older_than_s`` (or all with ``everything``),
        broken entries, and temp files left by writers that died (older than
        ``temp_grace_s`` or of a process that no longer exists). Returns the paths."""
        now = time.time()
        gone = []
        for e in self.entries():
            if everything or e.get("broken") or (older_than_s is not None and now - e["used"] > older_than_s):
                gone.append(Path(e["path"]))
        for t in self.temp_files():
            if everything or now - t.stat().st_mtime > temp_grace_s or not _alive(t.name):
                gone.append(t)
        if not dry_run:
            for p in gone:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
        return gone


def chunked_topk(queries, gallery, k: int, *, chunk: int = 65536, query_chunk: int = 1024, device=None):
    """The ``k`` best gallery items per query (scores, indices), by cosine,
    over a gallery of any size (stored features, a memory-mapped array)
    without a ``[queries x gallery]`` matrix: ``query_chunk x (chunk + k)``
    scores at a time. Among equal scores an earlier chunk's item comes first
    (within one chunk, torch.topk's order)."""
    import torch

    q_all = torch.as_tensor(queries).float()
    n = int(gallery.shape[0])
    k = min(int(k), n)
    dev = torch.device(device) if device is not None else q_all.device
    vals = torch.empty((q_all.shape[0], k))
    idx = torch.empty((q_all.shape[0], k), dtype=torch.long)
    for q0 in range(0, q_all.shape[0], query_chunk):
        q = q_all[q0:q0 + query_chunk].to(dev)
        best_v = torch.full((q.shape[0], 0), float("-inf"), device=dev)
        best_i = torch.empty((q.shape[0], 0), dtype=torch.long, device=dev)
        for g0 in range(0, n, chunk):
            g = torch.as_tensor(gallery[g0:g0 + chunk]).float().to(dev)
            cv, ci = torch.topk(q @ g.T, min(k, g.shape[0]), dim=1)
            s, i = torch.cat([best_v, cv], dim=1), torch.cat([best_i, ci + g0], dim=1)
            # stable sort of 2k candidates: among equal scores the earlier chunk's item stays first
            order = torch.sort(-s, dim=1, stable=True).indices[:, :k]
            best_v, best_i = s.gather(1, order), i.gather(1, order)
        vals[q0:q0 + query_chunk], idx[q0:q0 + query_chunk] = best_v.cpu(), best_i.cpu()
    return vals, idx


def _canonical(key: dict) -> str:
    return json.dumps({"v": VERSION, **key}, sort_keys=True, separators=(",", ":"))


def _alive(tmp_name: str) -> bool:
    """Whether the writer whose pid is in a temp file's name still runs (on this host)."""
    try:
        pid = int(tmp_name[len(TMP_PREFIX):].split("-", 1)[0])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


__all__ = ["EmbeddingStore", "default_root", "from_env", "entry_id", "chunked_topk"]
