"""Results are data: assemble results.json from the stored records.

The latest plan in the store says which records make up the audit; each
planned cell / footprint / utility record is looked up by its key. The
footprint decision and its prediction check are recomputed from the stored
a00..a11 and the row's cells, so a report never disagrees with its records.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NotFoundError
from .footprint import footprint_entry
from .spec import FootprintParams
from .store import STORE, CellStore


def assemble(out_dir) -> dict:
    """results.json of the audit in ``out_dir`` (stable keys, documented in docs/engine.md)."""
    out = Path(out_dir)
    if not (out / STORE).is_file():
        raise NotFoundError(f"{out} holds no audit records ({STORE}); run `dife audit SPEC --out {out}` first.")
    store = CellStore(out)
    plan_rec = store.last("plan")
    if plan_rec is None:
        raise NotFoundError(f"{out / STORE} has no audit plan record; the audit never started.")
    plan = plan_rec["record"]
    latest = store.latest()
    store.close()

    def rec(key):
        r = latest.get(key)
        return r["record"] if r is not None else None

    seeds = plan.get("seeds") or [plan["seed"]]
    by_seed_util: dict = {}
    for u in plan["utilities"]:
        by_seed_util.setdefault(u["checkpoint"], []).append((rec(u["key"]) or {}).get("clean_utility"))
    utilities = {k: _mean_dicts(v) for k, v in by_seed_util.items()}
    checkpoints = []
    for row in plan["rows"]:
        entry = {"name": row["name"], "loader": row["loader"], "fingerprint": row["fingerprint"],
                 "attack": row["attack"], "clean_utility": utilities.get(row["name"]),
                 "role": row["role"], "control_of": row.get("control_of"), "source": row.get("source")}
        if row["role"] == "control":
            # a control row is the clean reference: same utility
            ref = next((r["name"] for r in plan["rows"] if r["role"] == "reference"), None)
            entry["clean_utility"] = utilities.get(ref)
        checkpoints.append(entry)
    groups: dict = {}
    missing = []
    for c in plan["cells"]:
        r = rec(c["key"])
        seed_note = f" (seed {c['seed']})" if len(seeds) > 1 and "seed" in c else ""
        if r is None:
            missing.append(f"{c['checkpoint']} × {c['interface']}{seed_note}")
        else:
            groups.setdefault((c["checkpoint"], c["interface"]), []).append((c.get("seed", seeds[0]), r))
    cells = [_aggregate_cell(g) for g in groups.values()]
    params = FootprintParams(**plan["spec"]["footprint"])
    fgroups: dict = {}
    for f in plan["footprints"]:
        measured = rec(f["key"])
        if measured is None:
            missing.append(f"{f['checkpoint']} footprint")
            continue
        fgroups.setdefault(f["checkpoint"], []).append((f.get("seed", seeds[0]), measured))
    # a cell where the row's control (clean reference, same trigger) is exposed measures the trigger
    confounded: dict = {}
    for row in plan["rows"]:
        if row["role"] == "control" and row.get("control_of"):
            confounded.setdefault(row["control_of"], set()).update(
                c["interface"] for c in cells if c["checkpoint"] == row["name"] and c["status"] == "exposed")
    footprints = []
    for name, g in fgroups.items():
        row_cells = [c for c in cells if c["checkpoint"] == name]
        entry = footprint_entry(name, _mean_footprint(g), params, row_cells, sorted(confounded.get(name, ())))
        if len(g) > 1:
            entry["per_seed"] = {str(sd): {k: m.get(k) for k in ("a00", "a10", "a01", "a11")} for sd, m in g}
        footprints.append(entry)
    errored = [f"{c['checkpoint']} × {c['interface']}: {c.get('reason')}" for c in cells if c["status"] == "error"]
    controls = []
    for row in plan["rows"]:
        if row["role"] != "control":
            continue
        exposed = [c["interface"] for c in cells if c["checkpoint"] == row["name"] and c["status"] == "exposed"]
        controls.append({"checkpoint": row["name"], "control_of": row["control_of"], "flagged": bool(exposed),
                         "exposed": exposed})
    return {
        "dife_version": plan["dife_version"],
        "spec": plan["spec"],
        "seed": plan["seed"],
        "seeds": list(seeds),
        "plugins": plan["plugins"],
        "checkpoints": checkpoints,
        "cells": cells,
        "footprints": footprints,
        # extensions
        "interfaces": plan["interfaces"],
        "metrics": plan.get("metrics", {}),
        "world": plan["world"],
        "templates": plan["templates"],
        "thresholds": plan["spec"]["thresholds"],
        "footprint_params": plan["spec"]["footprint"],
        "controls": controls,
        # an audit is complete when every planned record exists and no cell errored
        "complete": not missing and not errored,
        "missing": missing,
        "errors": errored,
    }


def _mean(values):
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(vals) / len(vals) if vals else None


def _std(values):
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    if len(vals) < 2:
        return 0.0 if vals else None
    m = sum(vals) / len(vals)
    return (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5


def _mean_dicts(dicts):
    """The mean of every numeric key over seeds (a single seed: itself)."""
    dicts = [d for d in dicts if isinstance(d, dict)]
    if len(dicts) <= 1:
        return dicts[0] if dicts else None
    out = dict(dicts[0])
    for k, v in dicts[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = _mean(d.get(k) for d in dicts)
    return out


def _aggregate_cell(group: list) -> dict:
    """One cell over seeds: the mean value (status from the mean), std and the
    per-seed values. An error on any seed is an error cell; N.E. is N.E."""
    from .cells import entry_type

    if len(group) == 1:
        return group[0][1]
    first = dict(group[0][1])
    errors = [(sd, r) for sd, r in group if r["status"] == "error"]
    if errors:
        sd, r = errors[0]
        return {**r, "reason": f"seed {sd}: {r.get('reason')}"}
    if all(r["status"] == "n.e." for _, r in group):
        return first
    values = [r["value"] for _, r in group]
    mean = _mean(values)
    baseline = _mean(r.get("baseline") for _, r in group)
    thr = first.get("thresholds") or {}
    status = (entry_type(mean, relative=bool(first["card"].get("relative")), baseline=baseline, thresholds=thr)
              if thr and mean is not None else first["status"])
    metrics = _mean_dicts([r.get("metrics") for _, r in group]) or {}
    first.update({
        "value": mean, "status": status, "baseline": baseline, "metrics": metrics,
        "std": _std(values), "per_seed": {str(sd): r["value"] for sd, r in group},
        "per_seed_status": {str(sd): r["status"] for sd, r in group},
        "per_seed_ci": {str(sd): [r.get("ci_low"), r.get("ci_high")] for sd, r in group},
        "ci_low": None, "ci_high": None, "n": sum(int(r.get("n") or 0) for _, r in group) or None,
        "ci_method": "per-seed", "straddles": any(r.get("straddles") for _, r in group)
        or len({r["status"] for _, r in group}) > 1,
    })
    return first


def _mean_footprint(group: list) -> dict:
    """The footprint measurement over seeds: slot values averaged (per interface too)."""
    if len(group) == 1:
        return group[0][1]
    ok = [m for _, m in group if not m.get("reason")]
    if not ok:
        return group[0][1]
    out = dict(ok[0])
    for slot in ("a00", "a10", "a01", "a11"):
        out[slot] = _mean(m.get(slot) for m in ok)
    per = {}
    for iface in ok[0].get("per_interface") or {}:
        entries = [m["per_interface"][iface] for m in ok if iface in (m.get("per_interface") or {})]
        e = dict(entries[0])
        for slot in ("a00", "a10", "a01", "a11"):
            e[slot] = _mean(x.get(slot) for x in entries) if all(x.get(slot) is not None for x in entries) else None
        per[iface] = e
    out["per_interface"] = per
    return out
