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

    utilities = {u["checkpoint"]: (rec(u["key"]) or {}).get("clean_utility") for u in plan["utilities"]}
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
    cells, missing = [], []
    for c in plan["cells"]:
        r = rec(c["key"])
        if r is None:
            missing.append(f"{c['checkpoint']} × {c['interface']}")
        else:
            cells.append(r)
    params = FootprintParams(**plan["spec"]["footprint"])
    footprints = []
    for f in plan["footprints"]:
        measured = rec(f["key"])
        if measured is None:
            missing.append(f"{f['checkpoint']} footprint")
            continue
        row_cells = [c for c in cells if c["checkpoint"] == f["checkpoint"]]
        footprints.append(footprint_entry(f["checkpoint"], measured, params, row_cells))
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
        "complete": not missing,
        "missing": missing,
    }
