"""Plugin discovery and the registries.

Entry points in group ``dife`` are loaded one by one, each in its own
try/except, so one broken plugin is reported and the rest keep working
(``DIFE_STRICT_PLUGINS=1`` re-raises instead). ``DIFE_LOAD_PLUGINS=a,b``
loads only those entry points (empty: none). Built-ins register through the
same hooks as third parties. Nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
import threading
from importlib import metadata
from typing import Any, Optional

import attrs
import pluggy

from . import hookspecs
from .errors import NotFoundError, PluginError, available
from .types import KINDS

ENTRY_POINT_GROUP = "dife"
BUILTIN_PLUGINS = (
    "dife_core.builtins.interfaces",
    "dife_core.builtins.metrics",
    "dife_core.builtins.datasets",
    "dife_core.builtins.commands",
    "dife_core.builtins.inspect_command",
    "dife_core.builtins.audit_commands",
    "dife_core.builtins.build_commands",
    "dife_core.builtins.demo_command",
    "dife_core.builtins.merge_command",
    "dife_core.builtins.scan_command",
    "dife_core.builtins.cache_command",
)


@attrs.define
class PluginInfo:
    """What ``dife list-plugins`` reports about one plugin."""

    name: str  # distribution name (or module name for built-ins)
    version: Optional[str]
    builtin: bool = False
    hooks: list = attrs.Factory(list)
    provides: dict = attrs.Factory(dict)
    error: Optional[str] = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "hooks": sorted(self.hooks),
            "provides": {k: sorted(v) for k, v in sorted(self.provides.items()) if v},
            "error": self.error,
        }


def _strict() -> bool:
    return os.environ.get("DIFE_STRICT_PLUGINS", "") not in ("", "0", "false")


def _warn(msg: str) -> None:
    try:
        from .safetext import terminal
    except Exception:  # noqa: BLE001 -- warnings must never fail
        terminal = ascii
    print(f"dife: warning: {terminal(msg)}", file=sys.stderr)


def _text(e: BaseException) -> str:
    """An exception's message, cut short (a plugin's text is not ours to print whole)."""
    try:
        t = " ".join(str(e).split())
    except Exception:  # noqa: BLE001 -- a hostile __str__
        return "(no message)"
    return t if len(t) <= 300 else t[:300] + "..."


class Registry:
    """The plugin manager plus one registry per kind of registered object."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("dife")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}  # plugin name -> info
        self._items: dict[str, dict[str, Any]] = {}  # kind -> name -> object
        self._owner: dict[tuple, str] = {}  # (kind, name) -> plugin name
        self._loaded = False
        self._lock = threading.RLock()

    # -- discovery ---------------------------------------------------------
    def load(self) -> "Registry":
        with self._lock:
            if self._loaded:
                return self
            self._loaded = True
            import importlib

            for modname in BUILTIN_PLUGINS:
                mod = importlib.import_module(modname)
                self._add(mod, modname, PluginInfo(name=modname, version=None, builtin=True))
            if os.environ.get("DIFE_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0"):
                self._load_entry_points()
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as e:
                raise PluginError(f"a plugin implements an unknown hook: {e}") from e
        return self

    def _load_entry_points(self) -> None:
        wanted = os.environ.get("DIFE_LOAD_PLUGINS")
        allow = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
        seen = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dname = dist.metadata["Name"] if dist is not None else ep.name
            version = dist.version if dist is not None else None
            if allow is not None and ep.name not in allow and dname not in allow:
                continue
            if (dname, ep.name) in seen:  # same dist seen twice on sys.path
                continue
            seen.add((dname, ep.name))
            info = PluginInfo(name=dname, version=version)
            try:
                obj = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: B036 -- a broken plugin must not break dife, even SystemExit
                if _strict():
                    if isinstance(e, Exception):
                        raise
                    raise PluginError(f"plugin {dname} raised {type(e).__name__} at import") from e
                info.error = f"{type(e).__name__}: {_text(e)}"
                self.infos[info.name] = info
                _warn(f"plugin {dname} {version or ''} failed to load: {info.error}")
                continue
            self._add(obj, ep.name if dname in self.infos else dname, info)

    def _add(self, obj, plugin_name: str, info: PluginInfo, *, strict: bool = False) -> None:
        try:
            self.pm.register(obj, name=plugin_name)
        except ValueError as e:
            if strict:
                raise PluginError(f"cannot register plugin {plugin_name!r}: {e}") from e
            info.error = f"could not register: {e}"
            self.infos[plugin_name] = info
            _warn(f"plugin {plugin_name}: {info.error}")
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])
        self.infos[plugin_name] = info

    def register_object(self, obj, name: str, *, version: str = "0") -> None:
        """Register a plugin object in-process (tests, notebooks)."""
        with self._lock:
            self.load()
            self._add(obj, name, PluginInfo(name=name, version=version), strict=True)
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as e:
                self.pm.unregister(name=name)
                self.infos.pop(name, None)
                raise PluginError(f"plugin {name!r} implements an unknown hook: {e}") from e
            self._items.clear()  # re-collect with the new plugin
            self._owner.clear()

    def unregister_object(self, name: str) -> None:
        with self._lock:
            self.pm.unregister(name=name)
            self.infos.pop(name, None)
            self._items.clear()
            self._owner.clear()

    # -- registries --------------------------------------------------------
    def _collect(self, kind: str) -> dict:
        with self._lock:
            if kind in self._items:
                return self._items[kind]
            self.load()
            cls, hookname = KINDS[kind]
            items: dict[str, Any] = {}
            self._items[kind] = items
            for impl in getattr(self.pm.hook, hookname).get_hookimpls():
                pname = self.pm.get_name(impl.plugin)
                info = self.infos.get(pname)
                staged: dict[str, Any] = {}

                def register(obj, _pname=pname, _staged=staged, _cls=cls):
                    if not isinstance(obj, _cls):
                        raise PluginError(
                            f"plugin {_pname} registered a {type(obj).__name__} with "
                            f"{hookname}; expected dife_core.types.{_cls.__name__}"
                        )
                    other = self._owner.get((kind, obj.name)) or (_pname if obj.name in _staged else None)
                    if other is not None:
                        raise PluginError(
                            f"duplicate {kind[:-1].replace('_', ' ')} name {obj.name!r}: "
                            f"registered by both {other} and {_pname}"
                        )
                    _staged[obj.name] = obj

                try:
                    impl.function(register)
                except KeyboardInterrupt:
                    raise
                except BaseException as e:  # noqa: B036 -- SystemExit in a hook is a broken plugin too
                    if _strict() or (info is not None and info.builtin):
                        if isinstance(e, Exception):
                            raise
                        raise PluginError(f"plugin {pname} raised {type(e).__name__} in {hookname}") from e
                    msg = f"{type(e).__name__} in {hookname}: {_text(e)}"
                    if info is not None:
                        info.error = msg
                    _warn(f"plugin {pname}: {msg}")
                    continue
                for name, obj in staged.items():
                    items[name] = obj
                    self._owner[(kind, name)] = pname
                    if info is not None:
                        info.provides.setdefault(kind, []).append(name)
            return items

    def all(self, kind: str) -> dict:
        return dict(self._collect(kind))

    def get(self, kind: str, name: str):
        items = self._collect(kind)
        if name not in items:
            label = kind[:-1].replace("_", " ")
            raise NotFoundError(f"unknown {label} {name!r}; {available(items)}.")
        return items[name]

    def owner(self, kind: str, name: str) -> Optional[str]:
        self._collect(kind)
        return self._owner.get((kind, name))

    def plugin_infos(self, include_builtins: bool = False) -> list:
        for kind in KINDS:
            self._collect(kind)
        return sorted(
            (i for i in self.infos.values() if include_builtins or not i.builtin),
            key=lambda i: i.name,
        )


_registry: Optional[Registry] = None


def get_registry() -> Registry:
    """The process-wide registry (plugins load on first use)."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry.load()


def reset_registry() -> None:
    """Forget every loaded plugin (tests)."""
    global _registry
    _registry = None
