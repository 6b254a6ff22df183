"""Running attack recipes into DIFE checkpoints.

An attack plugin registers a :class:`dife_core.types.Attack`: a card, an attrs
config class (its defaults are the documented defaults) and a builder
``build(ctx) -> BuildResult``. This module is the only place that runs
builders, so every attack gets the same treatment:

1. the config is made from the class defaults plus user overrides, with
   errors that name the key and list the valid ones (:func:`make_config`);
2. the build is keyed by content -- the source of the attack's package and
   of the core modules that decide a build (:data:`CORE_SOURCES`), the
   clean model's encoder package, the config, the clean checkpoint
   fingerprint, the world's content and the seed -- and an existing
   checkpoint with the same key is reused instead of rebuilt
   (:func:`build_key`); a code change rebuilds even without a version bump;
3. the builder trains a private copy of the clean model;
4. its attack card is checked and completed (attack id, probe, config) and
   the result is written with :func:`dife_core.checkpoint.save_checkpoint`,
   the build record under the manifest's ``extra.build``.

Torch is imported lazily; :func:`make_config` and :func:`config_fields` are
cheap (``dife attacks`` uses them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import weakref
from pathlib import Path
from typing import Callable, Optional

import attrs

from .errors import InvalidInputError, NotFoundError, PluginError, available

#: Keys every per-checkpoint attack card carries (see dife_core.attacks.BuildResult).
CARD_KEYS = ("attack", "route", "modifies", "trigger", "source", "target", "native",
             "clean_utility", "probe", "config")
#: Optional card keys; anything else belongs inside ``native`` (free-form beyond its four keys).
OPTIONAL_CARD_KEYS = ("title", "reference", "readouts")
NATIVE_KEYS = ("protocol", "metric", "value", "reference_value")
TRIGGER_KEYS = ("channel", "name", "params")


# -- configs ---------------------------------------------------------------------

def config_fields(config_cls) -> list:
    """``[{"name", "default", "doc"}]`` for an attack's attrs config class."""
    out = []
    for f in attrs.fields(config_cls):
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        out.append({"name": f.name, "default": default, "doc": f.metadata.get("doc", "")})
    return out


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "table"
    return type(v).__name__


def make_config(attack, overrides: Optional[dict] = None, *, where: str = "config"):
    """The attack's config: documented defaults with ``overrides`` applied.

    Unknown keys and values of the wrong kind raise InvalidInputError naming
    ``where`` (e.g. ``"spec.toml: attacks[0].config"``) and the valid keys.
    A table-valued field (e.g. a trigger's parameters) is merged key by key
    into its default, so ``trigger = {size = 0.2}`` keeps the other defaults.
    """
    cls = attack.config
    overrides = dict(overrides or {})
    fields = {f["name"]: f for f in config_fields(cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown key(s) {', '.join(unknown)} for attack {attack.name!r}; "
            f"valid keys: {', '.join(sorted(fields))}."
        )
    values = {}
    for key, value in overrides.items():
        default = fields[key]["default"]
        if default is not None and value is not None and _kind(default) != _kind(value):
            raise InvalidInputError(
                f"{where}.{key}: expected a {_kind(default)} (default {default!r}), got {value!r}."
            )
        if isinstance(default, dict) and isinstance(value, dict):
            value = {**default, **value}
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[key] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{where}: invalid value for attack {attack.name!r}: {e}") from e


def config_to_dict(config) -> dict:
    """JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(attrs.asdict(config), default=list))


# -- triggers --------------------------------------------------------------------

def trigger_params(name: str, params: Optional[dict] = None, *, where: str = "trigger") -> dict:
    """The full parameter set of a registered trigger: its defaults plus ``params``."""
    from .plugins import get_registry

    trig = get_registry().get("triggers", name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(trig.defaults))
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown parameter(s) {', '.join(unknown)} for trigger {name!r}; "
            f"valid: {', '.join(sorted(trig.defaults)) or '(none)'}."
        )
    return {**trig.defaults, **params}


def resolve_trigger(spec, *, where: str = "trigger"):
    """The applying function of a trigger spec (``{"name", "params"}`` or a
    TriggerSpec): :func:`dife_core.engine.embeddings.resolve_trigger`, the one
    trigger resolution, whose result is callable."""
    from .engine.embeddings import resolve_trigger as _resolve

    return _resolve(spec, where=where)


def trigger_card(name: str, params: Optional[dict] = None, *, where: str = "trigger") -> dict:
    """The ``trigger`` entry of an attack card: channel, name and full parameters."""
    from .plugins import get_registry

    trig = get_registry().get("triggers", name)
    full = trigger_params(name, params, where=where)
    return {"channel": trig.channel, "name": name, "params": json.loads(json.dumps(full, default=list))}


# -- progress --------------------------------------------------------------------

def null_progress(description: str, total: Optional[int] = None):
    """A progress reporter that shows nothing (tests, quiet runs)."""
    from .progress import NULL

    return NULL.task(description, total)


def wants_progress(ctx) -> bool:
    """True when the build should show progress (a reporter that draws)."""
    p = ctx.progress
    return p is not None and p is not null_progress and getattr(p, "enabled", True)


def rich_progress(console=None):
    """The ``progress(description, total)`` reporter that draws bars on stderr
    (a :class:`dife_core.progress.Progress`)."""
    from .progress import Progress

    return Progress(True, console=console, transient=True)


# -- building --------------------------------------------------------------------

@attrs.frozen
class BuildOutcome:
    """What :func:`build_attack` did."""

    name: str  # checkpoint name
    attack: str
    path: Path
    card: dict
    key: str  # content key of the build
    reused: bool  # True when an existing checkpoint with the same key was reused
    seconds: float  # build time (0 when reused)


#: Core modules (relative to the dife_core package) whose code decides what a
#: build writes: the builder driver and card completion, the shared training
#: loop, the model and checkpoint code, and everything the native cell's
#: measurement runs (evaluate_cell, its embeddings, scoring, intervals and the
#: built-in interfaces and metrics). Spec parsing, reports and the CLI are left
#: out: they do not change a built checkpoint.
CORE_SOURCES = (
    "building.py", "attacks.py", "training.py", "cards.py", "checkpoint.py", "model.py", "metrics.py",
    "utility.py", "populations.py", "types.py",
    "engine/evaluate.py", "engine/cells.py", "engine/embeddings.py", "engine/applicability.py",
    "engine/context.py", "engine/scoring.py", "engine/intervals.py",
    "builtins/interfaces.py", "builtins/metrics.py",
)


def _package_files(module_name: str) -> tuple:
    """``(files, root)``: every ``.py`` file of the top-level package that defines
    ``module_name`` and the package folder (or the module's own file and its folder)."""
    import importlib.util
    import sys

    top = module_name.split(".")[0]
    mod = sys.modules.get(top)
    spec = getattr(mod, "__spec__", None) or importlib.util.find_spec(top)
    dirs = [Path(d) for d in (getattr(spec, "submodule_search_locations", None) or [])]
    if dirs:
        files = sorted((p for d in dirs for p in d.rglob("*.py") if "__pycache__" not in p.parts), key=str)
        return files, dirs[0]
    origin = getattr(spec, "origin", None) or getattr(sys.modules.get(module_name), "__file__", None)
    return ([Path(origin)], Path(origin).parent) if origin else ([], None)


def source_digest(files, root: Optional[Path] = None) -> str:
    """sha256 over the names (relative to ``root`` when given) and bytes of ``files``:
    the identity of the code that produced a cached result."""
    h = hashlib.sha256()
    for f in files:
        f = Path(f)
        name = str(f.relative_to(root)) if root is not None and f.is_relative_to(root) else f.name
        h.update(name.encode() + b"\0")
        h.update(f.read_bytes() if f.is_file() else b"<missing>")
        h.update(b"\0")
    return h.hexdigest()


def package_digest(module_name: str) -> str:
    """:func:`source_digest` of every ``.py`` file of the package defining ``module_name``."""
    return source_digest(*_package_files(module_name))


def core_digest() -> str:
    """:func:`source_digest` of :data:`CORE_SOURCES`."""
    here = Path(__file__).resolve().parent
    return source_digest([here / f for f in CORE_SOURCES], here)


def _tensor_digest(h, x) -> None:
    import numpy as np

    if x is None:
        h.update(b"<none>")
        return
    if hasattr(x, "detach"):
        x = x.detach().cpu().contiguous().numpy()
    if not isinstance(x, np.ndarray):
        # an object the digest cannot read (e.g. a function): its type only, never
        # a repr that carries a memory address
        h.update(f"<{type(x).__module__}.{type(x).__qualname__}>".encode())
        return
    a = np.ascontiguousarray(x)
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes() if a.dtype != object else json.dumps(a.tolist(), default=str).encode())


_WORLD_DIGESTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def world_digest(world) -> str:
    """Content identity of a world: its name, classes, templates, source and
    target, and the bytes of every population and extra it holds (two worlds
    with the same name but other data get different digests). Worlds are
    read-only, so the digest is remembered per world object."""
    try:
        return _WORLD_DIGESTS[world]
    except (KeyError, TypeError):
        pass
    digest = _world_digest(world)
    with contextlib.suppress(TypeError):
        _WORLD_DIGESTS[world] = digest
    return digest


def _world_digest(world) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([world.name, list(world.classnames), list(world.templates), world.source,
                         world.target]).encode())

    def add(obj):
        if obj is None or isinstance(obj, (str, int, float, bool)):
            h.update(repr(obj).encode())
        elif attrs.has(type(obj)):
            for f in attrs.fields(type(obj)):
                h.update(f.name.encode())
                add(getattr(obj, f.name))
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                h.update(str(k).encode())
                add(obj[k])
        elif isinstance(obj, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in obj):
            h.update(json.dumps(list(obj)).encode())
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                add(v)
        else:
            _tensor_digest(h, obj)

    for kind in ("classification", "train", "pool", "rerank", "selection", "shadow"):
        h.update(kind.encode())
        add(getattr(world, kind, None))
    add(dict(world.extras or {}))
    return h.hexdigest()[:20]


def build_key(attack, config, *, clean_fingerprint: dict, world=None, world_name: Optional[str] = None,
              seed: int, clean_encoder: Optional[str] = None) -> str:
    """Content key of a build: same code, config, clean model, world and seed -> same key.

    The code is the content of every ``.py`` file of the package that defines
    the attack's builder (and its config class, when another package defines
    it), of :data:`CORE_SOURCES`, and of the clean model's encoder package
    (``clean_encoder``: a module name) -- not the plugin's version, so an edit
    without a version bump still rebuilds. ``world`` contributes its content
    (:func:`world_digest`); ``world_name`` alone is accepted for callers
    without the world object.
    """
    code = {"builder": package_digest(attack.build.__module__), "core": core_digest()}
    config_module = getattr(attack.config, "__module__", None)
    if config_module and config_module.split(".")[0] != attack.build.__module__.split(".")[0]:
        code["config"] = package_digest(config_module)
    if clean_encoder:
        code["encoder"] = package_digest(clean_encoder)
    payload = {
        "attack": attack.name,
        "code": code,
        "config": config_to_dict(config),
        "clean": clean_fingerprint,
        "world": world_digest(world) if world is not None else world_name,
        "seed": int(seed),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _existing(path: Path, key: str) -> Optional[dict]:
    from .checkpoint import is_checkpoint, read_manifest

    if not is_checkpoint(path):
        return None
    try:
        m = read_manifest(path)
    except Exception:  # a broken folder is rebuilt, not trusted
        return None
    if (m.get("extra") or {}).get("build", {}).get("key") == key:
        return m
    return None


def default_cache_dir() -> Path:
    """``$DIFE_CACHE_DIR`` or ``~/.cache/dife``."""
    return Path(os.environ.get("DIFE_CACHE_DIR") or Path.home() / ".cache" / "dife")


def _complete_card(card: dict, attack, config) -> dict:
    """Check a builder's card and fill what the core knows."""
    owner = f"attack {attack.name!r}"
    if not isinstance(card, dict):
        raise PluginError(f"{owner}: build() returned a card of type {type(card).__name__}; expected a dict.")
    card = dict(card)
    card.setdefault("attack", attack.name)
    card.setdefault("title", attack.card.title)
    card.setdefault("route", attack.card.route)
    card.setdefault("modifies", attack.card.modifies)
    card.setdefault("probe", attack.card.probe)
    card.setdefault("reference", attack.card.reference)
    card["config"] = config_to_dict(config)
    unknown = sorted(set(card) - set(CARD_KEYS) - set(OPTIONAL_CARD_KEYS))
    if unknown:
        raise PluginError(f"{owner}: unknown attack-card key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(CARD_KEYS + OPTIONAL_CARD_KEYS)} (put attack-specific figures inside 'native').")
    missing = [k for k in CARD_KEYS if k not in card]
    trig = card.get("trigger")
    if not isinstance(trig, dict) or any(k not in trig for k in TRIGGER_KEYS):
        missing.append("trigger.{" + ",".join(TRIGGER_KEYS) + "}")
    native = card.get("native")
    if not isinstance(native, dict) or any(k not in native for k in NATIVE_KEYS):
        missing.append("native.{" + ",".join(NATIVE_KEYS) + "}")
    if not isinstance(card.get("clean_utility"), dict) or "clean_acc" not in card["clean_utility"]:
        missing.append("clean_utility.clean_acc")
    if missing:
        raise PluginError(f"{owner}: its attack card lacks {', '.join(missing)}.")
    from .cards import AttackCard

    typed = AttackCard.from_dict(json.loads(json.dumps(card, default=_jsonable)))
    probs = typed.problems()
    if probs:  # the one card validator, as for specs and manifests
        raise PluginError(f"{owner}: its attack card is invalid: " + "; ".join(f"{k}: {m}" for k, m in probs) + ".")
    card["modifies"] = sorted(typed.modifies)  # the branch set, whatever words the registered card used
    return json.loads(json.dumps(card, default=_jsonable))


def _jsonable(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def copy_encoder(encoder):
    """A private copy of a DualEncoder: its weights (``encoder.model``) are deep-copied,
    everything else (tokenizer, preprocessing) is shared -- tokenizers are large and stateless."""
    import copy

    new = copy.copy(encoder)
    new.model = copy.deepcopy(encoder.model)
    new._fingerprint = None
    return new


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_attack(attack_name: str, *, clean, world, overrides: Optional[dict] = None, seed: int = 0,
                 device: str = "cpu", out: Optional[os.PathLike] = None, name: Optional[str] = None,
                 cache_dir: Optional[os.PathLike] = None, force: bool = False,
                 progress: Optional[Callable] = None, where: str = "config") -> BuildOutcome:
    """Build one attack from a clean DualEncoder on a world, or reuse an identical build.

    ``out`` is the checkpoint folder to write (default:
    ``cache_dir/<name>-<key>``). A checkpoint already at ``out`` whose build
    key matches is reused unless ``force``. ``overrides`` are config
    overrides (see :func:`make_config`). The clean model is copied, never
    modified.
    """
    from .attacks import BuildContext, BuildResult
    from .checkpoint import save_checkpoint

    attack = get_attack(attack_name, where=where.rsplit(".", 1)[0])
    config = make_config(attack, overrides, where=where)
    name = name or attack.name
    key = build_key(attack, config, clean_fingerprint=clean.fingerprint(), world=world, seed=seed,
                    clean_encoder=type(clean).__module__)
    if out is None:
        out = Path(cache_dir or default_cache_dir()) / "checkpoints" / f"{name}-{key}"
    out = Path(out)
    if not force:
        manifest = _existing(out, key)
        if manifest is not None:
            return BuildOutcome(name=name, attack=attack.name, path=out, card=manifest.get("attack") or {},
                                key=key, reused=True, seconds=0.0)

    _seed_everything(seed)
    model = copy_encoder(clean)
    model.to(device)
    model.invalidate_fingerprint()
    ctx = BuildContext(clean=model, world=world, config=config, seed=seed, device=device,
                       progress=progress or null_progress)
    t0 = time.perf_counter()
    result = attack.build(ctx)
    seconds = time.perf_counter() - t0
    if not isinstance(result, BuildResult):
        raise PluginError(f"attack {attack.name!r}: build() returned {type(result).__name__}; "
                          "expected dife_core.attacks.BuildResult.")
    enc = result.model.eval()
    enc.invalidate_fingerprint()
    enc.name = name
    card = _complete_card(result.card, attack, config)
    card = measure_native(attack, enc, clean, world, card, seed=seed, device=device)
    build = {"key": key, "attack": attack.name, "seed": int(seed), "world": world.name,
             "clean_fingerprint": clean.fingerprint(), "config": card["config"],
             "seconds": round(seconds, 2)}
    save_checkpoint(enc, out, attack=card, extra={"build": build}, artifacts=result.artifacts or None)
    return BuildOutcome(name=name, attack=attack.name, path=out, card=card, key=key, reused=False,
                        seconds=seconds)


def measure_native(attack, model, clean, world, card: dict, *, seed: int = 0, device: str = "cpu") -> dict:
    """Fill the card's native result through the audit's own cell API.

    When the registered attack names its native interface, the built model's
    cell on that interface (and the clean model's, as the reference value) is
    measured with :func:`dife_core.engine.evaluate.evaluate_cell`, so the
    native figure in the card is the number an audit of the checkpoint reports
    for that cell. Attacks whose native protocol is not a registered interface
    keep the builder's own measurement.
    """
    iface = attack.card.native_interface
    if not iface:
        return card
    from .engine.embeddings import EmbeddingService
    from .engine.evaluate import evaluate_cell, native_value

    emb = EmbeddingService(seed=seed)
    rec = evaluate_cell(model, clean, world, card, iface, embeddings=emb, seed=seed, device=device,
                        checkpoint=card.get("attack"))
    native = dict(card.get("native") or {})
    if rec["status"] in ("n.e.", "error"):
        # the native cell is not defined on this world (e.g. no train split for a
        # probe): keep the builder's figure and say why
        native["interface"] = iface
        native["interface_status"] = f"{rec['status']}: {rec.get('reason')}"
        return {**card, "native": native}
    metric = attack.card.native_metric or rec["metric"]
    ref = evaluate_cell(clean, clean, world, card, iface, embeddings=emb, seed=seed, device=device,
                        checkpoint="clean")
    native.update({"interface": iface, "metric": metric, "value": native_value(rec, metric),
                   "reference_value": native_value(ref, metric) if ref["status"] not in ("n.e.", "error") else None})
    return {**card, "native": native}


def attack_names() -> list:
    from .plugins import get_registry

    return sorted(get_registry().all("attacks"))


def get_attack(name: str, *, where: str = "attack"):
    from .plugins import get_registry

    items = get_registry().all("attacks")
    if name not in items:
        raise NotFoundError(f"{where}: unknown attack {name!r}; {available(items)}.")
    return items[name]



# -- native-validation helpers for builders ----------------------------------------

def embed_images(encoder, images, *, trigger: Optional[Callable] = None, seed: int = 0, batch_size: int = 1024):
    """L2-normalised image features (no grad, CPU), with an image trigger applied
    in shards of ``batch_size`` rows with seed ``seed + first row`` -- the audit
    engine's convention, so random trigger placements match the audit's."""
    import torch

    from .utility import encode_images

    if trigger is None:
        return encode_images(encoder, images, batch_size=batch_size)
    out = []
    for lo in range(0, int(images.shape[0]), batch_size):
        pix = images[lo:lo + batch_size]
        if pix.dtype == torch.uint8:
            pix = pix.float().div_(255.0)
        out.append(encode_images(encoder, trigger(pix, seed=seed + lo), batch_size=batch_size))
    return torch.cat(out)


# -- build specs (``dife build SPEC``) ---------------------------------------------

SPEC_SECTIONS = ("clean", "world", "build", "attacks")
CLEAN_KEYS = ("checkpoint", "loader", "options", "recipe", "preset", "seed")
WORLD_KEYS = ("dataset", "options")
BUILD_KEYS = ("out", "seed", "device", "force")
ATTACK_KEYS = ("attack", "name", "seed", "config")


@attrs.frozen
class AttackEntry:
    attack: str
    name: str
    seed: int
    config: dict
    where: str  # "spec.toml: attacks[0]"


@attrs.frozen
class BuildSpec:
    """A parsed build spec. Paths are resolved relative to the spec file."""

    path: Optional[Path]
    clean: dict
    world: dict
    out: Path
    seed: int
    device: str
    force: bool
    attacks: tuple


def _table(spec: dict, key: str, where: str, *, required: bool = True) -> dict:
    v = spec.get(key)
    if v is None:
        if required:
            raise InvalidInputError(f"{where}: missing [{key}] table.")
        return {}
    if not isinstance(v, dict):
        raise InvalidInputError(f"{where}: [{key}] must be a table, got {type(v).__name__}.")
    return v


def _only(table: dict, keys, where: str) -> None:
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise InvalidInputError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(keys)}.")


def _typed(table: dict, key: str, kind, where: str, default=None):
    v = table.get(key, default)
    if v is not None and not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidInputError(f"{where}.{key}: expected {names}, got {v!r}.")
    return v


def parse_build_spec(data: dict, *, path: Optional[os.PathLike] = None) -> BuildSpec:
    """Validate a build spec (already parsed TOML) and resolve its paths."""
    src = str(path) if path else "build spec"
    base = Path(path).resolve().parent if path else Path.cwd()
    _only(data, SPEC_SECTIONS, src)

    clean = _table(data, "clean", src)
    _only(clean, CLEAN_KEYS, f"{src}: [clean]")
    has_ckpt, has_recipe = "checkpoint" in clean, "recipe" in clean
    if has_ckpt == has_recipe:
        raise InvalidInputError(f"{src}: [clean] needs exactly one of checkpoint = PATH-OR-SOURCE "
                                "(with optional loader, options) or recipe = LOADER (with preset, seed).")
    clean = dict(clean)
    for key, kind in (("checkpoint", str), ("loader", str), ("recipe", str), ("preset", str), ("seed", int),
                      ("trust", bool), ("options", dict)):
        _typed(clean, key, kind, f"{src}: clean")
    if has_ckpt:
        p = Path(clean["checkpoint"]).expanduser()
        if not p.is_absolute() and (base / p).exists():
            clean["checkpoint"] = str(base / p)

    world = _table(data, "world", src)
    _only(world, WORLD_KEYS, f"{src}: [world]")
    if not isinstance(world.get("dataset"), str):
        raise InvalidInputError(f"{src}: [world] needs dataset = NAME (a registered dataset).")
    _typed(world, "options", dict, f"{src}: world")

    build = _table(data, "build", src, required=False)
    _only(build, BUILD_KEYS, f"{src}: [build]")
    out = Path(_typed(build, "out", str, f"{src}: build", "checkpoints")).expanduser()
    seed = _typed(build, "seed", int, f"{src}: build", 0)
    device = _typed(build, "device", str, f"{src}: build", "cpu")
    force = _typed(build, "force", bool, f"{src}: build", False)

    raw = data.get("attacks")
    if not isinstance(raw, list) or not raw:
        raise InvalidInputError(f"{src}: no attacks; add one or more [[attacks]] tables with attack = NAME; "
                                f"{available(attack_names())}.")
    entries, names = [], {}
    for i, a in enumerate(raw):
        where = f"{src}: attacks[{i}]"
        if not isinstance(a, dict):
            raise InvalidInputError(f"{where}: must be a table ([[attacks]]).")
        _only(a, ATTACK_KEYS, where)
        if not isinstance(a.get("attack"), str):
            raise InvalidInputError(f"{where}: needs attack = NAME; {available(attack_names())}.")
        attack = get_attack(a["attack"], where=where)
        name = _typed(a, "name", str, where, attack.name)
        if name in names:
            raise InvalidInputError(f"{where}: checkpoint name {name!r} is already used by attacks[{names[name]}]; "
                                    "give one of them name = ....")
        names[name] = i
        config = _typed(a, "config", dict, where, {})
        make_config(attack, config, where=f"{where}.config")  # fail before anything runs
        entries.append(AttackEntry(attack=attack.name, name=name, seed=_typed(a, "seed", int, where, seed),
                                   config=dict(config), where=where))
    return BuildSpec(path=Path(path) if path else None, clean=clean, world=dict(world),
                     out=out if out.is_absolute() else base / out, seed=seed, device=device, force=force,
                     attacks=tuple(entries))


def load_build_spec(path: os.PathLike) -> BuildSpec:
    """Read and validate a TOML build spec."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"build spec {p} does not exist.")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InvalidInputError(f"{p}: not valid TOML ({e}).") from e
    return parse_build_spec(data, path=p)


def load_world(spec: BuildSpec):
    from .populations import load_world as _load

    return _load(spec.world["dataset"], spec.world.get("options"), where=f"{spec.path or 'build spec'}: [world]")


def load_clean(spec: BuildSpec, *, device: Optional[str] = None, trust: bool = False):
    """The clean model a build spec names (a checkpoint or a recipe loader).

    ``trust`` comes from the command line (``--trust-checkpoint clean``), never
    from the spec file."""
    from .loading import load_model

    c = spec.clean
    device = device or spec.device
    if "checkpoint" in c:
        return load_model(c["checkpoint"], loader=c.get("loader", "auto"), trust=bool(trust),
                          device=device, **dict(c.get("options") or {}))
    options = {k: c[k] for k in ("seed",) if k in c}
    return load_model(c.get("preset", "default"), loader=c["recipe"], device=device, **options)


def run_build_spec(spec: BuildSpec, *, only=None, force: Optional[bool] = None, device: Optional[str] = None,
                   progress: Optional[Callable] = None, on_built: Optional[Callable] = None,
                   trusted: frozenset = frozenset()) -> list:
    """Build every attack of ``spec`` (or those named in ``only``) into ``spec.out/<name>``.

    Returns the :class:`BuildOutcome` list and writes ``spec.out/build.json``.
    ``trusted``: checkpoint names the user trusts on the command line
    (``"clean"`` for the spec's clean checkpoint).
    """
    entries = list(spec.attacks)
    if only:
        wanted = set(only)
        unknown = sorted(wanted - {e.name for e in entries})
        if unknown:
            raise NotFoundError(f"--only: no attack named {', '.join(unknown)} in {spec.path}; "
                                f"{available(e.name for e in entries)}.")
        entries = [e for e in entries if e.name in wanted]
    device = device or spec.device
    force = spec.force if force is None else force
    world = load_world(spec)
    clean = load_clean(spec, device=device, trust="clean" in trusted)
    outcomes = []
    for e in entries:
        o = build_attack(e.attack, clean=clean, world=world, overrides=e.config, seed=e.seed, device=device,
                         out=spec.out / e.name, name=e.name, force=force, progress=progress,
                         where=f"{e.where}.config")
        outcomes.append(o)
        if on_built is not None:
            on_built(o)
    _write_summary(spec, clean, world, outcomes)
    return outcomes


def _write_summary(spec: BuildSpec, clean, world, outcomes) -> None:
    spec.out.mkdir(parents=True, exist_ok=True)
    summary_path = spec.out / "build.json"
    previous = {}
    if summary_path.is_file():
        try:
            previous = {c["name"]: c for c in json.loads(summary_path.read_text()).get("checkpoints", [])}
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
            previous = {}
    for o in outcomes:
        built = previous.get(o.name, {}).get("build_seconds") if o.reused else round(o.seconds, 2)
        previous[o.name] = {"name": o.name, "attack": o.attack, "path": str(o.path), "key": o.key,
                            "reused": o.reused, "seconds": round(o.seconds, 2), "build_seconds": built,
                            "native": o.card.get("native"), "clean_utility": o.card.get("clean_utility")}
    summary = {"spec": str(spec.path) if spec.path else None, "world": world.name,
               "clean": {"name": clean.name, "fingerprint": clean.fingerprint()},
               "checkpoints": [previous[k] for k in sorted(previous)]}
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True))
