"""Read a finished audit for `dife compare` / `dife export`: an output
folder (assembled from its record store, the source of truth, else its
results.json) or a results.json file. A results.json is checked for the
keys the reports read; a malformed one is an input error naming the file
and the key."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidInputError, NotFoundError


def _reject_constant(name):
    raise ValueError(f"non-finite number {name}")


def _check(results, path: Path) -> dict:
    def bad(key, what):
        raise InvalidInputError(f"{path}: {key} {what}; this is not a DIFE results.json.")

    if not isinstance(results, dict):
        bad("the top level", "is not an object")
    for key in ("checkpoints", "cells"):
        if not isinstance(results.get(key), list):
            bad(key, "is missing or not a list")
    for n, ck in enumerate(results["checkpoints"]):
        if not isinstance(ck, dict) or not isinstance(ck.get("name"), str):
            bad(f"checkpoints[{n}].name", "is missing or not a string")
    for n, c in enumerate(results["cells"]):
        if not isinstance(c, dict):
            bad(f"cells[{n}]", "is not an object")
        for k in ("checkpoint", "interface", "status"):
            if not isinstance(c.get(k), str):
                bad(f"cells[{n}].{k}", "is missing or not a string")
    for n, ck in enumerate(results["checkpoints"]):
        if ck.get("fingerprint") is not None and not isinstance(ck["fingerprint"], dict):
            bad(f"checkpoints[{n}].fingerprint", "is not an object")
    # optional lists of objects, each naming what it is about by a string key
    for key, name_key in (("footprints", "checkpoint"), ("interfaces", "id"), ("controls", "checkpoint"),
                          ("verdicts", "checkpoint")):
        if results.get(key) is None:
            continue
        if not isinstance(results[key], list):
            bad(key, "is not a list")
        for n, x in enumerate(results[key]):
            if not isinstance(x, dict) or not isinstance(x.get(name_key), str):
                bad(f"{key}[{n}].{name_key}", "is missing or not a string")
    for n, c in enumerate(results["cells"]):
        if c.get("metrics") is not None and not isinstance(c["metrics"], dict):
            bad(f"cells[{n}].metrics", "is not an object")
        if c.get("card") is not None and not isinstance(c["card"], dict):
            bad(f"cells[{n}].card", "is not an object")
    if results.get("missing") is not None and not isinstance(results["missing"], list):
        bad("missing", "is not a list")
    return results


def load_results_json(path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text, parse_constant=_reject_constant)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file.") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InvalidInputError(f"{path}: not valid JSON ({type(e).__name__}: {e}).") from None
    return _check(data, path)


def load_run(run) -> dict:
    """The results dict of ``run`` (an output folder or a results.json file)."""
    p = Path(run)
    if p.is_dir():
        from ..engine.store import STORE

        if (p / STORE).is_file():
            from ..engine.results import assemble

            return assemble(p)
        if (p / "results.json").is_file():
            return load_results_json(p / "results.json")
        raise NotFoundError(f"{p} holds no audit (neither {STORE} nor results.json); "
                            f"run `dife audit SPEC --out {p}` first.")
    if p.is_file():
        return load_results_json(p)
    raise NotFoundError(f"{p}: no such output folder or results.json.")
