"""The audit spec: what to audit, against what, on which populations.

A spec is a TOML file (reference: docs/spec.md) or a plain dict with the same
shape. :func:`load_spec` / :meth:`AuditSpec.from_dict` check its *structure*
and collect every problem before raising one :class:`InvalidInputError`;
:func:`validate_spec` also checks names against the registries (interfaces,
loaders, datasets, trigger families) and reads checkpoint manifests for their
attack cards. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional

import attrs

from ..errors import InvalidInputError, UnsafeCheckpointError, available
from ..untrusted import LIMITS, limit

CONTROL_SEP = "@"  # control rows are named "clean@<checkpoint>"

#: Bounds on what a spec or an attack card may ask for (docs/spec.md, "Bounds").
#: A spec is as untrusted as a checkpoint: these are checked before anything
#: is loaded or allocated, and only ``--limit KEY=VALUE`` on the command line
#: raises them.
RUN_LIMITS = {
    "spec_bytes": 1_000_000,  # size of a spec file
    "nesting_depth": 32,  # tables / arrays inside one another (spec or card)
    "spec_values": 100_000,  # values in one spec or card, all levels together
    "string_chars": 4096,  # any string value (paths, options, card text)
    "name_chars": 256,  # checkpoint names and table keys
    "checkpoints": 64,  # [[checkpoints]] tables
    "batch_size": 4096,
    "ranking_chunk": 65_536,
    "seed": 2**32 - 1,  # any seed (numpy's legacy seeding takes 32 bits)
    "steps": 100_000,  # any step count: probe steps, optimisation steps (``*steps*`` keys)
    "population": 1_000_000,  # counts in dataset / interface / card options (items, lists, shots ...)
    "dataset_image_size": 1024,  # image side a dataset resizes to
}
for _k, _v in RUN_LIMITS.items():
    LIMITS.setdefault(_k, _v)
#: keys that would let a file load code or reach the network: refused anywhere in a spec (exit 3)
UNSAFE_KEYS = ("trust", "trust_remote_code", "auto_map")


@attrs.frozen
class Problem:
    """One thing wrong with a spec: where (a key path) and what."""

    key: str
    message: str
    #: True when following the spec would be unsafe (exit 3), not merely malformed
    unsafe: bool = False

    def __str__(self) -> str:
        key = self.key if len(self.key) <= 120 else self.key[:100] + "..." + self.key[-16:]
        return f"{key}: {self.message}"


@attrs.frozen
class Thresholds:
    """Entry-type thresholds (docs/metrics.md, "Entry types").

    Absolute primary metrics (rates in [0, 1]): *exposed* when the value is
    at least ``exposed`` and at least ``exposed_delta`` above the same
    metric under the clean input; *negative* when it is ``negative_delta``
    or more below it. Relative primary metrics (signed deltas): *exposed*
    when Δ >= ``exposed_delta``, *negative* when Δ <= ``negative_delta``.
    Anything else is *weak*. ``per_interface`` overrides any of the three for
    one interface id.
    """

    exposed: float = 0.50
    exposed_delta: float = 0.20
    negative_delta: float = -0.02
    per_interface: dict = attrs.field(factory=dict)

    def for_interface(self, name: str) -> dict:
        out = {"exposed": self.exposed, "exposed_delta": self.exposed_delta, "negative_delta": self.negative_delta}
        out.update(self.per_interface.get(name, {}))
        return out

    def to_dict(self) -> dict:
        d = {"exposed": self.exposed, "exposed_delta": self.exposed_delta, "negative_delta": self.negative_delta}
        if self.per_interface:
            d["per_interface"] = {k: dict(v) for k, v in self.per_interface.items()}
        return d


@attrs.frozen
class FootprintParams:
    """The footprint decision rule (docs/engine.md) and its defaults."""

    weak_signal: float = 0.05  # signal = |a11 - a00| below this -> weak
    ratio: float = 0.70  # a ratio must exceed this ...
    lead: float = 0.20  # ... and lead the next ratio by at least this
    eps: float = 1e-8

    def to_dict(self) -> dict:
        return attrs.asdict(self)


@attrs.frozen
class CheckpointSpec:
    """One checkpoint to audit (or the clean reference)."""

    name: str
    source: str
    loader: str = "auto"
    options: dict = attrs.field(factory=dict)
    #: inline attack card; overrides the one in the checkpoint's manifest
    attack: Optional[dict] = None
    #: ``true`` or a table of scan options: run ``dife scan`` first and, when the
    #: checkpoint has no card, audit it with the card the scan recovers
    scan: Any = None

    def to_dict(self) -> dict:
        d: dict = {"name": self.name, "source": self.source, "loader": self.loader}
        if self.options:
            d["options"] = dict(self.options)
        if self.attack is not None:
            d["attack"] = self.attack
        if self.scan is not None:
            d["scan"] = self.scan
        return d


@attrs.frozen
class PopulationSpec:
    """Where the populations come from: a registered dataset and its options."""

    dataset: str
    options: dict = attrs.field(factory=dict)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "options": dict(self.options)}


@attrs.frozen
class AuditSpec:
    """A validated audit spec. Build it with :meth:`from_dict` or :func:`load_spec`."""

    checkpoints: tuple
    populations: PopulationSpec
    clean: Optional[CheckpointSpec] = None
    interfaces: Any = "all"  # "all" or a tuple of interface ids
    seed: int = 0
    #: several seeds: every population / trigger draw is repeated per seed and
    #: reported as mean ± std (empty: just ``seed``)
    seeds: tuple = ()
    device: str = "cpu"
    batch_size: int = 256
    controls: bool = True
    templates: str = "first"  # "first" or "all": which prompt templates make class prompts
    ranking_chunk: int = 4096
    thresholds: Thresholds = attrs.field(factory=Thresholds)
    footprint: FootprintParams = attrs.field(factory=FootprintParams)
    interface_options: dict = attrs.field(factory=dict)
    #: where units of work run: "local" (this process) or "ray" (docs/scale-out.md)
    executor: str = "local"
    #: a Ray cluster on this machine ("auto" or a loopback host:port); None: a new local one
    ray_address: Optional[str] = None
    #: where the spec came from (messages only; not part of the spec)
    origin: str = attrs.field(default="spec", eq=False)

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, *, base_dir=None, where: str = "spec") -> "AuditSpec":
        """Check the structure of ``data`` and build the spec.

        Relative checkpoint sources that exist under ``base_dir`` (the spec
        file's folder) are made absolute, so the spec written beside the
        results runs from anywhere. Raises :class:`InvalidInputError` listing
        every problem found.
        """
        problems: list = []
        spec = _parse(data, Path(base_dir) if base_dir is not None else None, problems)
        if problems:
            raise spec_error(where, problems)
        return attrs.evolve(spec, origin=where)

    @property
    def seed_list(self) -> tuple:
        """The seeds the audit runs: ``seeds`` if given, else ``(seed,)``."""
        return tuple(self.seeds) or (self.seed,)

    def with_seeds(self, seeds) -> "AuditSpec":
        seeds = tuple(int(x) for x in seeds or ())
        return self if not seeds else attrs.evolve(self, seeds=seeds, seed=seeds[0])

    def with_device(self, device: Optional[str]) -> "AuditSpec":
        return self if not device else attrs.evolve(self, device=str(device))

    # -- views -------------------------------------------------------------------
    def to_dict(self) -> dict:
        d: dict = {
            "seed": self.seed, **({"seeds": list(self.seeds)} if self.seeds else {}),
            "device": self.device, "batch_size": self.batch_size,
            "interfaces": self.interfaces if isinstance(self.interfaces, str) else list(self.interfaces),
            "controls": self.controls, "templates": self.templates, "ranking_chunk": self.ranking_chunk,
            "populations": self.populations.to_dict(),
        }
        if self.clean is not None:
            d["clean"] = self.clean.to_dict()
        d["checkpoints"] = [c.to_dict() for c in self.checkpoints]
        d["thresholds"] = self.thresholds.to_dict()
        d["footprint"] = self.footprint.to_dict()
        if self.interface_options:
            d["interface_options"] = {k: dict(v) for k, v in self.interface_options.items()}
        if self.executor != "local":
            d["executor"] = self.executor
        if self.ray_address is not None:
            d["ray_address"] = self.ray_address
        return d

    def to_toml(self) -> str:
        from .toml_writer import dumps

        return "# DIFE audit spec (run it with: dife audit spec.toml --out DIR)\n" + dumps(self.to_dict())

    def interface_ids(self, registered) -> list:
        """The interfaces to audit, in report order (built-ins first)."""
        if self.interfaces == "all":
            # report order comes from the cards: ``order``, then id
            return [i.name for i in sorted(registered.values(), key=lambda i: (i.card.order, i.name))]
        return list(self.interfaces)


def spec_error(where: str, problems: list) -> InvalidInputError:
    """One error listing every problem: exit 3 when any is unsafe, else exit 2."""
    n = len(problems)
    body = "; ".join(str(p) for p in problems)
    unsafe = any(getattr(p, "unsafe", False) for p in problems)
    cls = UnsafeCheckpointError if unsafe else InvalidInputError
    return cls(f"{where}: {n} problem{'s' if n != 1 else ''} in the audit spec: {body}.",
               hint="See docs/spec.md for the keys, what each allows and the bounds (raise a bound with "
                    "--limit KEY=VALUE).")


def read_toml(p: Path, what: str = "audit spec") -> Any:
    """A TOML file's table, every failure one paragraph naming the file."""
    import tomllib

    from .. import safetext

    if not p.is_file():
        raise InvalidInputError(f"{what} {safetext.terminal(p)} does not exist.")
    cap = limit("spec_bytes")
    with open(p, "rb") as f:
        raw = f.read(cap + 1)
    if len(raw) > cap:
        raise InvalidInputError(f"{p}: the {what} is larger than {cap} bytes (bound spec_bytes; raise it with "
                                f"--limit spec_bytes=N).")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{p}: not UTF-8 text (byte {e.start}: {e.reason}); a {what} is UTF-8 TOML.") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidInputError(f"{p}: not valid TOML ({e}).") from e
    except RecursionError as e:
        raise InvalidInputError(f"{p}: arrays or tables are nested too deeply to read (bound nesting_depth "
                                f"{limit('nesting_depth')}).") from e
    except ValueError as e:  # e.g. an integer of thousands of digits
        raise InvalidInputError(f"{p}: a value cannot be read ({e}).") from e


def load_spec(path) -> AuditSpec:
    """Read and check a TOML audit spec."""
    p = Path(path)
    data = read_toml(p)
    return AuditSpec.from_dict(data, base_dir=p.parent, where=str(p))


# -- bounds on untrusted values ---------------------------------------------------------

def _label(k) -> str:
    """A table key as shown in a message (hostile keys are cut and escaped)."""
    s = str(k)
    if len(s) <= 64 and s.isascii() and s.isprintable() and "." not in s and '"' not in s:
        return s
    return repr(s[:40] + ("..." if len(s) > 40 else ""))


def _join(key: str, k) -> str:
    return f"{key}.{_label(k)}" if key else _label(k)


def _surrogate(s: str) -> Optional[int]:
    try:
        s.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return e.start


def value_problems(data: Any, key: str = "") -> list:
    """Problems with the *values* of an untrusted table, whatever its schema:
    nesting depth, number of values, string lengths, lone surrogates, NaN /
    Inf, integers beyond 64 bits, non-string keys, unsafe keys (``trust``,
    ``trust_remote_code``, ``auto_map``). Iterative: a deeply nested input
    cannot exhaust the stack."""
    problems: list = []
    depth_cap, count_cap = limit("nesting_depth"), limit("spec_values")
    str_cap, name_cap = limit("string_chars"), limit("name_chars")
    todo = [(data, key, 0)]
    count = 0
    while todo:
        x, k, depth = todo.pop()
        count += 1
        if count > count_cap:
            problems.append(Problem(key or "(top)", f"more than {count_cap} values (bound spec_values)"))
            break
        where = k or "(top)"
        if isinstance(x, dict):
            if depth >= depth_cap:
                problems.append(Problem(where, f"nested more than {depth_cap} levels deep (bound nesting_depth)"))
                continue
            for kk, v in x.items():
                if not isinstance(kk, str):
                    problems.append(Problem(where, f"keys must be strings, got {type(kk).__name__}"))
                    continue
                if len(kk) > name_cap:
                    problems.append(Problem(_join(k, kk), f"a key of {len(kk)} characters (bound name_chars "
                                                          f"{name_cap})"))
                    continue
                if _surrogate(kk) is not None:
                    problems.append(Problem(_join(k, kk), "the key contains a lone surrogate (not Unicode text)"))
                    continue
                if kk in UNSAFE_KEYS and not (kk == "trust" and v is False):
                    problems.append(Problem(_join(k, kk), _UNSAFE_WHY[kk], unsafe=True))
                    continue
                todo.append((v, _join(k, kk), depth + 1))
        elif isinstance(x, (list, tuple)):
            if depth >= depth_cap:
                problems.append(Problem(where, f"nested more than {depth_cap} levels deep (bound nesting_depth)"))
                continue
            if len(x) > count_cap:
                problems.append(Problem(where, f"an array of {len(x)} values (bound spec_values {count_cap})"))
                continue
            todo.extend((v, f"{k}[{i}]", depth + 1) for i, v in enumerate(x))
        elif isinstance(x, bool) or x is None:
            pass
        elif isinstance(x, float):
            if not math.isfinite(x):
                problems.append(Problem(where, f"{x!r} is not a finite number"))
        elif isinstance(x, int):
            if x.bit_length() > 63:
                problems.append(Problem(where, f"an integer of {x.bit_length()} bits (at most 64-bit integers)"))
        elif isinstance(x, str):
            if len(x) > str_cap:
                problems.append(Problem(where, f"a string of {len(x)} characters (bound string_chars {str_cap})"))
            elif "\0" in x:
                problems.append(Problem(where, "contains a NUL character"))
            else:
                pos = _surrogate(x)
                if pos is not None:
                    problems.append(Problem(where, f"contains a lone surrogate at character {pos} (not Unicode "
                                                   f"text)"))
        else:
            problems.append(Problem(where, f"unsupported value of type {type(x).__name__}"))
    return sorted(problems, key=lambda p: p.key)


_UNSAFE_WHY = {
    "trust": "trust cannot come from a file: a spec is as untrusted as a checkpoint. Trust a checkpoint on the "
             "command line with --trust-checkpoint NAME",
    "trust_remote_code": "refused: it would run code shipped with the files; DIFE never does",
    "auto_map": "refused: it names code to import from the files; DIFE never does",
}


def _bounded_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def option_problems(opts: Any, key: str) -> list:
    """Bounds on the numbers of an options table (dataset, interface, card
    config, trigger params): step counts (``*steps*`` keys) by ``steps``,
    seeds by ``seed``, image sides by ``dataset_image_size``, any other count
    by ``population``."""
    problems: list = []
    todo = [(opts, key, 0)]
    while todo:
        x, k, depth = todo.pop()
        if depth > limit("nesting_depth"):
            continue
        if isinstance(x, dict):
            todo.extend((v, _join(k, kk), depth + 1) for kk, v in x.items() if isinstance(kk, str))
            continue
        if isinstance(x, (list, tuple)):
            todo.extend((v, f"{k}[{i}]", depth + 1) for i, v in enumerate(x))
            continue
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            continue
        name = k.rsplit(".", 1)[-1].split("[", 1)[0].lower()
        if "steps" in name:
            bound, cap = "steps", limit("steps")
        elif "seed" in name:
            bound, cap = "seed", limit("seed")
        elif name == "image_size":
            bound, cap = "dataset_image_size", limit("dataset_image_size")
        elif _bounded_int(x) or (isinstance(x, float) and x.is_integer() and abs(x) > 1):
            bound, cap = "population", limit("population")
        else:
            continue
        if isinstance(x, float) and math.isfinite(x) and abs(x) > cap:
            problems.append(Problem(k, f"{x!r} is beyond the bound {bound} ({cap}); raise it with --limit "
                                       f"{bound}=N"))
        elif _bounded_int(x) and abs(x) > cap:
            problems.append(Problem(k, f"{x} is beyond the bound {bound} ({cap}); raise it with --limit {bound}=N"))
    return problems


# -- structural parsing ---------------------------------------------------------------

_TOP = {"seed", "seeds", "device", "batch_size", "interfaces", "controls", "templates", "ranking_chunk", "populations",
        "clean", "checkpoints", "thresholds", "footprint", "interface_options", "executor", "ray_address"}
_CKPT = {"name", "source", "loader", "trust", "options", "attack", "scan"}
_POP = {"dataset", "options"}
_THR = {"exposed", "exposed_delta", "negative_delta", "per_interface"}
_FP = {"weak_signal", "ratio", "lead", "eps"}


def _unknown(d: dict, allowed: set, key: str, problems: list) -> None:
    for k in d:
        if k not in allowed:
            problems.append(Problem(f"{key}.{k}" if key else k,
                                    f"unknown key; allowed: {', '.join(sorted(allowed))}"))


def _table(d: dict, k: str, key: str, problems: list, *, required=False) -> Optional[dict]:
    v = d.get(k)
    if v is None:
        if required:
            problems.append(Problem(key, "missing (a table)"))
        return None
    if not isinstance(v, dict):
        problems.append(Problem(key, f"must be a table, got {type(v).__name__}"))
        return None
    return v


def _num(d: dict, k: str, default, key: str, problems: list, *, kind=float, low=None, high=None,
         bound: Optional[str] = None):
    if k not in d:
        return default
    v = d[k]
    if bound is not None:
        high = limit(bound)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    if not ok or (isinstance(v, float) and math.isnan(v)):
        problems.append(Problem(key, f"must be {'an integer' if kind is int else 'a number'}, got {v!r}"))
        return default
    if (low is not None and v < low) or (high is not None and v > high):
        rng = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        more = f" (bound {bound}; raise it with --limit {bound}=N)" if bound else ""
        problems.append(Problem(key, f"must be in {rng}, got {v!r}{more}"))
        return default
    return kind(v)


def _str(d: dict, k: str, default, key: str, problems: list, *, choices=None, required=False):
    if k not in d:
        if required:
            problems.append(Problem(key, "missing (a string)"))
        return default
    v = d[k]
    if not isinstance(v, str) or not v:
        problems.append(Problem(key, f"must be a non-empty string, got {v!r}"))
        return default
    if choices is not None and v not in choices:
        problems.append(Problem(key, f"must be one of {', '.join(choices)}; got {v!r}"))
        return default
    return v


def _bool(d: dict, k: str, default, key: str, problems: list):
    if k not in d:
        return default
    if not isinstance(d[k], bool):
        problems.append(Problem(key, f"must be true or false, got {d[k]!r}"))
        return default
    return d[k]


def _exists(p) -> bool:
    try:
        return os.path.exists(p)
    except (OSError, ValueError):
        return False


def _resolve_source(source: str, base_dir: Optional[Path]) -> str:
    if base_dir is None or os.path.isabs(source):
        return source
    cand = base_dir / source
    return str(cand.resolve()) if _exists(cand) else source


def _checkpoint(d, key: str, base_dir, problems: list) -> Optional[CheckpointSpec]:
    if not isinstance(d, dict):
        problems.append(Problem(key, f"must be a table, got {type(d).__name__}"))
        return None
    _unknown(d, _CKPT, key, problems)
    source = _str(d, "source", None, f"{key}.source", problems, required=True)
    if source is None:
        return None
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in source.split("/")):
        problems.append(Problem(f"{key}.source", "a path component longer than 255 bytes (no file system has one)"))
        return None
    source = _resolve_source(source, base_dir)
    default_name = Path(source.rstrip("/")).name or source
    name = _str(d, "name", default_name, f"{key}.name", problems)
    if isinstance(name, str) and len(name) > limit("name_chars"):
        problems.append(Problem(f"{key}.name", f"a name of {len(name)} characters (bound name_chars "
                                               f"{limit('name_chars')})"))
        name = name[:limit("name_chars")]
    if CONTROL_SEP in name:
        problems.append(Problem(f"{key}.name", f"{name!r} contains {CONTROL_SEP!r}, reserved for control rows "
                                               f"(clean{CONTROL_SEP}<checkpoint>)"))
    loader = _str(d, "loader", "auto", f"{key}.loader", problems)
    # ``trust`` is never read: value_problems refuses any value but false (older spec.toml files)
    options = _table(d, "options", f"{key}.options", problems) or {}
    attack = d.get("attack")
    if attack is not None and not isinstance(attack, dict):
        problems.append(Problem(f"{key}.attack", f"must be a table (an attack card), got {type(attack).__name__}"))
        attack = None
    if attack is not None:
        problems.extend(check_attack_card(attack, f"{key}.attack", registry=False))
    scan = d.get("scan")
    if scan is not None and not isinstance(scan, (bool, dict)):
        problems.append(Problem(f"{key}.scan", f"must be true, false or a table of scan options "
                                               f"(docs/scan.md), got {type(scan).__name__}"))
        scan = None
    # loader options and scan budgets (steps, candidates, strings enumerated) are counts a file
    # must not set beyond the bounds
    problems.extend(option_problems(options, f"{key}.options"))
    if isinstance(scan, dict):
        problems.extend(option_problems(scan, f"{key}.scan"))
    return CheckpointSpec(name=name, source=source, loader=loader, options=dict(options),
                          attack=dict(attack) if attack is not None else None,
                          scan=dict(scan) if isinstance(scan, dict) else scan)


#: sources that stand for many checkpoints (docs/spec.md, "Many checkpoints")
GLOB, FOLDER = "glob:", "dir:"


def _checkpoints(d, key: str, base_dir, problems: list) -> list:
    """One ``[[checkpoints]]`` table: a checkpoint, or for a ``glob:PATTERN`` /
    ``dir:PATH`` source one per match, named from its path. A pattern or folder
    is relative to the spec file's folder; matches beyond the ``checkpoints``
    bound stop the reading."""
    source = d.get("source") if isinstance(d, dict) else None
    if not (isinstance(source, str) and source.startswith((GLOB, FOLDER))):
        ck = _checkpoint(d, key, base_dir, problems)
        return [ck] if ck is not None else []
    if "name" in d:
        problems.append(Problem(f"{key}.name", "a glob: or dir: source names each checkpoint from its path; "
                                               "drop name (or list the checkpoints one by one)"))
        return []
    matches = _expand_source(source, base_dir, f"{key}.source", problems)
    out, seen = [], set()
    for i, path in enumerate(matches):
        name = _derived_name(path, seen)
        # the table's other keys (loader, options, attack) apply to every match; checked once
        ck = _checkpoint({**d, "source": path, "name": name}, key, None, problems if i == 0 else [])
        if ck is not None:
            out.append(ck)
    return out


def _expand_source(source: str, base_dir, key: str, problems: list) -> list:
    import glob as globmod

    base = Path(base_dir) if base_dir is not None else Path.cwd()
    cap = limit("checkpoints")
    if source.startswith(FOLDER):
        folder = Path(source[len(FOLDER):])
        folder = folder if folder.is_absolute() else base / folder
        if not folder.is_dir():
            problems.append(Problem(key, f"{source!r:.200}: {str(folder)!r:.200} is not a folder"))
            return []
        found = []
        with os.scandir(folder) as it:
            for entry in it:
                if not entry.name.startswith("."):
                    found.append(entry.path)
                if len(found) > cap:
                    break
    else:
        pattern = source[len(GLOB):]
        if not pattern:
            problems.append(Problem(key, "glob: needs a pattern, e.g. glob:models/*/"))
            return []
        root = None if os.path.isabs(pattern) else str(base)
        found = []
        for m in globmod.iglob(pattern, root_dir=root, recursive=False):  # ** is *: no tree walk
            found.append(m if root is None else os.path.join(root, m))
            if len(found) > cap:
                break
    if len(found) > cap:
        problems.append(Problem(key, f"{source!r:.200} matches more than {cap} checkpoints (bound checkpoints; "
                                     f"raise it with --limit checkpoints=N)"))
        return []
    if not found:
        problems.append(Problem(key, f"{source!r:.200} matches no file or folder (relative to {str(base)!r:.200})"))
    return sorted(str(Path(f).resolve()) for f in found)


def _derived_name(path: str, seen: set) -> str:
    """A checkpoint name from its path: the folder name, or the file name without
    its suffix; characters outside letters, digits and ``._+-`` become ``_``; a
    name taken by an earlier match gets ``-2``, ``-3`` ..."""
    p = Path(path)
    raw = p.stem if p.is_file() else p.name
    name = "".join(ch if (ch.isalnum() and ch.isascii()) or ch in "._+-" else "_" for ch in raw)
    name = name.strip(".")[: max(1, limit("name_chars") - 8)] or "checkpoint"
    base, n = name, 2
    while name in seen:
        name, n = f"{base}-{n}", n + 1
    seen.add(name)
    return name


def _loopback(address: str) -> bool:
    """A Ray address on this machine: ``auto`` or a loopback host."""
    if address == "auto":
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _parse(data: Any, base_dir: Optional[Path], problems: list) -> AuditSpec:
    if not isinstance(data, dict):
        problems.append(Problem("(top)", f"the spec must be a table, got {type(data).__name__}"))
        data = {}
    generic = value_problems(data)
    problems.extend(generic)
    if any(not p.unsafe for p in generic):  # malformed values: stop before reading them (no cascade)
        return AuditSpec(checkpoints=(), populations=PopulationSpec(dataset=""))
    _unknown(data, _TOP, "", problems)
    seed = _num(data, "seed", 0, "seed", problems, kind=int, low=0, bound="seed")
    seeds: tuple = ()
    if "seeds" in data:
        raw = data["seeds"]
        if (not isinstance(raw, list) or not raw or len(raw) > 64
                or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= limit("seed") for x in raw)):
            problems.append(Problem("seeds", f"must be a non-empty list of at most 64 seeds (integers in "
                                             f"[0, {limit('seed')}]), got {raw!r}"))
        elif len(set(raw)) != len(raw):
            problems.append(Problem("seeds", f"lists a seed more than once: {raw!r}"))
        else:
            seeds = tuple(raw)
            if "seed" in data and seed != seeds[0]:
                problems.append(Problem("seed", "give either seed or seeds (seed is the first of seeds)"))
            seed = seeds[0]
    device = _str(data, "device", "cpu", "device", problems)
    if isinstance(device, str) and device.split(":")[0] not in ("cpu", "cuda", "mps", "xpu"):
        problems.append(Problem("device", f"unknown device {device!r}; use cpu, cuda or cuda:N"))
    batch_size = _num(data, "batch_size", 256, "batch_size", problems, kind=int, low=1, bound="batch_size")
    ranking_chunk = _num(data, "ranking_chunk", 4096, "ranking_chunk", problems, kind=int, low=1,
                         bound="ranking_chunk")
    controls = _bool(data, "controls", True, "controls", problems)
    templates = _str(data, "templates", "first", "templates", problems, choices=("first", "all"))
    interfaces: Any = data.get("interfaces", "all")
    if interfaces != "all":
        if not isinstance(interfaces, list) or not interfaces or not all(isinstance(i, str) for i in interfaces):
            problems.append(Problem("interfaces",
                                    f'must be "all" or a non-empty list of interface ids, got {interfaces!r}'))
            interfaces = "all"
        else:
            dup = sorted({i for i in interfaces if interfaces.count(i) > 1})
            if dup:
                problems.append(Problem("interfaces", f"listed more than once: {', '.join(dup)}"))
            interfaces = tuple(dict.fromkeys(interfaces))

    pop = _table(data, "populations", "populations", problems, required=True) or {}
    _unknown(pop, _POP, "populations", problems)
    dataset = _str(pop, "dataset", "", "populations.dataset", problems, required=bool(pop) or "populations" in data)
    popts = _table(pop, "options", "populations.options", problems) or {}
    problems.extend(option_problems(popts, "populations.options"))
    populations = PopulationSpec(dataset=dataset or "", options=dict(popts))

    clean = None
    if "clean" in data:
        clean = _checkpoint(data["clean"], "clean", base_dir, problems)
        if clean is not None and clean.attack is not None:
            problems.append(Problem("clean.attack", "the clean reference carries no attack card"))
    raw_ck = data.get("checkpoints")
    ckpts: list = []
    if raw_ck is None:
        problems.append(Problem("checkpoints", "missing: give at least one [[checkpoints]] table"))
    elif not isinstance(raw_ck, list) or not raw_ck:
        problems.append(Problem("checkpoints", "must be a non-empty array of tables ([[checkpoints]])"))
    elif len(raw_ck) > limit("checkpoints"):
        problems.append(Problem("checkpoints", f"{len(raw_ck)} checkpoints (bound checkpoints "
                                               f"{limit('checkpoints')}; raise it with --limit checkpoints=N)"))
    else:
        for i, c in enumerate(raw_ck):
            ckpts.extend(_checkpoints(c, f"checkpoints[{i}]", base_dir, problems))
        if len(ckpts) > limit("checkpoints"):
            problems.append(Problem("checkpoints", f"{len(ckpts)} checkpoints once glob: and dir: sources are "
                                                   f"expanded (bound checkpoints {limit('checkpoints')}; raise it "
                                                   f"with --limit checkpoints=N)"))
    names = [c.name for c in ckpts] + ([clean.name] if clean is not None else [])
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem("checkpoints", f"name {n!r} is used more than once; give each a distinct name"))

    thr = _table(data, "thresholds", "thresholds", problems) or {}
    _unknown(thr, _THR, "thresholds", problems)
    per: dict = {}
    raw_per = _table(thr, "per_interface", "thresholds.per_interface", problems) or {}
    for iname, t in raw_per.items():
        k = f"thresholds.per_interface.{iname}"
        if not isinstance(t, dict):
            problems.append(Problem(k, "must be a table"))
            continue
        _unknown(t, _THR - {"per_interface"}, k, problems)
        per[iname] = {kk: _num(t, kk, None, f"{k}.{kk}", problems, low=-1.0, high=1.0)
                      for kk in ("exposed", "exposed_delta", "negative_delta") if kk in t}
    thresholds = Thresholds(
        exposed=_num(thr, "exposed", 0.50, "thresholds.exposed", problems, low=0.0, high=1.0),
        exposed_delta=_num(thr, "exposed_delta", 0.20, "thresholds.exposed_delta", problems, low=0.0, high=1.0),
        negative_delta=_num(thr, "negative_delta", -0.02, "thresholds.negative_delta", problems, low=-1.0, high=0.0),
        per_interface=per,
    )
    fp = _table(data, "footprint", "footprint", problems) or {}
    _unknown(fp, _FP, "footprint", problems)
    footprint = FootprintParams(
        weak_signal=_num(fp, "weak_signal", 0.05, "footprint.weak_signal", problems, low=0.0, high=1.0),
        ratio=_num(fp, "ratio", 0.70, "footprint.ratio", problems, low=0.0, high=1.0),
        lead=_num(fp, "lead", 0.20, "footprint.lead", problems, low=0.0, high=1.0),
        eps=_num(fp, "eps", 1e-8, "footprint.eps", problems, low=0.0, high=1.0),
    )
    iopts = _table(data, "interface_options", "interface_options", problems) or {}
    for k, v in iopts.items():
        if not isinstance(v, dict):
            problems.append(Problem(f"interface_options.{k}", "must be a table of options"))
        else:
            problems.extend(option_problems(v, f"interface_options.{_label(k)}"))
    executor = _str(data, "executor", "local", "executor", problems, choices=("local", "ray"))
    ray_address = _str(data, "ray_address", None, "ray_address", problems)
    if ray_address is not None and not _loopback(ray_address):
        problems.append(Problem("ray_address", f"{ray_address!r:.80} is not on this machine: a spec cannot send "
                                               f"checkpoints to a network host; give the cluster on the command "
                                               f"line (--ray-address)", unsafe=True))
        ray_address = None
    return AuditSpec(
        executor=executor, ray_address=ray_address,
        checkpoints=tuple(ckpts), populations=populations, clean=clean, interfaces=interfaces, seed=seed,
        seeds=seeds,
        device=device, batch_size=batch_size, controls=controls, templates=templates,
        ranking_chunk=ranking_chunk, thresholds=thresholds, footprint=footprint,
        interface_options={k: dict(v) for k, v in iopts.items() if isinstance(v, dict)},
    )


# -- attack cards --------------------------------------------------------------------

def check_attack_card(card: Any, key: str, *, registry: bool = True) -> list:
    """Problems with an attack card (inline or from a manifest), as :class:`Problem` s.

    The values are bounded first (NaN, lone surrogates, huge or deeply nested
    values stop the reading); the card itself is checked by its one validator,
    :meth:`dife_core.cards.AttackCard.problems` (with ``registry``: the
    trigger family is registered, acts on the card's channel and accepts its
    parameters).
    """
    from ..cards import AttackCard

    if not isinstance(card, dict):
        return [Problem(key, f"must be a table (an attack card), got {type(card).__name__}")]
    generic = value_problems(card, key)
    if generic:  # NaN, lone surrogates, huge values: the card is not read further
        return generic
    problems: list = []
    for part in ("config", "trigger"):
        if isinstance(card.get(part), dict):
            problems.extend(option_problems(card[part], f"{key}.{part}"))
    problems += [Problem(f"{key}.{k}" if k else key, m)
                 for k, m in AttackCard.from_dict(card).problems(registry=registry and not problems)]
    return problems


# -- registry-aware validation --------------------------------------------------------

def validate_spec(spec) -> list:
    """Every problem with ``spec`` (an AuditSpec, a dict or a TOML path).

    Returns a list of :class:`Problem` (empty when the spec can run).
    Structural problems come first; registry checks (interfaces, loaders,
    dataset and its options, trigger families, checkpoint sources and their
    attack cards) follow.
    """
    from ..checkpoint import is_checkpoint, read_manifest
    from ..errors import DifeError
    from ..plugins import get_registry

    if not isinstance(spec, AuditSpec):
        try:
            spec = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else AuditSpec.from_dict(spec)
        except (InvalidInputError, UnsafeCheckpointError) as e:
            return [Problem("(spec)", str(e), unsafe=isinstance(e, UnsafeCheckpointError))]
    reg = get_registry()
    problems: list = []
    ifaces = reg.all("interfaces")
    if spec.interfaces != "all":
        for i, n in enumerate(spec.interfaces):
            if n not in ifaces:
                problems.append(Problem(f"interfaces[{i}]", f"unknown interface {n!r}; {available(ifaces)}"))
    for prefix, names in (("thresholds.per_interface", spec.thresholds.per_interface),
                          ("interface_options", spec.interface_options)):
        for n in names:
            if n not in ifaces:
                problems.append(Problem(f"{prefix}.{n}", f"unknown interface {n!r}; {available(ifaces)}"))
    for n, opts in spec.interface_options.items():
        if n in ifaces:  # a card declares its options; anything else is a typo
            declared = ifaces[n].card.options
            for k in opts:
                if k not in declared:
                    problems.append(Problem(f"interface_options.{n}.{k}",
                                            f"interface {n!r} has no option {k!r}; "
                                            + (f"options: {', '.join(sorted(declared))}" if declared
                                               else "it declares no options")))
    datasets = reg.all("datasets")
    if spec.populations.dataset and spec.populations.dataset not in datasets:
        problems.append(Problem("populations.dataset",
                                f"unknown dataset {spec.populations.dataset!r}; {available(datasets)}"))
    elif spec.populations.dataset:
        ds = datasets[spec.populations.dataset]
        if ds.options:
            for k, v in spec.populations.options.items():
                if k not in ds.options:
                    problems.append(Problem(f"populations.options.{_label(k)}",
                                            f"dataset {ds.name!r} has no option {k!r}; {available(ds.options)}"))
                elif not _like(v, ds.options[k]):
                    problems.append(Problem(f"populations.options.{_label(k)}",
                                            f"must be {_kind(ds.options[k])} like its default "
                                            f"{ds.options[k]!r}, got {v!r:.60}"))
    loaders = reg.all("model_loaders")
    rows = ([("clean", spec.clean)] if spec.clean is not None else []) + \
        [(f"checkpoints[{i}]", c) for i, c in enumerate(spec.checkpoints)]
    for key, c in rows:
        if c.loader != "auto" and c.loader not in loaders:
            problems.append(Problem(f"{key}.loader", f"unknown loader {c.loader!r}; auto or {available(loaders)}"))
            continue
        card = c.attack
        try:
            is_ckpt = is_checkpoint(c.source)
        except (OSError, ValueError) as e:
            problems.append(Problem(f"{key}.source", f"cannot be read ({type(e).__name__}: {str(e)[:120]})"))
            continue
        if is_ckpt:
            try:
                m = read_manifest(c.source)
                if card is None and key != "clean":
                    card = m.get("attack")
            except DifeError as e:
                problems.append(Problem(f"{key}.source", str(e)))
        elif c.loader == "auto" and not _sniffed(c.source, loaders):
            where = "is not an existing file or folder and " if not _exists(c.source) else ""
            problems.append(Problem(f"{key}.source", f"{c.source!r} {where}no loader recognises it; "
                                                     f"set loader to one of: {', '.join(sorted(loaders)) or '(none)'}"))
        if key != "clean" and card is not None:
            problems.extend(check_attack_card(card, f"{key}.attack" if c.attack is not None else
                                              f"{key} (manifest attack card)"))
    return problems


def _kind(default) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(default), "a list")


def _like(value, default) -> bool:
    """``value`` has the type of a dataset option's documented default (None: anything)."""
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return True


def _sniffed(source: str, loaders: dict) -> bool:
    for ld in loaders.values():
        if ld.sniff is None:
            continue
        try:
            if ld.sniff(source):
                return True
        except Exception:
            continue
    return False


def require_valid(spec: AuditSpec) -> None:
    problems = validate_spec(spec)
    if problems:
        raise spec_error(spec.origin, problems)
