"""Built-in datasets for users who bring their own data.

- ``csv``: an open_clip-style CSV of image paths and captions (columns
  ``filepath`` and ``title`` by default) -> a captioned retrieval pool. Given
  ``classnames``, each caption is labelled by the first class name it
  mentions (the paper identifies automobile / airplane on COCO this way);
  given also ``source`` and ``target``, fixed rerank lists and selection
  groups are drawn from the pool.
- ``imagefolder``: an ImageFolder-style folder, ``ROOT/<class name>/<image>``
  -> labelled classification images (and ``train`` from ``train_path``).
- ``webdataset``: WebDataset tar shards (read with the ``webdataset``
  library, as open_clip and CLIP_benchmark do) -> a captioned pool (``txt``)
  and/or labelled classification images (``cls``).

Images are *streamed*: a population holds its files (or tar members), each
file's header is checked when the dataset loads, and the pixels are decoded
one shard at a time when the embedding service encodes them (``.images`` is a
:class:`dife_core.populations.LazyImages`; see docs/scale.md).

Population names hash the file list, sizes and modification times, so a
changed dataset never reuses stale cached embeddings.

Datasets are untrusted input: an image's claimed size is checked against
``image_pixels`` before it is decoded (at load, from the header, and again
when it is decoded) (a decompression bomb is refused, not
decoded), image files are bounded by ``image_bytes``, captions by
``caption_chars``, item counts by ``population``, and every file a CSV names
must lie inside the dataset root (``root``, default the CSV's folder) once
symbolic links are resolved. Bounds: docs/security.md; ``--limit`` raises them.

:func:`make_candidate_lists` is the generic way to fix candidate lists before
any scoring; the shapes world uses it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path

from dife_core import hookimpl
from dife_core.populations import ImageSource
from dife_core.types import Dataset
from dife_core.untrusted import LIMITS, limit

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Bounds on dataset files (documented in docs/security.md; ``--limit KEY=N`` raises them).
DATASET_LIMITS = {
    "image_pixels": 40_000_000,  # width x height an image file may claim (checked before decoding)
    "image_bytes": 64_000_000,  # size of one image file
    "caption_chars": 2048,  # characters of one caption
    "csv_bytes": 512_000_000,  # size of a CSV dataset file
}
for _k, _v in DATASET_LIMITS.items():
    LIMITS.setdefault(_k, _v)
LIMITS.setdefault("population", 1_000_000)  # items in one dataset (also a spec bound)
LIMITS.setdefault("dataset_image_size", 1024)


def _count_option(value, name: str, where: str, *, low: int = 1, bound: str = "population"):
    """An integer dataset option in [low, limit(bound)] (spec values arrive unchecked from Python callers)."""
    from dife_core.errors import InvalidInputError

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{where}: option {name} must be an integer, got {value!r:.60}.")
    cap = limit(bound)
    if not low <= value <= cap:
        raise InvalidInputError(f"{where}: option {name} must be in [{low}, {cap}], got {value} (bound {bound}; "
                                f"raise it with --limit {bound}=N).")
    return value


def _inside(root: Path, f: Path, where: str) -> Path:
    """``f`` if it lies inside ``root`` once symbolic links are resolved; else refuse."""
    from dife_core.errors import InvalidInputError

    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(f))
    if real != real_root and real_root not in real.parents:
        raise InvalidInputError(f"{where}: {str(f)!r:.200} lies outside the dataset root {real_root}; a dataset "
                                f"may only name files inside its root (set the root option to widen it).")
    return f


# -- candidate lists -------------------------------------------------------------

def make_candidate_lists(name: str, labels, *, queries, source: int, target: int, k: int = 10,
                         n_targets: int = 1, n_sources: int = 3, rng=None, seed: int = 0):
    """Fix ranking problems over a labelled pool, before any scoring.

    One list per query: ``n_targets`` target-class items, ``n_sources``
    source-class items (what a clean model should rank first for a source
    query) and ``k - n_targets - n_sources`` items of other classes, in a
    random order. Returns :class:`dife_core.populations.CandidateLists` whose
    ``candidates`` index the pool.
    """
    import numpy as np

    from dife_core.errors import InvalidInputError
    from dife_core.populations import CandidateLists

    rng = rng if rng is not None else np.random.default_rng(seed)
    labels = np.asarray(labels)
    tgt = np.flatnonzero(labels == target)
    src = np.flatnonzero(labels == source)
    other = np.flatnonzero((labels != target) & (labels != source))
    n_other = k - n_targets - n_sources
    for what, have, need in (("target", tgt, n_targets), ("source", src, n_sources), ("other", other, n_other)):
        if need < 0 or len(have) < need:
            raise InvalidInputError(
                f"{name}: cannot build lists of {k} with {n_targets} target and {n_sources} source items: "
                f"the pool has {len(have)} {what} items (need {max(need, 0)}).")
    cands = np.empty((len(queries), k), dtype=np.int64)
    marks = np.zeros((len(queries), k), dtype=bool)
    for q in range(len(queries)):
        row = np.concatenate([rng.choice(tgt, n_targets, replace=False),
                              rng.choice(src, n_sources, replace=False),
                              rng.choice(other, n_other, replace=False)])
        is_t = np.arange(k) < n_targets
        order = rng.permutation(k)
        cands[q], marks[q] = row[order], is_t[order]
    return CandidateLists(name=name, queries=tuple(queries), candidates=cands, targets=marks)


# -- image files -------------------------------------------------------------------

def _open_checked(path, data=None):
    """``PIL.Image`` of a file (or of ``data`` bytes read from ``path``) whose
    size and claimed pixel count are within bounds; nothing decoded yet.
    The caller closes it and restores ``Image.MAX_IMAGE_PIXELS`` (see _pil_bounds)."""
    import io

    from PIL import Image

    from dife_core.errors import InvalidInputError, NotFoundError

    if data is None:
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"image file {path} does not exist.")
        size = path.stat().st_size
    else:
        size = len(data)
    if size > limit("image_bytes"):
        raise InvalidInputError(f"image file {path} is {size} bytes, more than the bound image_bytes "
                                f"({limit('image_bytes')}; raise it with --limit image_bytes=N).")
    cap = limit("image_pixels")
    with warnings.catch_warnings():  # our own check below says it better than PIL's warning
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(path if data is None else io.BytesIO(data))
    w, h = im.size  # from the header: nothing decoded yet
    if w * h > cap or w < 1 or h < 1:
        im.close()
        raise InvalidInputError(f"image file {path} claims {w} x {h} pixels, more than the bound "
                                f"image_pixels ({cap}; raise it with --limit image_pixels=N); it was not "
                                f"decoded.")
    return im


def _guarded(path, fn):
    """Run ``fn`` with PIL's own bomb check at our bound; PIL's errors become input errors naming ``path``."""
    from PIL import Image, UnidentifiedImageError

    from dife_core.errors import InvalidInputError

    cap = limit("image_pixels")
    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = cap  # process-wide, so restored below
        return fn()
    except Image.DecompressionBombError as e:
        raise InvalidInputError(f"image file {path} claims more pixels than the bound image_pixels ({cap}; raise "
                                f"it with --limit image_pixels=N): {str(e)[:120]}; it was not decoded.") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, MemoryError, EOFError) as e:
        raise InvalidInputError(f"image file {path} cannot be read as an image ({type(e).__name__}: "
                                f"{str(e)[:200]}).") from e
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def check_image(path, data=None) -> None:
    """Refuse a missing, oversized, unreadable or bomb image from its header alone (cheap; nothing decoded)."""
    _guarded(path, lambda: _open_checked(path, data).close())


def decode_image(path, image_size: int, data=None):
    """One image file (or its bytes) -> ``uint8`` array ``[3, S, S]`` (shorter
    side resized to ``image_size``, centre crop, like CLIP's preprocessing)."""
    import numpy as np
    from PIL import Image

    def run():
        with _open_checked(path, data) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = image_size / min(w, h)
            im = im.resize((max(image_size, round(w * s)), max(image_size, round(h * s))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - image_size) // 2, (h - image_size) // 2
            im = im.crop((left, top, left + image_size, top + image_size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()

    return _guarded(path, run)


def load_image(path, image_size: int):
    """One image file -> float tensor ``[3, S, S]`` in [0, 1] (see :func:`decode_image`)."""
    import torch

    return torch.from_numpy(decode_image(path, image_size)).float().div_(255.0)


def _decode_threads() -> int:
    # PIL releases the GIL while decoding and resizing: threads pay, up to a few
    return max(1, min(8, (os.cpu_count() or 1)))


class FileSource(ImageSource):
    """Image files decoded ``[lo, hi)`` at a time (threads), as ``uint8``;
    ``where[i]`` prefixes any error about file i (the dataset file and row).
    Not ``stream``: eager (``.images`` decodes all once)."""

    def __init__(self, files, image_size: int, where, key: str, *, stream=True):
        self.files, self.where, self.key = list(files), list(where), key
        self.image_size = int(image_size)
        self.item_shape = (3, self.image_size, self.image_size)
        self.eager = not stream

    def __len__(self):
        return len(self.files)

    def content_key(self):
        return self.key

    def _one(self, i):
        return _named(self.where[i], decode_image, self.files[i], self.image_size)

    def read(self, lo, hi):
        return _stack(_decode_all(self._one, range(lo, min(hi, len(self.files)))), self.item_shape)


def _decode_all(fn, items) -> list:
    items = list(items)
    if len(items) > 8 and _decode_threads() > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(_decode_threads(), thread_name_prefix="dife-decode") as pool:
            return list(pool.map(fn, items))
    return [fn(x) for x in items]


def _stack(arrs, item_shape):
    import numpy as np
    import torch

    if not arrs:
        return torch.zeros((0,) + tuple(item_shape), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrs))


#: "auto" streams a population whose float32 pixels would pass this many bytes
STREAM_ABOVE_BYTES = 256 * 2**20


def streams(stream, n: int, image_size: int, where: str) -> bool:
    """Whether a population of ``n`` images streams: ``stream`` is True, False
    or "auto" (above :data:`STREAM_ABOVE_BYTES` of float32 pixels; a small
    population is decoded once and held, exactly as before streaming)."""
    from dife_core.errors import InvalidInputError

    if isinstance(stream, str) and stream.lower() in ("true", "false", "auto"):
        stream = {"true": True, "false": False, "auto": "auto"}[stream.lower()]
    if stream == "auto":
        return n * 3 * image_size * image_size * 4 > STREAM_ABOVE_BYTES
    if not isinstance(stream, bool):
        raise InvalidInputError(f"{where}: option stream must be true, false or \"auto\", got {stream!r:.40}.")
    return stream


def file_source(files, image_size: int, where, key: str, *, stream=True) -> FileSource:
    return FileSource(files, image_size, where, key, stream=stream)


def _named(where, fn, *args):
    """``fn(*args)``, with ``where`` (the dataset file and row) prefixed to any DIFE error."""
    from dife_core.errors import DifeError

    try:
        return fn(*args)
    except DifeError as e:
        raise type(e)(f"{where}: {e}") from e


def _check_images(paths, where):
    for p, w in zip(paths, where):
        _named(w, check_image, p)


def _load_images(paths, image_size: int, where):
    """All of ``paths`` decoded now, as one float tensor (small populations, tests)."""
    import torch

    out = [_named(w, load_image, p, image_size) for p, w in zip(paths, where)]
    if not out:
        return torch.zeros((0, 3, image_size, image_size))
    return torch.stack(out)


def _content_id(kind: str, files, options: dict, *, full: bool = False) -> str:
    """Hash of the file list with sizes and modification times, and the options
    (``full``: the whole digest, the persistent embedding store's content key)."""
    h = hashlib.sha256()
    h.update(kind.encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    for f in files:
        f = Path(f)
        st = f.stat() if f.exists() else None
        h.update(f"{f.resolve()}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest() if full else h.hexdigest()[:10]


def _split_names(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    return tuple(v for v in value if v)


def keyword_labels(captions, classnames) -> list:
    """Label each caption by the first class name it mentions as a whole word
    (case-insensitive); ``-1`` when none is mentioned."""
    pats = [re.compile(r"\b" + re.escape(c.lower()) + r"s?\b") for c in classnames]
    labels = []
    for cap in captions:
        low = cap.lower()
        hits = [(m.start(), j) for j, p in enumerate(pats) for m in [p.search(low)] if m]
        labels.append(min(hits)[1] if hits else -1)
    return labels


def _resolve_roles(classnames, source, target, where):
    from dife_core.errors import InvalidInputError

    if (source is None) != (target is None):
        raise InvalidInputError(f"{where}: give both source and target, or neither.")
    if source is None:
        return None
    if not classnames:
        raise InvalidInputError(f"{where}: source/target need classnames to identify them in captions.")
    for role, c in (("source", source), ("target", target)):
        if c not in classnames:
            raise InvalidInputError(f"{where}: {role} {c!r} is not among classnames ({', '.join(classnames)}).")
    return classnames.index(source), classnames.index(target)


# -- csv ---------------------------------------------------------------------------

def load_csv(path, *, img_key: str = "filepath", caption_key: str = "title", sep: str = ",",
             root=None, image_size: int = 224, classnames=None, source=None, target=None,
             max_items=None, templates=("a photo of a {}",), seed: int = 0, rerank_k: int = 10,
             n_rerank: int = 100, selection_k: int = 10, selection_targets: int = 2, n_selection: int = 100,
             stream="auto"):
    """An open_clip-style CSV (one image path and one caption per row) -> World."""
    import csv

    import numpy as np

    from dife_core.errors import InvalidInputError, NotFoundError
    from dife_core.populations import CaptionedPool, World

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"CSV dataset {path} does not exist.")
    if path.stat().st_size > limit("csv_bytes"):
        raise InvalidInputError(f"{path}: the CSV is larger than the bound csv_bytes ({limit('csv_bytes')}; raise "
                                f"it with --limit csv_bytes=N).")
    where = str(path)
    max_items = _count_option(max_items, "max_items", where)
    image_size = _count_option(image_size, "image_size", where, bound="dataset_image_size")
    for name, v in (("n_rerank", n_rerank), ("n_selection", n_selection), ("rerank_k", rerank_k),
                    ("selection_k", selection_k)):
        _count_option(v, name, where)
    if not isinstance(sep, str) or (len(sep) != 1 and sep not in ("\\t", "tab")):
        raise InvalidInputError(f"{where}: option sep must be one character (or tab), got {sep!r:.40}.")
    root = Path(root) if root is not None else path.parent
    cap_rows = max_items if max_items is not None else limit("population")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t" if sep in ("\\t", "tab") else sep)
            fields = reader.fieldnames or []
            for key, opt in ((img_key, "img_key"), (caption_key, "caption_key")):
                if key not in fields:
                    raise InvalidInputError(
                        f"{path}: no column {str(key)[:80]!r} (option {opt}); columns: "
                        f"{', '.join(f[:80] for f in fields[:20]) or '(none)'}.")
            for r in reader:
                if len(rows) >= cap_rows:
                    if max_items is None:
                        raise InvalidInputError(f"{path}: more than {cap_rows} rows (bound population; raise it "
                                                f"with --limit population=N, or set max_items).")
                    break
                img, cap = r.get(img_key), r.get(caption_key)
                line = reader.line_num
                if not isinstance(img, str) or not img or not isinstance(cap, str):
                    raise InvalidInputError(f"{path} row {line}: a row without {img_key!r:.80} or "
                                            f"{caption_key!r:.80}.")
                if len(cap) > limit("caption_chars"):
                    raise InvalidInputError(f"{path} row {line}, column {caption_key!r:.80}: a caption of "
                                            f"{len(cap)} characters (bound caption_chars {limit('caption_chars')}; "
                                            f"raise it with --limit caption_chars=N).")
                rows.append((img, cap, line))
    except csv.Error as e:  # e.g. a field beyond csv.field_size_limit
        raise InvalidInputError(f"{path}: not a readable CSV ({e}).") from e
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}).") from e
    if not rows:
        raise InvalidInputError(f"{path}: no rows.")
    files = [_inside(root, Path(p) if os.path.isabs(p) else root / p, f"{path} row {line}, column {img_key!r:.80}")
             for p, _, line in rows]
    caps = tuple(c for _, c, _ in rows)
    classnames = _split_names(classnames)
    roles = _resolve_roles(classnames, source, target, str(path))
    opts = {"img_key": img_key, "caption_key": caption_key, "image_size": image_size, "classnames": classnames,
            "source": source, "target": target, "seed": seed, "captions": caps}
    name = f"csv-{path.stem}-{_content_id('csv', files, opts)}"
    where_rows = [f"{path} row {line}" for _, _, line in rows]
    _check_images(files, where_rows)
    images = file_source(files, image_size, where_rows, "csv:" + _content_id("csv", files, opts, full=True),
                         stream=streams(stream, len(files), image_size, where))
    labels = np.asarray(keyword_labels(caps, classnames) if classnames else [-1] * len(caps), dtype=np.int64)
    pool = CaptionedPool(name=f"{name}/pool", images=images, captions=caps, labels=labels,
                         classnames=classnames or ())
    rerank = selection = None
    if roles is not None:
        rerank, selection = _fixed_lists(name, caps, labels, roles, source, target, str(path), seed=seed,
                                         rerank_k=rerank_k, n_rerank=n_rerank, selection_k=selection_k,
                                         selection_targets=selection_targets, n_selection=n_selection)
    return World(name=name, classnames=classnames or (), templates=tuple(templates),
                 source=source or "", target=target or "", pool=pool, rerank=rerank, selection=selection)


# -- image folder -----------------------------------------------------------------

def _scan_folder(root: Path, max_per_class=None):
    from dife_core.errors import InvalidInputError, NotFoundError

    if not root.is_dir():
        raise NotFoundError(f"image folder {root} does not exist (expected ROOT/<class name>/<images>).")
    max_per_class = _count_option(max_per_class, "max_per_class", str(root))
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) > limit("population"):
        raise InvalidInputError(f"image folder {root} has more than {limit('population')} class folders (bound "
                                f"population).")
    if not classes:
        raise InvalidInputError(f"image folder {root} has no class sub-folders (expected ROOT/<class name>/<images>).")
    files, labels = [], []
    for j, c in enumerate(classes):
        fs = sorted(f for f in (root / c).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        if max_per_class is not None:
            fs = fs[:max_per_class]
        files += [_inside(root, f, f"image folder {root}") for f in fs]
        labels += [j] * len(fs)
        if len(files) > limit("population"):
            raise InvalidInputError(f"image folder {root} has more than {limit('population')} images (bound "
                                    f"population; raise it with --limit population=N, or set max_per_class).")
    if not files:
        raise InvalidInputError(f"image folder {root} has no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return classes, files, labels


def load_imagefolder(path, *, train_path=None, image_size: int = 224, max_per_class=None, classnames=None,
                     templates=("a photo of a {}",), source=None, target=None, stream="auto"):
    """``ROOT/<class>/<image>`` -> World with ``classification`` (and ``train``).

    Class names are the folder names with ``_`` read as spaces, unless
    ``classnames`` (one per folder, in sorted folder order) is given.
    """
    import numpy as np

    from dife_core.errors import InvalidInputError
    from dife_core.populations import LabelledImages, World

    root = Path(path)
    image_size = _count_option(image_size, "image_size", str(root), bound="dataset_image_size")
    folders, files, labels = _scan_folder(root, max_per_class)
    names = _split_names(classnames) or tuple(f.replace("_", " ") for f in folders)
    if len(names) != len(folders):
        raise InvalidInputError(f"{root}: {len(names)} classnames given for {len(folders)} class folders "
                                f"({', '.join(folders)}).")
    _resolve_roles(names, source, target, str(root))
    opts = {"image_size": image_size, "classnames": names}
    name = f"folder-{root.name}-{_content_id('imagefolder', files, opts)}"
    _check_images(files, [str(root)] * len(files))
    test = LabelledImages(name=f"{name}/test",
                          images=file_source(files, image_size, [str(root)] * len(files),
                                             "folder:" + _content_id("imagefolder", files, opts, full=True),
                                             stream=streams(stream, len(files), image_size, str(root))),
                          labels=np.asarray(labels, dtype=np.int64), classnames=names)
    train = None
    if train_path is not None:
        troot = Path(train_path)
        tfolders, tfiles, tlabels = _scan_folder(troot, max_per_class)
        if tfolders != folders:
            raise InvalidInputError(f"{troot}: class folders ({', '.join(tfolders)}) differ from {root} "
                                    f"({', '.join(folders)}).")
        tname = f"folder-{troot.name}-{_content_id('imagefolder', tfiles, opts)}"
        _check_images(tfiles, [str(troot)] * len(tfiles))
        train = LabelledImages(name=f"{tname}/train",
                               images=file_source(tfiles, image_size, [str(troot)] * len(tfiles),
                                                  "folder:" + _content_id("imagefolder", tfiles, opts, full=True),
                                                  stream=streams(stream, len(tfiles), image_size, str(troot))),
                               labels=np.asarray(tlabels, dtype=np.int64), classnames=names)
    return World(name=name, classnames=names, templates=tuple(templates), source=source or "",
                 target=target or "", classification=test, train=train)


# -- webdataset --------------------------------------------------------------------

def _shard_files(path, root, where):
    """The tar shards ``path`` names: one ``.tar``, a folder of them (sorted),
    a comma list, or a brace pattern (``shards-{000..009}.tar``); every one a
    local file inside ``root`` (never a URL or a ``pipe:`` command)."""
    from dife_core.errors import InvalidInputError, NotFoundError

    specs = [p.strip() for p in path.split(",")] if isinstance(path, str) else [str(p) for p in
                                                                               (path if isinstance(path, (list, tuple))
                                                                                else [path])]
    out = []
    for spec in specs:
        if "{" in spec:
            from braceexpand import braceexpand

            names = []
            for n in braceexpand(spec):
                names.append(n)
                if len(names) > limit("population"):
                    raise InvalidInputError(f"{where}: the pattern {spec!r:.120} names more than "
                                            f"{limit('population')} shards (bound population).")
        else:
            names = [spec]
        for n in names:
            f = Path(n)
            if f.is_dir():
                out += sorted(x for x in f.iterdir() if x.suffix == ".tar" and x.is_file())
            elif f.is_file():
                out.append(f)
            else:
                raise NotFoundError(f"{where}: WebDataset shard {n!r:.200} does not exist.")
    if not out:
        raise InvalidInputError(f"{where}: no .tar shards in {path!r:.200}.")
    base = Path(root) if root is not None else None
    return [_inside(base if base is not None else (f.parent), f, where).resolve() for f in out]


def _iter_samples(shard: Path):
    """Samples of one shard, in order, as raw bytes (nothing decoded)."""
    import webdataset as wds

    # a resolved absolute path: webdataset never reads it as a URL or a pipe: command
    return iter(wds.WebDataset([str(shard)], shardshuffle=False, empty_check=False))


def _pick(sample: dict, keys):
    for k in keys:
        if k in sample:
            return k
    return None


class WebDatasetSource(ImageSource):
    """WebDataset samples ``index[i] = (shard number, ordinal in the shard,
    sample key)``, read sequentially shard by shard (a cursor keeps the open
    shard, so consecutive shards of the embedding service never re-read)."""

    def __init__(self, shards, index, image_keys, image_size: int, key: str, *, stream=True):
        self.shard_files, self.index, self.image_keys, self.key = list(shards), list(index), list(image_keys), key
        self.item_shape = (3, int(image_size), int(image_size))
        self.eager = not stream

    def __len__(self):
        return len(self.index)

    def content_key(self):
        return self.key

    def _raw(self, lo, hi):
        out = []
        for i in range(lo, hi):
            sh, k, name = self.index[i]
            cur = getattr(self, "_cursor", None)
            if cur is None or cur[0] != sh or cur[1] > k:
                cur = (sh, 0, _iter_samples(self.shard_files[sh]))
            it, pos, sample = cur[2], cur[1], None
            while pos <= k:
                sample = next(it)
                pos += 1
            self._cursor = (sh, pos, it)
            out.append((f"{self.shard_files[sh]} sample {name!r:.80}", sample[_pick(sample, self.image_keys)]))
        return out

    def _one(self, item):
        where, data = item
        return _named(where, decode_image, where, self.item_shape[1], data)

    def read(self, lo, hi):
        from dife_core.populations import _lock_of

        with _lock_of(self):  # one cursor: reads are sequential
            raw = self._raw(lo, min(hi, len(self.index)))
        return _stack(_decode_all(self._one, raw), self.item_shape)


def webdataset_source(shards, index, image_keys, image_size: int, key: str, *, stream=True) -> WebDatasetSource:
    return WebDatasetSource(shards, index, image_keys, image_size, key, stream=stream)


def load_webdataset(path, *, root=None, image_key: str = "jpg;jpeg;png;webp", caption_key: str = "txt",
                    label_key: str = "cls", image_size: int = 224, classnames=None, source=None, target=None,
                    max_items=None, templates=("a photo of a {}",), seed: int = 0, rerank_k: int = 10,
                    n_rerank: int = 100, selection_k: int = 10, selection_targets: int = 2, n_selection: int = 100,
                    stream="auto"):
    """WebDataset tar shards -> World: a captioned ``pool`` when samples carry
    ``caption_key``, labelled ``classification`` images when they carry
    ``label_key`` (an integer class index into ``classnames``)."""
    import numpy as np

    from dife_core.errors import InvalidInputError
    from dife_core.populations import CaptionedPool, LabelledImages, World

    where = f"webdataset {str(path)[:200]}"
    max_items = _count_option(max_items, "max_items", where)
    image_size = _count_option(image_size, "image_size", where, bound="dataset_image_size")
    shards = _shard_files(path, root, where)
    image_keys = [k.strip().lower() for k in str(image_key).split(";") if k.strip()]
    cap_rows = max_items if max_items is not None else limit("population")
    index, caps, labels = [], [], []
    for sh, shard in enumerate(shards):
        if len(index) >= cap_rows:
            break
        try:
            for k, sample in enumerate(_iter_samples(shard)):
                if len(index) >= cap_rows:
                    if max_items is None:
                        raise InvalidInputError(f"{where}: more than {cap_rows} samples (bound population; raise it "
                                                f"with --limit population=N, or set max_items).")
                    break
                name = str(sample.get("__key__", k))
                at = f"{shard} sample {name!r:.80}"
                ik = _pick(sample, image_keys)
                if ik is None:
                    raise InvalidInputError(f"{at}: no image member ({', '.join(image_keys)}; option image_key).")
                _named(at, check_image, at, sample[ik])
                if caption_key in sample:
                    cap = _text_member(sample[caption_key], at, caption_key)
                    if len(cap) > limit("caption_chars"):
                        raise InvalidInputError(f"{at}, member {caption_key!r:.40}: a caption of {len(cap)} "
                                                f"characters (bound caption_chars {limit('caption_chars')}; raise it "
                                                f"with --limit caption_chars=N).")
                    caps.append(cap)
                if label_key in sample:
                    txt = _text_member(sample[label_key], at, label_key).strip()
                    if not txt.isdigit() or len(txt) > 9:
                        raise InvalidInputError(f"{at}, member {label_key!r:.40}: a class index must be a "
                                                f"non-negative integer, got {txt!r:.40}.")
                    labels.append(int(txt))
                index.append((sh, k, name))
        except InvalidInputError:
            raise
        except Exception as e:  # a malformed tar: the library's own error, named
            raise InvalidInputError(f"{where}: shard {shard} cannot be read as a WebDataset tar "
                                    f"({type(e).__name__}: {str(e)[:200]}).") from e
    if not index:
        raise InvalidInputError(f"{where}: no samples.")
    n = len(index)
    has_caps, has_labels = len(caps) == n, len(labels) == n
    if caps and not has_caps or labels and not has_labels:
        raise InvalidInputError(f"{where}: member {caption_key!r:.40} or {label_key!r:.40} is present in some "
                                f"samples and missing in others.")
    if not has_caps and not has_labels:
        raise InvalidInputError(f"{where}: samples carry neither captions ({caption_key!r:.40}) nor class indices "
                                f"({label_key!r:.40}).")
    classnames = _split_names(classnames)
    if has_labels:
        top = max(labels)
        if classnames is None:
            classnames = tuple(str(i) for i in range(top + 1))
        if top >= len(classnames):
            raise InvalidInputError(f"{where}: class index {top} but {len(classnames)} classnames.")
    roles = _resolve_roles(classnames, source, target, where)
    opts = {"image_key": image_keys, "caption_key": caption_key, "label_key": label_key, "image_size": image_size,
            "classnames": classnames, "keys": [i[2] for i in index]}
    cid = _content_id("webdataset", shards, opts, full=True)
    name = f"wds-{shards[0].stem}-{cid[:10]}"
    do_stream = streams(stream, n, image_size, where)

    def src():
        return webdataset_source(shards, index, image_keys, image_size, "wds:" + cid, stream=do_stream)

    classification = pool = rerank = selection = None
    if has_labels:
        classification = LabelledImages(name=f"{name}/test", images=src(), labels=np.asarray(labels, dtype=np.int64),
                                        classnames=classnames, captions=tuple(caps) if has_caps else None)
    if has_caps:
        plabels = np.asarray(labels if has_labels else (keyword_labels(caps, classnames) if classnames else
                                                        [-1] * n), dtype=np.int64)
        pool = CaptionedPool(name=f"{name}/pool", images=src(), captions=tuple(caps), labels=plabels,
                             classnames=classnames or ())
        if roles is not None:
            rerank, selection = _fixed_lists(name, caps, plabels, roles, source, target, where, seed=seed,
                                             rerank_k=rerank_k, n_rerank=n_rerank, selection_k=selection_k,
                                             selection_targets=selection_targets, n_selection=n_selection)
    return World(name=name, classnames=classnames or (), templates=tuple(templates), source=source or "",
                 target=target or "", classification=classification, pool=pool, rerank=rerank, selection=selection)


def _text_member(data, at, key) -> str:
    from dife_core.errors import InvalidInputError

    if len(data) > 4 * limit("caption_chars"):
        raise InvalidInputError(f"{at}, member {key!r:.40}: {len(data)} bytes (bound caption_chars "
                                f"{limit('caption_chars')}).")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{at}, member {key!r:.40}: not UTF-8 text (byte {e.start}).") from e


def _fixed_lists(name, caps, labels, roles, source, target, where, *, seed, rerank_k, n_rerank, selection_k,
                 selection_targets, n_selection):
    """Rerank lists and selection groups over a captioned pool, fixed from ``seed``."""
    import numpy as np

    from dife_core.errors import InvalidInputError

    s, t = roles
    rng = np.random.default_rng(seed)
    queries = [caps[i] for i in rng.permutation(np.flatnonzero(labels == s))]
    if not queries:
        raise InvalidInputError(f"{where}: no caption mentions the source {source!r}, so there are no queries.")
    q_r = (queries * (n_rerank // len(queries) + 1))[:n_rerank]
    q_s = (queries * (n_selection // len(queries) + 1))[:n_selection]
    rerank = make_candidate_lists(f"{name}/rerank-{source}-{target}", labels, queries=q_r, source=s, target=t,
                                  k=rerank_k, n_targets=1, n_sources=min(3, rerank_k - 1),
                                  rng=np.random.default_rng([seed, 7]))
    selection = make_candidate_lists(f"{name}/selection-{source}-{target}", labels, queries=q_s, source=s,
                                     target=t, k=selection_k, n_targets=selection_targets,
                                     n_sources=min(3, selection_k - selection_targets),
                                     rng=np.random.default_rng([seed, 8]))
    return rerank, selection


@hookimpl
def register_datasets(register):
    register(Dataset(
        name="csv",
        description="open_clip-style CSV of image paths and captions -> retrieval pool (+ rerank/selection lists)",
        load=load_csv,
        provides=("pool", "rerank", "selection"),
        options={"path": None, "img_key": "filepath", "caption_key": "title", "sep": ",", "root": None,
                 "image_size": 224, "classnames": None, "source": None, "target": None, "max_items": None,
                 "seed": 0, "stream": "auto"},
    ))
    register(Dataset(
        name="imagefolder",
        description="ImageFolder-style ROOT/<class>/<image> -> labelled classification (+ train) images",
        load=load_imagefolder,
        provides=("classification", "train"),
        options={"path": None, "train_path": None, "image_size": 224, "max_per_class": None,
                 "classnames": None, "source": None, "target": None, "stream": "auto"},
    ))
    register(Dataset(
        name="webdataset",
        description="WebDataset tar shards (image + txt caption and/or cls index) -> pool and/or classification",
        load=load_webdataset,
        provides=("classification", "pool", "rerank", "selection"),
        options={"path": None, "root": None, "image_key": "jpg;jpeg;png;webp", "caption_key": "txt",
                 "label_key": "cls", "image_size": 224, "classnames": None, "source": None, "target": None,
                 "max_items": None, "seed": 0, "stream": "auto"},
    ))
