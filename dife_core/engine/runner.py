"""``run_audit``: expand cells, decide applicability, evaluate, diagnose, store.

Order of work: load the world and every checkpoint (fingerprints known), write
the *plan* (every cell, utility and footprint key) to the store, then per row
measure clean utility, every interface cell and the footprint, appending one
record as each finishes. ``resume=True`` keeps the store and skips every
planned record already there (an error is retried). Reports are rendered from
the store at the end (:func:`dife_core.report.render_reports`).

The per-row work -- one row's utility, cells and footprint for one seed, a
*unit* -- is handed to an executor (:mod:`dife_core.executors`): ``local``
computes it here, ``ray`` in Ray tasks that load their checkpoint
themselves. Either way only this process writes the store, in plan order.
"""

from __future__ import annotations

import os
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any, Optional

import attrs

from ..progress import Progress
from .applicability import AttackProfile
from .cells import NotEvaluable, card_fields, stable_key
from .context import Mechanism, MechanismContext
from .embeddings import EmbeddingService, resolve_trigger
from .evaluate import evaluate_cell, world_templates
from .footprint import measure_branch_swap, measure_component_repair, measure_per_interface
from .spec import CONTROL_SEP, AuditSpec, load_spec, require_valid
from .store import AuditLock, CellStore

#: bump when a change alters what a cell measures, so --resume recomputes it
ENGINE_VERSION = 2


@attrs.define
class Row:
    """One row of the exposure matrix: a checkpoint (or a control) with its attack profile."""

    name: str
    role: str  # "audited", "control" or "reference"
    spec: Any  # CheckpointSpec
    model: Any
    card: Optional[dict] = None
    profile: Optional[AttackProfile] = None
    control_of: Optional[str] = None
    path: Optional[str] = None
    manifest: Optional[dict] = None
    attack_plugin: Any = None  # the registered Attack, when installed
    _mechanism: Any = None

    def entry(self) -> dict:
        fp = self.model.fingerprint()
        return {"name": self.name, "loader": getattr(self.model, "loader", self.spec.loader),
                "fingerprint": {"visual": fp["visual"], "text": fp["text"]}, "attack": self.card,
                "role": self.role, "control_of": self.control_of, "source": self.spec.source}


def control_row(clean: Row, of: str, card: dict, profile: AttackProfile) -> Row:
    """The clean reference audited under checkpoint ``of``'s attack card."""
    return Row(name=f"{clean.name}{CONTROL_SEP}{of}", role="control", spec=clean.spec, model=clean.model, card=card,
               profile=profile, control_of=of, path=clean.path, manifest=clean.manifest)


def _as_spec(spec) -> AuditSpec:
    if isinstance(spec, AuditSpec):
        return spec
    if isinstance(spec, dict):
        return AuditSpec.from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    raise TypeError(f"spec must be an AuditSpec, a dict or a path, not {type(spec).__name__}")


def load_world(spec: AuditSpec, seed: Optional[int] = None):
    """The spec's world; with ``seed`` (an audit over several seeds) a dataset
    that declares a ``seed`` option draws its populations with that seed."""
    from ..plugins import get_registry
    from ..populations import load_world as _load

    options = dict(spec.populations.options)
    if seed is not None and "seed" in get_registry().get("datasets", spec.populations.dataset).options:
        options["seed"] = int(seed)
    return _load(spec.populations.dataset, options, where=f"{spec.origin}: [populations]")


def _load_model(ck, device: str, *, trust: bool = False):
    from ..loading import load_model

    # trust comes from the command line (run_audit's ``trusted``), never from the spec
    enc = load_model(ck.source, loader=ck.loader, trust=trust, device=device, name=ck.name, **ck.options)
    enc.name = ck.name
    return enc.eval() if hasattr(enc, "eval") else enc


def _population_names(world) -> dict:
    from ..populations import POPULATION_KINDS

    out = {"world": world.name}
    for k in POPULATION_KINDS:
        p = getattr(world, k, None)
        out[k] = getattr(p, "name", None) if p is not None else None
    return out


def _plugins() -> list:
    from ..plugins import get_registry

    return [{"name": i.name, "version": i.version} for i in get_registry().plugin_infos() if not i.error]


class Audit:
    """One audit run (use :func:`run_audit`)."""

    def __init__(self, spec: AuditSpec, out_dir, *, resume: bool, progress: bool, trusted=frozenset(),
                 force: bool = False, executor=None):
        self.spec = spec
        self.executor = executor  # None: dife_core.executors.LocalExecutor
        self.trusted = frozenset(trusted)
        self.out = Path(out_dir)
        self.resume = resume
        self.force = force  # replace a previous audit / write into a non-empty folder (outdir.check_out_dir)
        self.progress = Progress(progress)
        self.run_id = uuid.uuid4().hex[:12]
        self.counts = {"computed": 0, "reused": 0}

    # -- set-up -----------------------------------------------------------------------
    def load_checkpoint(self, ck):
        """Load one checkpoint of the spec (an executor's worker may cache it)."""
        return _load_model(ck, self.spec.device, trust=ck.name in self.trusted)

    def _rows(self, world, only=None) -> tuple:
        """The clean reference, the audited rows and their controls (``only``: just
        these checkpoint names, beside the clean reference -- one unit of work)."""
        from ..plugins import get_registry

        reg = get_registry()
        families = reg.all("triggers")
        attacks = reg.all("attacks")
        audited = [c for c in self.spec.checkpoints if only is None or c.name in only]
        specs = ([self.spec.clean] if self.spec.clean is not None else []) + audited
        models = {}
        with self.progress.task("load checkpoints", len(specs)) as t:
            for ck in specs:
                models[ck.name] = self.load_checkpoint(ck)
                t.advance()
        scans = getattr(self, "_scans", None)
        if scans is None:
            from ..scan import prepass, read_scans, write_scans

            scans = self._scans = prepass(self.spec, world, models, progress=self.progress,
                                          device=self.spec.device, seed=getattr(self, "seed", 0),
                                          previous=read_scans(self.out) if self.resume else ())
            if scans:
                write_scans(self.out, list(scans.values()))
        clean = None
        if self.spec.clean is not None:
            ck = self.spec.clean
            clean = Row(name=ck.name, role="reference", spec=ck, model=models[ck.name],
                        path=ck.source if os.path.isdir(ck.source) else None,
                        manifest=getattr(models[ck.name], "manifest", None))
        rows = []
        for ck in audited:
            m = models[ck.name]
            manifest = getattr(m, "manifest", None)
            if ck.attack is not None:
                card = ck.attack
            elif ck.name in scans:  # audited with what the scan recovered (None: nothing found)
                from ..scan import recovered_card

                card = recovered_card(scans[ck.name])
            else:
                card = (manifest or {}).get("attack")
            profile = None
            if card:
                from ..cards import AttackCard

                typed = AttackCard.from_dict(card).require_valid(f"{ck.name} attack card")
                profile = AttackProfile.from_card(typed, trigger_families=families)
            rows.append(Row(name=ck.name, role="audited", spec=ck, model=m, card=card, profile=profile,
                            path=ck.source if os.path.isdir(ck.source) else None, manifest=manifest,
                            attack_plugin=attacks.get(profile.attack) if profile else None))
        controls = []
        if clean is not None and self.spec.controls:
            for r in rows:
                if r.profile is not None:
                    controls.append(control_row(clean, r.name, r.card, r.profile))
        return clean, rows, controls

    def _mechanism(self, row: Row, world, emb) -> Optional[Mechanism]:
        """The attack plugin's scorer / repair probe for an audited row (lazily built)."""
        if row.role != "audited" or row.attack_plugin is None:
            return None
        ap = row.attack_plugin
        if ap.scorer is None and ap.repair_probe is None:
            return None
        if row._mechanism is None:
            mctx = MechanismContext(model=row.model, clean=self.clean.model if self.clean else None, world=world,
                                    card=row.card, path=row.path, manifest=row.manifest,
                                    trigger=resolve_trigger(row.profile.trigger),
                                    embeddings=emb, device=self.spec.device, seed=self.seed,
                                    templates=self.templates)
            row._mechanism = Mechanism(context=mctx, repair_probe=ap.repair_probe)
            if ap.scorer is not None:
                row._mechanism.scorer = ap.scorer(mctx)
        return row._mechanism

    # -- keys ------------------------------------------------------------------------------
    def _base_key(self, row: Row) -> dict:
        return {"v": ENGINE_VERSION, "row": row.name, "model": row.model.fingerprint(),
                "clean": self.clean.model.fingerprint() if self.clean else None,
                "populations": self.pop_names, "templates": list(self.templates), "seed": self.seed,
                "precision": "bf16" if self.spec.device.startswith("cuda") else "fp32"}

    def cell_key(self, row: Row, iface) -> str:
        return stable_key({**self._base_key(row), "kind": "cell", "interface": iface.name,
                           "card": card_fields(iface.card), "attack": row.card,
                           "thresholds": self.spec.thresholds.for_interface(iface.name),
                           "options": self.spec.interface_options.get(iface.name, {}),
                           "chunk": self.spec.ranking_chunk, "role": row.role,
                           "plugin": self._has_plugin(row)})

    def footprint_key(self, row: Row) -> str:
        # per-interface branch swaps depend on every cell's definition
        return stable_key({**self._base_key(row), "kind": "footprint", "attack": row.card,
                           "plugin": self._has_plugin(row),
                           "cells": [self.cell_key(row, i) for i in self.interfaces]})

    def utility_key(self, row: Row) -> str:
        b = self._base_key(row)
        b.pop("row")
        b.pop("clean")
        return stable_key({**b, "kind": "utility", "chunk": self.spec.ranking_chunk})

    @staticmethod
    def _has_plugin(row: Row) -> list:
        ap = row.attack_plugin if row.role == "audited" else None
        return [ap is not None and ap.scorer is not None, ap is not None and ap.repair_probe is not None]

    # -- the run -------------------------------------------------------------------------
    def run(self) -> None:
        from .. import __version__
        from ..plugins import get_registry

        reg = get_registry()
        from ..outdir import check_out_dir, clear_owned, make_out_dir, write_text_atomic

        check_out_dir(self.out, resume=self.resume, force=self.force)  # refuses before anything is written
        make_out_dir(self.out)
        with AuditLock(self.out), self.progress, CellStore(self.out, fresh=not self.resume) as store:
            if not self.resume:
                clear_owned(self.out)  # a previous audit's reports never outlive its records
            write_text_atomic(self.out, "spec.toml", self.spec.to_toml())
            seeds = self.spec.seed_list
            multi = len(seeds) > 1
            self._worlds = {}
            self._use_seed(seeds[0], multi)
            self.clean, rows, controls = self._rows(self.world)
            self.rows = rows
            interfaces = audited_interfaces(self.spec, reg)
            self.interfaces = interfaces
            all_rows = ([self.clean] if self.clean else []) + rows + controls
            cell_rows = rows + controls
            plan = {
                "dife_version": __version__, "spec": self.spec.to_dict(), "seed": seeds[0], "seeds": list(seeds),
                "plugins": _plugins(), "world": self.pop_names, "templates": list(self.templates),
                "interfaces": [{"id": i.name, "title": i.card.title, "short_title": i.card.column_title,
                                "order": i.card.order, "plugin": reg.owner("interfaces", i.name),
                                **card_fields(i.card)} for i in interfaces],
                "metrics": metric_table(interfaces, reg),
                "rows": [r.entry() for r in all_rows],
                "utilities": [], "cells": [], "footprints": [],
            }
            for sd in seeds:  # every key of every seed is in the plan before any record is written
                self._use_seed(sd, multi)
                plan["utilities"] += [{"checkpoint": r.name, "seed": sd, "key": self.utility_key(r)}
                                      for r in all_rows if r.role != "control"]
                plan["cells"] += [{"checkpoint": r.name, "interface": i.name, "seed": sd, "key": self.cell_key(r, i)}
                                  for r in cell_rows for i in interfaces]
                plan["footprints"] += [{"checkpoint": r.name, "seed": sd, "key": self.footprint_key(r)}
                                       for r in rows if r.profile]
            store.append("plan", None, plan, run=self.run_id)
            done = {k: r for k, r in store.latest().items()
                    if r.get("type") in ("cell", "footprint", "utility") and not _failed(r)} if self.resume else {}
            total = len(plan["cells"]) + len(plan["footprints"]) + len(plan["utilities"])
            units = [(sd, r) for sd in seeds for r in all_rows]  # plan order
            with self.progress.task("audit cells", total, keep=True) as bar:
                self._executor().run(self, store, done, units, multi, bar)

    def _executor(self):
        if self.executor is None:
            from ..executors import LocalExecutor

            self.executor = LocalExecutor()
        return self.executor

    # -- units: one row's utility, cells and footprint for one seed ------------------------
    def unit_plan(self, row: Row) -> list:
        """``[(kind, key, interface or None)]`` of one unit, in plan order (the seed in use)."""
        out = []
        if row.role != "control":
            out.append(("utility", self.utility_key(row), None))
        if row.role == "reference":
            return out
        out += [("cell", self.cell_key(row, i), i) for i in self.interfaces]
        if row.role == "audited" and row.profile is not None:
            out.append(("footprint", self.footprint_key(row), None))
        return out

    def unit_records(self, row: Row, done: dict, describe=None):
        """Compute one unit: yield ``(kind, key, record)`` in plan order, ``record``
        None for a key in ``done`` (reused; a reused cell still feeds the footprint)."""
        describe = describe or (lambda text: None)
        note = f" (seed {self.seed})" if len(self.spec.seed_list) > 1 else ""
        row_cells = []
        for kind, key, iface in self.unit_plan(row):
            if key in done:
                if kind == "cell":
                    row_cells.append(done[key]["record"])
                yield kind, key, None
                continue
            if kind == "utility":
                rec = {"checkpoint": row.name, "clean_utility": self.measure_utility(row)}
            elif kind == "cell":
                describe(f"{row.name} × {iface.name}{note}")
                rec = self.evaluate(row, iface)
                row_cells.append(rec)
            else:
                describe(f"{row.name} footprint")
                rec = {"checkpoint": row.name, **self.measure_footprint(row, row_cells)}
            yield kind, key, rec

    def unit_errors(self, row: Row, reason: str, keys) -> dict:
        """``{key: record}``: error records for the planned ``keys`` of a unit whose
        work failed as a whole (a worker that died, a checkpoint a worker cannot load);
        --resume retries them."""
        from .cells import make_record

        out = {}
        for kind, key, iface in self.unit_plan(row):
            if key not in keys:
                continue
            if kind == "utility":
                out[key] = {"checkpoint": row.name, "clean_utility": {"error": reason}}
            elif kind == "cell":
                out[key] = make_record(checkpoint=row.name, card=iface.card, status="error", reason=reason,
                                       thresholds=self.spec.thresholds.for_interface(iface.name))
            else:
                out[key] = {"checkpoint": row.name, "reason": f"error: {reason}", "probe": row.profile.probe,
                            "per_interface": {}}
        return out

    def _use_seed(self, seed: int, multi: bool) -> None:
        """Point the audit at one seed: its world (populations drawn with the
        seed when there are several), and a fresh embedding service whose
        trigger draws use it."""
        self.seed = int(seed)
        if seed not in self._worlds:
            self._worlds[seed] = load_world(self.spec, seed if multi else None)
        self.world = self._worlds[seed]
        self.templates = world_templates(self.world, self.spec.templates)
        self.pop_names = _population_names(self.world)
        self.embeddings = EmbeddingService(batch_size=self.spec.batch_size, seed=self.seed, progress=self.progress)
        for r in getattr(self, "rows", ()):
            r._mechanism = None  # a mechanism context holds the seed's world

    def measure_utility(self, row: Row) -> dict:
        from .scoring import clean_utility

        try:
            return clean_utility(self.embeddings, row.model, self.world, self.templates,
                                 chunk=self.spec.ranking_chunk, device=self.spec.device)
        except Exception as e:  # utility is reported beside exposure; never fatal
            _debug()
            return {"error": f"{type(e).__name__}: {e}"}

    def _cell_options(self, iface) -> dict:
        return dict(self.spec.interface_options.get(iface.name, {}))

    def evaluate(self, row: Row, iface, model=None) -> dict:
        """One cell through :func:`evaluate_cell` (``model``: a branch-swap hybrid instead of the row's)."""
        ap = row.attack_plugin if row.role == "audited" else None
        return evaluate_cell(model if model is not None else row.model, self.clean.model if self.clean else None,
                             self.world, row.profile, iface, embeddings=self.embeddings, checkpoint=row.name,
                             options=self._cell_options(iface),
                             thresholds=self.spec.thresholds.for_interface(iface.name), seed=self.seed,
                             device=self.spec.device, templates=self.templates,
                             ranking_chunk=self.spec.ranking_chunk,
                             mechanism=(lambda: self._mechanism(row, self.world, self.embeddings))
                             if model is None else None,
                             has_scorer=ap is not None and ap.scorer is not None and model is None)

    def measure_footprint(self, row: Row, cells: Optional[list] = None) -> dict:
        """The row's branch swap: per applicable interface, plus the deciding readout
        (component repair, the native interface, or the trigger channel's diagnostic)."""
        if self.clean is None:
            return {"reason": "no clean reference in the spec: the branch swap needs one", "probe": None}
        per_interface = {}
        if cells:
            by_id = {i.name: i for i in self.interfaces}
            per_interface = measure_per_interface(
                self.clean.model, row.model, cells,
                lambda iface_id, hybrid: self.evaluate(row, by_id[iface_id], model=hybrid))
        note = None
        try:
            if row.profile.probe == "component-repair":
                mech = self._mechanism(row, self.world, self.embeddings)
                if mech is not None and mech.repair_probe is not None:
                    return {**measure_component_repair(mech), "per_interface": per_interface}
                note = (f"the card declares a component-repair probe but attack plugin {row.profile.attack!r} "
                        f"{'is not installed' if row.attack_plugin is None else 'provides none'}; branch swap used")
            native = row.profile.native_interface or (
                row.attack_plugin.card.native_interface if row.attack_plugin is not None else None)
            if native in per_interface:
                m = {"probe": "branch-swap", "readout": f"{native}:{per_interface[native]['metric']}",
                     "decided_on": "native interface",
                     **{s: per_interface[native][s] for s in ("a00", "a10", "a01", "a11")}}
            else:
                trigger = resolve_trigger(row.profile.trigger)
                m = measure_branch_swap(self.embeddings, self.clean.model, row.model, self.world, trigger,
                                        self.templates, row.profile)
                m["decided_on"] = "trigger-channel diagnostic"
            m["per_interface"] = per_interface
            if note:
                m["note"] = note
            return m
        except NotEvaluable as e:
            return _strongest(per_interface, e.reason, row.profile.probe)
        except Exception as e:
            _debug()
            return {"reason": f"error: {type(e).__name__}: {e}", "probe": row.profile.probe,
                    "per_interface": per_interface}


def _strongest(per_interface: dict, why: str, probe) -> dict:
    """No native interface and no channel diagnostic: decide on the applicable
    interface with the strongest branch-swap signal |a11 - a00|."""
    usable = {k: v for k, v in per_interface.items() if all(v.get(s) is not None for s in ("a00", "a11"))}
    if not usable:
        return {"reason": why, "probe": probe, "per_interface": per_interface}
    best = max(sorted(usable), key=lambda k: abs(usable[k]["a11"] - usable[k]["a00"]))
    v = usable[best]
    return {"probe": "branch-swap", "readout": f"{best}:{v['metric']}", "decided_on": "strongest signal",
            **{s: v[s] for s in ("a00", "a10", "a01", "a11")}, "per_interface": per_interface,
            "note": f"no diagnostic readout ({why}); decided on the strongest applicable signal"}


def audited_interfaces(spec, reg) -> list:
    """The spec's interfaces, in report order: the listed order, or for ``"all"``
    every registered interface by its card's ``order`` (ties by id)."""
    items = reg.all("interfaces")
    if spec.interfaces == "all":
        return sorted(items.values(), key=lambda i: (i.card.order, i.name))
    return [reg.get("interfaces", n) for n in spec.interfaces]


def metric_table(interfaces, reg) -> dict:
    """``{metric: {label, formula, direction, registered}}`` for every metric the
    audited cards name: reports take their labels from here."""
    registered = reg.all("metrics")
    out = {}
    for i in interfaces:
        for name in (i.card.metric, *i.card.extra_metrics):
            m = registered.get(name)
            out[name] = ({**m.to_dict(), "registered": True} if m is not None else
                         {"name": name, "label": name, "formula": "", "direction": "higher", "registered": False})
    return out


def _failed(rec: dict) -> bool:
    """A stored record that --resume retries: an error cell, footprint or utility."""
    r = rec.get("record") or {}
    return (r.get("status") == "error" or str(r.get("reason") or "").startswith("error:")
            or "error" in (r.get("clean_utility") or {}))


def _debug() -> None:
    if os.environ.get("DIFE_DEBUG"):
        traceback.print_exc(file=sys.stderr)


def _trusted_names(spec: AuditSpec, trusted) -> frozenset:
    """``--trust-checkpoint`` names must name checkpoints of the spec (a typo never trusts nothing silently)."""
    from ..errors import InvalidInputError

    trusted = frozenset([trusted] if isinstance(trusted, str) else trusted or ())
    names = [c.name for c in spec.checkpoints] + ([spec.clean.name] if spec.clean is not None else [])
    unknown = sorted(n for n in trusted if n not in names)
    if unknown:
        raise InvalidInputError(f"--trust-checkpoint {', '.join(map(repr, unknown))}: no checkpoint of that name in "
                                f"{spec.origin}; its checkpoints are {', '.join(map(repr, names))}.")
    return trusted


def run_audit(spec, out_dir, *, resume: bool = False, progress: bool = True, device: Optional[str] = None,
              show_matrix: Optional[bool] = None, trusted=frozenset(), force: bool = False,
              executor=None, ray_address: Optional[str] = None, ray_weights: Optional[str] = None) -> dict:
    """Run an audit and write results.json, spec.toml, report.md, report.html
    and the cell store into ``out_dir``; return the results dict.

    :param spec: an :class:`AuditSpec`, a dict of the same shape, or a TOML path.
    :param resume: keep the existing store and skip finished cells whose
        inputs are unchanged.
    :param progress: show progress bars (and, by default, print the exposure matrix).
    :param device: override the spec's device.
    :param show_matrix: print the exposure matrix (default: as ``progress``).
    :param trusted: names of checkpoints the user trusts on the command line
        (``--trust-checkpoint NAME``): only these may load pickles that need
        globals beyond torch's safe allowlist. A spec file never grants trust.
    :param force: replace a previous audit in ``out_dir`` without ``resume``,
        or write into a non-empty folder that is not a DIFE output folder.
    :param executor: ``"local"`` (default), ``"ray"`` or an executor object
        (:mod:`dife_core.executors`); None: the spec's ``executor``.
    :param ray_address: an existing Ray cluster (``--ray-address``; default:
        the spec's loopback address, else a local cluster).
    :param ray_weights: how Ray tasks get their checkpoints: ``object-store``
        (default; the driver's loaded copy) or ``path`` (each task loads the
        spec's ``source``).
    """
    from ..report import print_matrix, render_reports

    spec = _as_spec(spec).with_device(device)
    require_valid(spec)
    trusted = _trusted_names(spec, trusted)
    from ..executors import make_executor

    ex = make_executor(executor if executor is not None else spec.executor,
                       address=ray_address if ray_address is not None else spec.ray_address,
                       weights=ray_weights)
    audit = Audit(spec, out_dir, resume=resume, progress=progress, trusted=trusted, force=force, executor=ex)
    audit.run()
    results = render_reports(out_dir)
    if progress if show_matrix is None else show_matrix:
        print_matrix(results)
        print(f"{audit.counts['computed']} records computed, {audit.counts['reused']} reused; "
              f"reports in {out_dir}", file=sys.stderr)
    return results
