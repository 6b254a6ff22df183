"""Effective-footprint diagnosis: which reusable component carries the exposure.

**Branch swap.** From the clean reference C and the checkpoint P build
a00 = (C_V, C_T), a10 = (P_V, C_T), a01 = (C_V, P_T), a11 = (P_V, P_T), logit
scale from C, and measure the same readout on all four. Every measured cell
of the row gets its own branch swap (``per_interface``); the hybrids read the
towers' cached embeddings, so no extra encoder pass is needed.

**Which readout decides.** In order: (1) a mechanism attack with a component
-repair probe is decided on that probe; (2) the attack's *native interface*
(named by its card, or by the registered attack) when its cell was measured;
(3) the trigger channel's *diagnostic readout*: an image trigger -> zero-shot
target success over the class-prompt set; a text trigger with a source class
-> the query hijack rate; a text trigger with no source class (e.g. a suffix
sentence appended to any caption) -> the *triggered prompt set* (every class
prompt carries the trigger; the share of clean non-target images the target
wins); (4) otherwise the applicable interface with the strongest signal.

**Component repair.** A mechanism attack (card ``probe =
"component-repair"``) whose plugin gives ``repair_probe`` is measured as
full / prompt only / trigger only / both clean; these fill the same slots
(a11 = full, a01 = prompt only (text side), a10 = trigger only (image side),
a00 = both clean), so one decision rule serves both probes.

**Decision.** signal = |a11 − a00|; below ``weak_signal`` -> weak. VRS =
(a10 − a00)/(a11 − a00 + ε), TRS = (a01 − a00)/(…), CSS = (a11 − max(a10,
a01))/(…). visual / textual / coupled when VRS / TRS / CSS exceeds ``ratio``
and leads the next ratio by at least ``lead``; coupled otherwise (neither
tower alone carries it).

**Prediction.** The footprint predicts which measured cells are exposed and
which stay weak (:func:`predict`); ``prediction_holds`` checks it.
"""

from __future__ import annotations

from typing import Optional

from .cells import NotEvaluable, _clean
from .scoring import prompt_hijack, prompt_set_hijack, zero_shot

SLOTS = ("a00", "a10", "a01", "a11")
REPAIR_KEYS = {"both_clean": "a00", "trigger_only": "a10", "prompt_only": "a01", "full": "a11"}


def diagnostic_readout(profile) -> tuple:
    """``(readout, metric)`` of the trigger channel's diagnostic (see module docstring)."""
    ch = profile.trigger_channel or ("text" if profile.channel == "none" else None)
    if ch == "image":
        return ("zero-shot", "ts")
    if ch == "text" and profile.source is None:
        return ("zero-shot", "ts-triggered-prompts")
    if ch == "text":
        return ("prompt-conditioned", "qhr")
    raise NotEvaluable(f"the attack's trigger channel {profile.channel!r} has no diagnostic readout")


def measure_branch_swap(emb, clean, model, world, trigger, templates, profile) -> dict:
    """a00/a10/a01/a11 of the diagnostic readout over the four hybrids."""
    readout = diagnostic_readout(profile)
    if world.classification is None:
        raise NotEvaluable(f"no classification population in {world.name!r} for the diagnostic readout")
    classes = tuple(world.classnames)
    if profile.target not in classes:
        raise NotEvaluable(f"target {profile.target!r} is not a class of the population")
    target = classes.index(profile.target)
    if readout[1] == "qhr" and profile.source not in classes:
        raise NotEvaluable("the diagnostic readout (QHR) needs a source class; the attack card names none")
    pairs = {"a00": (clean, clean), "a10": (model, clean), "a01": (clean, model), "a11": (model, model)}
    out = {"probe": "branch-swap", "readout": f"{readout[0]}:{readout[1]}"}
    for slot, (v, t) in pairs.items():
        hybrid = clean.recombine(visual_from=v, text_from=t)
        if readout[1] == "ts":
            out[slot] = zero_shot(emb, hybrid, world, trigger, templates, target)["ts"]
        elif readout[1] == "ts-triggered-prompts":
            out[slot] = prompt_set_hijack(emb, hybrid, world, trigger, templates, target)["ts"]
        else:
            out[slot] = prompt_hijack(emb, hybrid, world, trigger, templates, classes.index(profile.source),
                                      target)["qhr"]
    return out


def measure_per_interface(clean, model, cells: list, evaluate) -> dict:
    """Branch swap on every measured cell of a row: ``{interface id: {metric,
    a00, a10, a01, a11}}``. ``a11`` is the cell's own value; the three hybrids
    are evaluated with ``evaluate(interface id, hybrid) -> record`` (the same
    cell API), which reads the towers' cached embeddings: no extra encoder
    pass. Cells fed by a mechanism are diagnosed by component repair instead."""
    out = {}
    for c in cells:
        if c["status"] in ("n.e.", "error") or c.get("channel") == "mechanism" or c.get("value") is None:
            continue
        entry = {"metric": c["metric"], "a11": c["value"]}
        for slot, (v, t) in (("a00", (clean, clean)), ("a10", (model, clean)), ("a01", (clean, model))):
            rec = evaluate(c["interface"], clean.recombine(visual_from=v, text_from=t))
            entry[slot] = rec.get("value") if rec["status"] not in ("n.e.", "error") else None
        out[c["interface"]] = entry
    return out


def per_interface_decisions(per_interface: dict, params) -> dict:
    """The footprint decision of each interface's own branch swap."""
    out = {}
    for k, v in (per_interface or {}).items():
        if all(v.get(s) is not None for s in SLOTS):
            out[k] = {**v, **decide(v, params)}
        else:
            out[k] = {**v, "footprint": None}
    return out


def measure_component_repair(mechanism) -> dict:
    """The attack plugin's repair probe, mapped onto the four slots."""
    from ..errors import PluginError

    values = mechanism.repair_probe(mechanism.context)
    missing = [k for k in REPAIR_KEYS if k not in (values or {})]
    if missing:
        raise PluginError(f"repair_probe returned {sorted(values or {})}; missing {', '.join(missing)}")
    out = {"probe": "component-repair", "readout": "repair-probe",
           "repair": {k: float(values[k]) for k in REPAIR_KEYS}}
    for k, slot in REPAIR_KEYS.items():
        out[slot] = float(values[k])
    return out


def decide(m: dict, params) -> dict:
    """signal, VRS/TRS/CSS and the footprint from the four slot values."""
    a00, a10, a01, a11 = (float(m[s]) for s in SLOTS)
    d = a11 - a00
    den = d + params.eps
    vrs, trs = (a10 - a00) / den, (a01 - a00) / den
    css = (a11 - max(a10, a01)) / den
    signal = abs(d)
    if signal < params.weak_signal:
        fp = "weak"
    else:
        ratios = sorted((("visual", vrs), ("textual", trs), ("coupled", css)), key=lambda kv: kv[1], reverse=True)
        (top, r1), (_, r2) = ratios[0], ratios[1]
        fp = top if (r1 > params.ratio and r1 - r2 >= params.lead) else "coupled"
    return {"signal": signal, "vrs": vrs, "trs": trs, "css": css, "footprint": fp}


def towers_alone(measured: dict, cells: list) -> tuple:
    """The towers whose branch swap *alone* makes the footprint's readout
    exposed: ``"visual"`` when a10 (poisoned visual tower, clean text tower)
    is, ``"textual"`` when a01 is -- judged with the readout cell's own card
    and thresholds (a lift over a00 for absolute readouts). Empty when the
    readout is not one of ``cells``."""
    from .cells import entry_type

    readout = str(measured.get("readout") or "").split(":")[0]
    cell = next((c for c in cells if c["interface"] == readout and c.get("thresholds")), None)
    if cell is None:
        return ()
    rel = bool(cell["card"].get("relative"))
    a00 = float(measured["a00"])
    return tuple(tower for tower, slot in (("visual", "a10"), ("textual", "a01"))
                 if entry_type(float(measured[slot]), relative=rel, baseline=None if rel else a00,
                               thresholds=cell["thresholds"]) == "exposed")


def predict(footprint: str, probe: str, cells: list, confounded=(), alone=()) -> dict:
    """The footprint's card-derived prediction over the row's measured cells
    (N.E. and error cells are never predicted): ``{"exposed", "weak",
    "below_cut", "confounded"}``, lists of interface ids.

    Which tower carries the trigger decides which cells it reaches:

    - visual: cells fed by image pixels whose readout uses the visual tower
      (image features or score) exposed; cells fed through text weak.
    - textual: cells fed through text whose readout uses the text tower
      (text features or score) exposed; image-fed or image-feature cells weak.
    - coupled via component repair: cells that instantiate the mechanism
      exposed, every other measured cell weak; coupled via branch swap:
      score cells exposed, single-tower feature cells weak -- except the
      feature cells of a tower in ``alone`` (:func:`towers_alone`): "coupled"
      says neither tower carries most of the signal, but a tower whose swap
      alone already makes the readout exposed carries the trigger into the
      cells that read that tower only.
    - weak: nothing exposed, every measured cell weak.

    Two refinements come from the card and the controls, not from the
    footprint:

    - a cell the rule reaches whose card decides its event by a ``cut`` (a
      score must clear a threshold set by true pairs) is predicted weak and
      listed in ``below_cut``: a footprint says which tower moves the
      target's score, not whether the moved score reaches true pairs' level;
    - a cell in ``confounded`` (the clean reference under the same trigger is
      exposed there: the trigger alone moves the clean towers) is not
      predicted -- it cannot tell a backdoor in the checkpoint from the
      trigger's effect on any model.
    """
    exposed, weak, below_cut, conf = [], [], [], []
    for c in cells:
        if c["status"] in ("n.e.", "error"):
            continue
        iface = c["interface"]
        if iface in confounded:
            conf.append(iface)
            continue
        ch, ro = c.get("channel"), c["card"]["readout"]
        reached = None  # True: exposed, False: weak, None: not predicted
        if footprint == "visual":
            reached = True if ch == "image" and ro in ("image-features", "score") else (
                False if ch in ("text", "none") else None)
        elif footprint == "textual":
            reached = True if ch in ("text", "none") and ro in ("text-features", "score") else (
                False if ch == "image" or ro == "image-features" else None)
        elif footprint == "coupled" and probe == "component-repair":
            reached = ch == "mechanism"
        elif footprint == "coupled":
            reached = ro == "score" or (ro == "image-features" and ch == "image" and "visual" in alone) or (
                ro == "text-features" and ch in ("text", "none") and "textual" in alone)
        else:
            reached = False
        if reached and c["card"].get("decision", "comparison") == "cut":
            below_cut.append(iface)
            reached = False
        if reached is True:
            exposed.append(iface)
        elif reached is False:
            weak.append(iface)
    return {"exposed": exposed, "weak": weak, "below_cut": below_cut, "confounded": conf}


def check_prediction(exposed: list, weak: list, cells: list) -> tuple:
    """``(prediction_holds, mismatches)``."""
    status = {c["interface"]: c["status"] for c in cells}
    mism = [f"{i}: predicted exposed, measured {status[i]}" for i in exposed if status[i] != "exposed"]
    mism += [f"{i}: predicted weak, measured exposed" for i in weak if status[i] == "exposed"]
    return (not mism), mism


def footprint_entry(checkpoint: str, measured: Optional[dict], params, cells: list, confounded=()) -> dict:
    """The results.json footprint record of one row; ``confounded``: the
    interfaces where the row's control (the clean reference under the same
    trigger) is exposed."""
    base = {"checkpoint": checkpoint}
    if measured is None or measured.get("reason"):
        return {**base, "a00": None, "a10": None, "a01": None, "a11": None, "signal": None, "vrs": None,
                "trs": None, "css": None, "footprint": None,
                "probe": (measured or {}).get("probe"), "predicted_exposed": [], "prediction_holds": None,
                "reason": (measured or {}).get("reason", "not measured"),
                "per_interface": per_interface_decisions((measured or {}).get("per_interface"), params)}
    dec = decide(measured, params)
    alone = towers_alone(measured, cells) if measured["probe"] != "component-repair" else ()
    pred = predict(dec["footprint"], measured["probe"], cells, confounded, alone)
    exposed, weak = pred["exposed"], pred["weak"]
    holds, mism = check_prediction(exposed, weak, cells)
    rec = {**base, **{s: measured[s] for s in SLOTS}, "signal": dec["signal"], "vrs": dec["vrs"],
           "trs": dec["trs"], "css": dec["css"], "footprint": dec["footprint"], "probe": measured["probe"],
           "predicted_exposed": exposed, "prediction_holds": holds,
           # extensions
           "predicted_weak": weak, "mismatches": mism, "below_cut": pred["below_cut"],
           "confounded": pred["confounded"], "alone": list(alone), "readout": measured.get("readout"),
           "params": params.to_dict()}
    if "repair" in measured:
        rec["repair"] = measured["repair"]
    rec["per_interface"] = per_interface_decisions(measured.get("per_interface"), params)
    if measured.get("decided_on"):
        rec["decided_on"] = measured["decided_on"]
    if measured.get("note"):
        rec["note"] = measured["note"]
    return _clean(rec)
