"""Executors: where an audit's units of work run.

A *unit* is one row's utility, cells and footprint for one seed
(:meth:`dife_core.engine.runner.Audit.unit_records`). Two executors:

* :class:`LocalExecutor` (``local``, the default): every unit in this
  process, one record appended as each finishes.
* :class:`RayExecutor` (``ray``): every unit a Ray task that computes the
  unit and returns its records. The driver has loaded every checkpoint (to
  fingerprint it and plan the keys) and puts each into Ray's object store
  once; tasks read them from there (``weights="path"``: each task loads its
  checkpoint from the spec's source path instead). The driver -- this
  process -- alone appends them to the store, in plan order; a unit whose task
  fails (a checkpoint a worker cannot load, a worker killed after Ray's
  retries) becomes error records with the reason, and the rest of the audit
  finishes. Ray is imported only here, only when chosen.

Plugins: a worker loads the installed plugins (entry points) like any DIFE
process. Plugins registered in-process (tests, notebooks) are unknown there:
name them in ``plugin_modules`` (or ``DIFE_WORKER_PLUGINS=mod[:attr],...``),
each ``module`` (its hook functions) or ``module:attr`` (a plugin object, or a
class / factory called without arguments), which every worker imports and
registers. The list comes from the person running DIFE, never from a spec.
"""

from __future__ import annotations

import os
from typing import Optional

from .errors import InvalidInputError

EXECUTORS = ("local", "ray")
#: the address a local cluster binds on Linux: Ray maps 127.0.0.1 to the machine's network
#: address, but leaves the rest of the loopback range alone (nothing reachable from outside)
LOOPBACK = "127.0.0.2"
#: every worker imports and registers these (comma-separated ``module[:attr]``)
PLUGINS_ENV = "DIFE_WORKER_PLUGINS"


def make_executor(name, *, address: Optional[str] = None, num_cpus: Optional[int] = None,
                  plugin_modules=None, weights: Optional[str] = None):
    """An executor from its name (``local`` / ``ray``) or itself."""
    if name is None or name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, num_cpus=num_cpus, plugin_modules=plugin_modules,
                           weights=weights or "object-store")
    if hasattr(name, "run"):
        return name
    raise InvalidInputError(f"unknown executor {name!r}; use one of: {', '.join(EXECUTORS)}.")


class LocalExecutor:
    """Today's behaviour: every unit in this process, in plan order."""

    name = "local"

    def run(self, audit, store, done, units, multi, bar) -> None:
        current = None
        for sd, row in units:
            if sd != current:
                audit._use_seed(sd, multi)
                current = sd
            for kind, key, rec in audit.unit_records(row, done, describe=bar.describe):
                if rec is None:
                    audit.counts["reused"] += 1
                else:
                    store.append(kind, key, rec, run=audit.run_id)
                    audit.counts["computed"] += 1
                bar.advance()


# -- Ray ------------------------------------------------------------------------------

def _import_ray():
    try:
        import ray
    except ImportError:
        raise InvalidInputError("--executor ray needs Ray, which is not installed; install it with "
                                "pip install 'dife[ray]' (or pip install 'ray>=2.9').") from None
    return ray


def _plugin_list(plugin_modules) -> tuple:
    env = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    return tuple(dict.fromkeys([*(plugin_modules or ()), *env]))


class RayExecutor:
    """Units as Ray tasks (see the module docstring).

    :param address: an existing cluster (``ray.init(address=...)``); None: the
        cluster this process is already connected to, else a new local one.
    :param num_cpus: CPUs of a new local cluster (default: Ray's choice).
    :param plugin_modules: ``module[:attr]`` names every worker registers.
    :param max_retries: Ray's retries of a task whose worker died.
    :param weights: ``object-store`` (default): the driver puts each loaded
        checkpoint into Ray's object store once and tasks read it from there;
        ``path``: every task loads its checkpoint from the spec's ``source``
        (every worker must read the same files; no weights cross the network).
    """

    name = "ray"
    WEIGHTS = ("object-store", "path")

    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None, plugin_modules=None,
                 max_retries: int = 2, weights: str = "object-store"):
        if weights not in self.WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(self.WEIGHTS)}, got {weights!r}")
        self.address = address
        self.num_cpus = num_cpus
        self.plugin_modules = _plugin_list(plugin_modules)
        self.max_retries = int(max_retries)
        self.weights = weights
        self.stats: dict = {}

    def _connect(self, ray) -> bool:
        """Connect (True when this call started Ray and must shut it down)."""
        if ray.is_initialized():
            return False
        if self.address:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        else:
            import sys

            local = {"_node_ip_address": LOOPBACK} if sys.platform.startswith("linux") else {}
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False, **local)
        return True

    def run(self, audit, store, done, units, multi, bar) -> None:
        import time

        ray = _import_ray()
        started = self._connect(ray)
        try:
            self._run(ray, audit, store, done, units, multi, bar, time)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, audit, store, done, units, multi, bar, time) -> None:
        from .untrusted import limits

        spec = audit.spec
        cuda = spec.device.startswith("cuda")
        task = ray.remote(compute_unit).options(num_cpus=1, num_gpus=1 if cuda else 0,
                                                max_retries=self.max_retries)
        common = ray.put({"spec": spec, "trusted": sorted(audit.trusted), "limits": limits(),
                          "plugins": self.plugin_modules, "multi": multi, "run": audit.run_id,
                          "cards": {r.name: r.card for r in audit.rows},
                          "models": self._put_models(ray, audit)})
        plans, refs = [], {}
        current = None
        t0 = time.perf_counter()
        for i, (sd, row) in enumerate(units):
            if sd != current:
                audit._use_seed(sd, multi)  # the keys of this seed
                current = sd
            plan = audit.unit_plan(row)
            plans.append(plan)
            todo = [key for _, key, _ in plan if key not in done]
            if todo:
                mine = {key: done[key] for _, key, _ in plan if key in done}
                # a control row is the clean reference under the card of the row it controls: no load of that row
                extra = (row.control_of, row.profile) if row.role == "control" else None
                refs[i] = task.remote(common, sd, row.name, row.role, mine, extra)
        self.stats = {"tasks": len(refs), "units": len(units), "load_s": 0.0, "compute_s": 0.0}
        per_ck: dict = {}
        for i in refs:
            name = units[i][1].control_of or units[i][1].name
            per_ck.setdefault(name, [0, 0])[1] += 1
        progress = audit.progress
        with progress.task("tasks (all checkpoints)", len(refs), keep=True) as tbar:
            bars = {}
            for name, (_, n) in per_ck.items():
                cm = progress.task(f"  {name}", n)
                bars[name] = (cm, cm.__enter__())
            results: dict = {}
            pending = {ref: i for i, ref in refs.items()}
            head = 0
            while head < len(units):
                if head in refs and head not in results:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        i = pending.pop(ref)
                        results[i] = self._result(ray, ref, self.stats)
                        row = units[i][1]
                        name = row.control_of or row.name
                        tbar.advance()
                        cm, b = bars[name]
                        b.advance()
                        per_ck[name][0] += 1
                        if per_ck[name][0] == per_ck[name][1]:
                            cm.__exit__(None, None, None)
                    continue
                # the head unit is finished (or had nothing to do): append its records in plan order
                sd, row = units[head]
                if audit.seed != sd:
                    audit._use_seed(sd, multi)
                got = results.pop(head, {})
                if isinstance(got, str):  # the task failed as a whole
                    got = audit.unit_errors(row, got, {k for _, k, _ in plans[head] if k not in done})
                bar.describe(f"{row.name}" + (f" (seed {sd})" if multi else ""))
                missing = [k for _, k, _ in plans[head] if k not in done and k not in got]
                if missing:  # a worker computed other keys: it read another checkpoint than the driver
                    got.update(audit.unit_errors(row, "the worker's copy of the checkpoint differs from the "
                                                 "driver's (another fingerprint): every worker must read the same "
                                                 "files", set(missing)))
                for kind, key, _ in plans[head]:
                    if key in done:
                        audit.counts["reused"] += 1
                    else:
                        store.append(kind, key, got[key], run=audit.run_id)
                        audit.counts["computed"] += 1
                    bar.advance()
                head += 1
        self.stats["wall_s"] = time.perf_counter() - t0

    def _put_models(self, ray, audit) -> dict:
        """``{checkpoint name: object ref}``: the driver's loaded checkpoints, each
        put into the object store once (tasks on one node share its copy). A
        model that cannot be serialised is left to the workers to load."""
        if self.weights != "object-store":
            return {}
        refs = {}
        for row in ([audit.clean] if audit.clean is not None else []) + list(audit.rows):
            try:
                refs[row.name] = ray.put(row.model)
            except Exception:  # noqa: BLE001 -- e.g. a loader's unpicklable handle: the worker loads it
                continue
        return refs

    @staticmethod
    def _result(ray, ref, stats: dict):
        """``{key: record}`` of a finished task, or the reason it failed (a string)."""
        try:
            got = ray.get(ref)
            stats["load_s"] += got["load_s"]
            stats["compute_s"] += got["compute_s"]
            return {key: rec for _, key, rec in got["records"]}
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if cause is not None and not isinstance(cause, ray.exceptions.RayError):
                return f"the Ray task failed: {type(cause).__name__}: {cause}"
            return f"the Ray task failed: {_first_line(e)}"
        except ray.exceptions.RayError as e:  # a worker that died, every retry spent
            return f"the Ray worker died ({type(e).__name__}: {_first_line(e)})"


def _first_line(e) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


# -- the worker side --------------------------------------------------------------------
#: per worker process: plugins registered, worlds per seed, loaded checkpoints
_WORKER: dict = {"plugins": set(), "worlds": {}, "models": {}}


def register_plugins(names) -> None:
    """Import and register each ``module[:attr]`` once in this process."""
    import importlib

    from .plugins import get_registry

    for name in names:
        if name in _WORKER["plugins"]:
            continue
        mod_name, _, attr = name.partition(":")
        obj = importlib.import_module(mod_name)
        if attr:
            obj = getattr(obj, attr)
            if callable(obj) and not hasattr(obj, "__self__"):
                obj = obj()
        get_registry().register_object(obj, name.replace(":", "."))
        _WORKER["plugins"].add(name)


def compute_unit(common: dict, seed: int, row_name: str, role: str, done: dict, control=None) -> dict:
    """One unit in a worker: load the clean reference and the row's checkpoint,
    compute the records not in ``done``. ``control``: ``(checkpoint, attack
    profile)`` of a control row. Returns ``{"records": [(kind, key, record)],
    "load_s", "compute_s"}`` (seconds in the worker: loading, computing)."""
    import time

    t0 = time.perf_counter()
    from .engine.runner import audited_interfaces, control_row
    from .plugins import get_registry
    from .untrusted import LIMITS

    register_plugins(common["plugins"])
    _WORKER["refs"] = common.get("models") or {}
    LIMITS.update(common["limits"])  # the driver's bounds (--limit), bounds that plugins add included
    spec = common["spec"]
    if spec.device.startswith("cuda"):
        spec = spec.with_device("cuda")  # Ray shows the task its one GPU as cuda:0
    audit = _worker_audit_class()(spec, ".", resume=False, progress=False, trusted=frozenset(common["trusted"]))
    audit.run_id = common["run"]
    audit._worlds = _WORKER["worlds"].setdefault(repr((spec.populations.to_dict(), common["multi"])), {})
    audit._use_seed(seed, common["multi"])
    audit.clean, rows, _ = audit._rows(audit.world, only={row_name} if role == "audited" else set())
    audit.rows = rows
    audit.interfaces = audited_interfaces(spec, get_registry())
    if role == "control":
        of, profile = control
        row = control_row(audit.clean, of, common["cards"][of], profile)
    else:
        row = next(r for r in ([audit.clean] if audit.clean else []) + rows if r.name == row_name)
    t1 = time.perf_counter()
    records = [(kind, key, rec) for kind, key, rec in audit.unit_records(row, done) if rec is not None]
    return {"records": records, "load_s": t1 - t0, "compute_s": time.perf_counter() - t1}


def _worker_audit_class():
    if "class" in _WORKER:
        return _WORKER["class"]
    from .engine.runner import Audit

    class WorkerAudit(Audit):
        """An Audit that keeps the checkpoints it loads for the worker's next task."""

        def load_checkpoint(self, ck):
            ref = _WORKER.get("refs", {}).get(ck.name)
            key = repr((ck.to_dict(), self.spec.device, ck.name in self.trusted, ref.hex() if ref else None))
            models = _WORKER["models"]
            if key not in models:
                if len(models) >= 4:  # the clean reference and a few audited rows
                    models.pop(next(iter(models)))
                if ref is not None:  # the driver's copy, from the object store
                    import ray

                    m = ray.get(ref)
                    models[key] = m.to(self.spec.device) if hasattr(m, "to") else m
                else:
                    models[key] = super().load_checkpoint(ck)
            else:
                models[key] = models.pop(key)  # most recently used last
            return models[key]

        def _use_seed(self, seed, multi):
            # one embedding service per audit, seed and worker, as one per audit and seed in a local
            # audit: the clean reference's embeddings are encoded once per worker, not once per task
            super()._use_seed(seed, multi)
            key = (self.run_id, int(seed))
            if _WORKER.get("embeddings", (None,))[0] != key:
                _WORKER["embeddings"] = (key, self.embeddings)
            self.embeddings = _WORKER["embeddings"][1]

    _WORKER["class"] = WorkerAudit  # built on first use: importing this module stays light
    return WorkerAudit


__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "make_executor", "compute_unit", "register_plugins"]
