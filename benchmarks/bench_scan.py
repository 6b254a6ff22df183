"""Acceptance benchmark of `dife scan` (docs/scan.md, "Benchmark").

Each suspect is exported as a plain open_clip checkpoint (open_clip_config.json
+ open_clip_model.safetensors, no DIFE manifest; files beside the weights, e.g.
a prompt learner's artifacts.safetensors, are copied along) and scanned against
the clean default model; clean models trained with other seeds are the null.

    export DIFE_CACHE_DIR=/path/to/cache     # the clean model and the suite's builds
    # 1. clean models with other seeds (about 4 min each on 2 threads)
    .venv/bin/python benchmarks/bench_scan.py train-nulls --seeds 1,2,3,4,5
    #    and clean fine-tunes of the reference (the null of towers that descend from it)
    .venv/bin/python benchmarks/bench_scan.py train-finetunes --reference CLEAN_DIR --seeds 1,2,3 --out NULL_DIR
    # 2. scan every suspect (a DIFE checkpoint folder each) and the nulls; figures into JSON
    .venv/bin/python benchmarks/bench_scan.py run --reference CLEAN_DIR --suspects DIR1,DIR2,... \\
        --nulls NULL1,NULL2,... --out /tmp/scan-bench --json benchmarks/results/scan-default.json
    #    (suspects and nulls may run apart: bench_scan.py combine A.json B.json --json ALL.json)
    # 3. the Markdown tables of docs/scan.md (verdicts; each statistic against the null)
    .venv/bin/python benchmarks/bench_scan.py table benchmarks/results/scan-default.json
    .venv/bin/python benchmarks/bench_scan.py stats benchmarks/results/scan-default.json

`run` records per suspect: the verdict, score / threshold, recovered target
against the true one (from the suspect's own card, read only for grading),
the recovered trigger, the scan's seconds; with `--audit` also the recovered
card's audit against the card-based audit (status class per applicable cell,
footprint) and, for text triggers, the recovered trigger's native exposure
against the true trigger's. AUROC of the normalised scan score, attacks
against nulls. `--repeat 3` times each scan three times (median).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _threads() -> int:
    import torch

    n = int(os.environ.get("DIFE_TEST_THREADS") or 2)
    torch.set_num_threads(n)
    return n


def export_open_clip(src: str, dst: Path) -> Path:
    """A DIFE checkpoint folder -> a plain open_clip folder (no manifest)."""
    from safetensors.torch import save_file

    from dife_core.checkpoint import read_manifest
    from dife_core.loading import load_model

    m = read_manifest(src)
    arch = m["architecture"]
    enc = load_model(src)
    dst.mkdir(parents=True, exist_ok=True)
    model_cfg = {k: arch[k] for k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale",
                                      "init_logit_bias", "custom_text") if k in arch}
    pre = m.get("preprocess") or {}
    preprocess_cfg = {k: pre[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pre}
    (dst / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}))
    save_file({k: v.detach().contiguous() for k, v in enc.state_dict().items()},
              str(dst / "open_clip_model.safetensors"))
    for e in os.listdir(src):  # components beside the towers travel with the export
        if e not in ("dife.json", "model.safetensors", "tokenizer") and not e.startswith("."):
            shutil.copy2(Path(src) / e, dst / e)
    return dst


def auroc(pos: list, neg: list) -> float:
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def status_class(s: str) -> str:
    return {"exposed": "exposed", "weak": "not exposed", "negative": "not exposed"}.get(s, s)


def compare_audits(recovered: dict, truth: dict, name: str) -> dict:
    """Status class per applicable cell (neither N.E. nor error in the card-based audit) and the footprint."""
    rc = {c["interface"]: c for c in recovered["cells"] if c["checkpoint"] == name}
    tc = {c["interface"]: c for c in truth["cells"] if c["checkpoint"] == name}
    cells = [i for i, c in tc.items() if c["status"] not in ("n.e.", "error")]
    same = [i for i in cells if i in rc and status_class(rc[i]["status"]) == status_class(tc[i]["status"])]
    fp = {f["checkpoint"]: f.get("footprint") for f in recovered.get("footprints") or []}
    ft = {f["checkpoint"]: f.get("footprint") for f in truth.get("footprints") or []}
    return {"applicable": len(cells), "same_class": len(same),
            "differ": [f"{i}: {tc[i]['status']} vs {rc.get(i, {}).get('status')}" for i in cells if i not in same],
            "footprint_recovered": fp.get(name), "footprint_card": ft.get(name),
            "same_footprint": fp.get(name) == ft.get(name)}


def cmd_train_nulls(a) -> None:
    _threads()
    from dife_shapes.recipe import clean_clip

    for s in [int(x) for x in a.seeds.split(",")]:
        t0 = time.time()
        enc = clean_clip(a.preset, s, progress=True)
        print(f"seed {s}: {time.time() - t0:.0f}s", getattr(enc, "name", ""), file=sys.stderr)


def cmd_train_finetunes(a) -> None:
    """Clean fine-tunes of the reference: the recipe of the suite's poisoning
    attacks (200 AdamW steps of 256 pairs, lr 1e-3) on the world's *clean*
    training pairs, one per seed. Their towers descend from the reference like
    an attack's do, so they are the null of the differential statistics."""
    import copy

    _threads()
    from dife_core.checkpoint import save_checkpoint
    from dife_core.loading import load_model
    from dife_core.populations import load_world
    from dife_core.training import contrastive_train

    ref = load_model(a.reference).eval()
    world = load_world("shapes", {"preset": a.preset})
    pairs = world.extras["train_pairs"]
    out = Path(a.out)
    for s in [int(x) for x in a.seeds.split(",")]:
        dst = out / f"clean-finetune-s{s}"
        if (dst / "dife.json").is_file():
            print(f"{dst}: exists", file=sys.stderr)
            continue
        t0 = time.time()
        enc = copy.deepcopy(ref)
        contrastive_train(enc, pairs.images, list(pairs.captions), steps=a.steps, batch_size=256, lr=1e-3, warmup=20,
                          weight_decay=0.1, seed=s, trainable="all", progress=True,
                          description=f"clean fine-tune s{s}")
        enc.invalidate_fingerprint()
        save_checkpoint(enc, dst, extra={"null": "clean fine-tune of the reference", "seed": s, "steps": a.steps})
        print(f"seed {s}: {time.time() - t0:.0f}s -> {dst}", file=sys.stderr)


def _truth_audit(src: str, reference: str, out: Path, dataset_options: dict) -> dict:
    from dife_core.engine import run_audit

    spec = {"interfaces": "all", "controls": True, "populations": {"dataset": "shapes", "options": dataset_options},
            "clean": {"name": "reference", "source": reference}, "checkpoints": [{"name": "suspect", "source": src}]}
    return run_audit(spec, out, progress=False, force=True, show_matrix=False)


#: native protocol -> interface, for cards that do not name their native interface
NATIVE_BY_PROTOCOL = {"text-to-image retrieval (triggered queries)": "targeted-retrieval"}


def native_protocol(src: str, card: dict, recovered: dict, dataset_options: dict) -> dict:
    """A text trigger's native validation, text-to-image retrieval, run for the
    true and the recovered trigger on the same queries: held-out pool captions
    of every class but the target (of the card's source only, when it names
    one); hit = a target-class image in the top K (the card's native K).
    ``{"native_recovered": H@K, "native_card": H@K, "native_plain": H@K}``."""
    from dife_backdoors.retrieval import gallery, hits_at_k, pick_queries
    from dife_core.engine.embeddings import resolve_trigger
    from dife_core.loading import load_model
    from dife_core.populations import load_world
    from dife_core.utility import encode_images

    world = load_world("shapes", dataset_options)
    enc = load_model(src)
    names = list(world.classnames)
    t = names.index(card["target"])
    carriers = [names.index(card["source"])] if card.get("source") else [i for i in range(len(names)) if i != t]
    _, images, labels, captions = gallery(world)
    queries = pick_queries(captions, labels, carriers, n=200, seed=0)
    feats = encode_images(enc, images)
    k = int(str((card.get("native") or {}).get("metric") or "h@5").split("@")[-1])
    out = {}
    for label, trig in (("card", card["trigger"]), ("recovered", recovered["trigger"]), ("plain", None)):
        qs = queries if trig is None else resolve_trigger({"name": trig["name"], "params": trig["params"]})(queries)
        out[f"native_{label}"] = hits_at_k(enc, qs, images, labels, t, image_features=feats, ks=(k,))[f"h@{k}"]
    return out


def cmd_run(a) -> None:
    _threads()
    from dife_core.checkpoint import read_manifest
    from dife_core.scan import parse_options, run_scan

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dsopt = parse_options(a.dataset_option)
    options = parse_options(a.option)
    rows = []
    suspects = [s for s in (a.suspects or "").split(",") if s] + [n for n in (a.nulls or "").split(",") if n]
    nulls = set(n for n in (a.nulls or "").split(",") if n)
    for src in suspects:
        name = Path(src.rstrip("/")).name
        card = (read_manifest(src) or {}).get("attack") if os.path.exists(os.path.join(src, "dife.json")) else None
        plain = export_open_clip(src, out / "export" / name)
        secs = []
        results = None
        for _r in range(a.repeat):
            results = run_scan(str(plain), a.reference, out / "scan" / name, dataset="shapes", dataset_options=dsopt,
                               options={**options, "audit": bool(a.audit)}, force=True, progress=False,
                               name="suspect")
            secs.append(results["scans"][0]["seconds"])
        s = results["scans"][0]
        rec = s["recovered"][0] if s["recovered"] else None
        row = _row(name, "clean" if src in nulls else "attack", card, s, secs)
        if a.audit and card and rec:
            truth = _truth_audit(src, a.reference, out / "truth" / name, dsopt)
            row["matrix"] = compare_audits(results, truth, "suspect")
            if (card.get("trigger") or {}).get("channel") == "text":
                nat = card.get("native") or {}
                # builds made before the card named its interface: the protocol says which
                native = nat.get("interface") or NATIVE_BY_PROTOCOL.get(nat.get("protocol"))
                for label, res in (("recovered", results), ("card", truth)):
                    c = next((c for c in res["cells"] if c["checkpoint"] == "suspect" and c["interface"] == native),
                             None)
                    row[f"native_{label}"] = None if c is None else c.get("value")
                if row.get("native_card") is None:  # the native cell is N.E. under the card: its own protocol
                    row.update(native_protocol(src, card, rec, dsopt))
                    row["native_interface"] = "text-to-image retrieval of the attack's carrier captions (H@K)"
                else:
                    row["native_interface"] = native
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("checkpoint", "verdict", "score", "target", "true_target",
                                               "scan_seconds_median")}), file=sys.stderr)
    doc = {"options": options, "dataset_options": dsopt, "reference": a.reference, "threads": _threads(),
           "summary": summarize(rows), "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc["summary"], indent=2))


def deciding_score(record: dict) -> float:
    """The best score / threshold among the findings that may decide a verdict
    (the scanner decides and every tower descends from the reference); 0 when
    none may. The verdict is ``backdoored`` exactly when this reaches 1 on a
    finding with a card."""
    from dife_core.scan import _decides, _norm

    td = record.get("tower_diff") or {}
    return max((_norm(f) for f in record.get("findings") or () if _decides(f, td)
                and f.get("statistic") not in ("skipped", "not-derived", "error")), default=0.0)


def _row(name: str, kind: str, card, s: dict, secs: list) -> dict:
    """A benchmark row from a scan record (``card``: the suspect's own card, for grading only)."""
    rec = s["recovered"][0] if s["recovered"] else None
    return {"checkpoint": name, "kind": kind,
            "attack": (card or {}).get("attack"), "true_target": (card or {}).get("target"),
            "true_trigger": (card or {}).get("trigger"), "verdict": s["verdict"], "score": s["score"],
            "threshold": s["threshold"], "normalised_score": s["normalised_score"],
            "deciding_score": deciding_score(s), "statistic": s["statistic"],
            "scanner": s["scanner"], "target": s["target"],
            "recovered_trigger": None if rec is None else rec.get("trigger")
            if (rec.get("trigger") or {}).get("name") != "masked-pattern"
            else {"name": "masked-pattern", "mask_l1": rec.get("recovered", {}).get("mask_l1")},
            "recovered_source": (rec or {}).get("source"), "tower_diff": s["tower_diff"]["summary"],
            "scan_seconds": secs, "scan_seconds_median": statistics.median(secs),
            "findings": [{k: f.get(k) for k in ("scanner", "statistic", "score", "threshold", "target", "summary",
                                                "decides")} for f in s["findings"]]}


#: statistic -> the scanner option that holds its threshold
THRESHOLD_KEYS = {("image-inversion", "inverted-ts-excess"): "ts_threshold",
                  ("text-tokens", "drift-hijack-excess"): "drift_threshold"}


def _optimised(f: dict) -> bool:
    """Whether a finding's trigger was optimised against the suspect (records
    made before findings said so: the inversion and the whole-vocabulary token
    search)."""
    if "optimised" in f:
        return bool(f["optimised"])
    return f["scanner"] == "image-inversion" or (f["scanner"], f["statistic"]) == ("text-tokens", "hijack-excess")


def rejudge(record: dict, options=None) -> dict:
    """A stored scan record judged again with the current thresholds and ``decides``
    flags (defaults, or ``options``): the same findings and scores, the verdict
    and recovered cards of :func:`dife_core.scan.verdict_of` / ``recovered_cards``.
    A threshold is configuration; changing one needs no new search."""
    from dife_core.plugins import get_registry
    from dife_core.scan import _norm, recovered_cards, split_options, verdict_of

    glob, per = split_options(options or {}, get_registry().all("scanners"))
    findings = []
    for f in record["findings"]:
        f = dict(f)
        opts = per.get(f["scanner"])
        if opts is not None and f["statistic"] not in ("skipped", "not-derived", "error"):
            f["threshold"] = float(opts[THRESHOLD_KEYS.get((f["scanner"], f["statistic"]), "threshold")])
            f["decides"] = bool(opts.get("decides", True))
            f["optimised"] = _optimised(f)
        findings.append(f)
    findings.sort(key=lambda f: -_norm(f))
    v = verdict_of(findings, record["tower_diff"], glob)
    cards = recovered_cards(findings, record["tower_diff"]) if v["verdict"] == "backdoored" else []
    return {**record, **v, "findings": findings, "recovered": cards,
            "target": cards[0].get("target") if cards else None,
            "source_class": cards[0].get("source") if cards else None}


def cmd_rejudge(a) -> None:
    """Re-judge every row of run JSON files from the scan records their run left in
    ``OUT/scan/<name>/scans.json`` (``--outs``, one per file), with the current defaults."""
    from dife_core.scan import parse_options, read_scans

    rows = []
    docs = []
    for f, out in zip(a.files, a.outs.split(",")):
        doc = json.loads(Path(f).read_text())
        docs.append(doc)
        for r in doc["rows"]:
            (rec,) = read_scans(Path(out) / "scan" / r["checkpoint"])
            card = {"attack": r.get("attack"), "target": r.get("true_target"), "trigger": r.get("true_trigger")}
            new = _row(r["checkpoint"], r["kind"], card if r["kind"] == "attack" else None,
                       rejudge(rec, parse_options(a.option)), r["scan_seconds"])
            rows.append({**r, **new})
    doc = {**docs[0], "rejudged": True, "summary": summarize(rows), "rows": rows}
    Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc["summary"], indent=2))


def summarize(rows: list) -> dict:
    """AUROC of the normalised score (attacks whose towers differ from the
    reference against clean seeds) and the flag / target counts."""
    att = [r["normalised_score"] for r in rows
           if r["kind"] == "attack" and r["tower_diff"].startswith("towers identical") is False]
    cln = [r["normalised_score"] for r in rows if r["kind"] == "clean"]
    # the same, over the findings that may decide (rows made before it was recorded have none)
    att_d = [r.get("deciding_score") for r in rows
             if r["kind"] == "attack" and r["tower_diff"].startswith("towers identical") is False]
    cln_d = [r.get("deciding_score") for r in rows if r["kind"] == "clean"]
    ok = att_d and cln_d and None not in att_d + cln_d
    out = {"auroc": auroc(att, cln) if att and cln else None,
           "auroc_deciding": auroc(att_d, cln_d) if ok else None, "attacks": len(att), "clean": len(cln),
           "flagged_attacks": sum(r["verdict"] == "backdoored" for r in rows if r["kind"] == "attack"),
           "flagged_clean": sum(r["verdict"] == "backdoored" for r in rows if r["kind"] == "clean"),
           "target_right": sum(r["target"] == r["true_target"] for r in rows
                               if r["kind"] == "attack" and r["verdict"] == "backdoored")}
    audited = [r for r in rows if r.get("matrix")]
    if audited:  # the recovered card's audit against the card-based audit (run --audit)
        out.update({"audited": len(audited),
                    "matrix_same_class": sum(r["matrix"]["same_class"] for r in audited),
                    "matrix_applicable": sum(r["matrix"]["applicable"] for r in audited),
                    "same_footprint": sum(bool(r["matrix"]["same_footprint"]) for r in audited),
                    "native_ratio": {r["checkpoint"]: (r["native_recovered"] / r["native_card"]
                                                       if r.get("native_card") else None)
                                     for r in audited if "native_recovered" in r}})
    return out


def cmd_combine(a) -> None:
    """Runs made apart (e.g. suspects and clean seeds) -> one file with one summary.
    A checkpoint in a later file replaces the same checkpoint of an earlier one
    (a re-run), in place."""
    docs = [json.loads(Path(f).read_text()) for f in a.files]
    rows: dict = {}
    for d in docs:
        for r in d["rows"]:
            # each row says which reference it was scanned against (suspects built on another base)
            rows[r["checkpoint"]] = {**r, "reference": r.get("reference") or d["reference"]}
    refs = sorted({r["reference"] for r in rows.values()})
    doc = {**docs[0], "reference": refs[0] if len(refs) == 1 else refs, "rows": list(rows.values()),
           "combined_from": list(a.files)}
    doc["summary"] = summarize(doc["rows"])
    Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc["summary"], indent=2))


def cmd_table(a) -> None:
    doc = json.loads(Path(a.file).read_text())
    print("| checkpoint | kind | verdict | score / threshold (statistic) | target (true) | recovered trigger | "
          "matrix same class | footprint | scan s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in doc["rows"]:
        # (rows made before _row said None for "nothing recovered" carry a placeholder)
        t = (r.get("recovered_trigger") or {}) if r["verdict"] == "backdoored" else {}
        trig = t.get("name") or "—"
        if (t.get("params") or {}).get("token"):
            trig += f" `{t['params']['token']}`"
        m = r.get("matrix") or {}
        mc = f"{m['same_class']}/{m['applicable']}" if m else "—"
        fp = f"{m.get('footprint_recovered')} ({m.get('footprint_card')})" if m else "—"
        print(f"| {r['checkpoint']} | {r['kind']} | {r['verdict']} | {r['score']:.2f} / {r['threshold']:.2f} "
              f"({r['statistic']}) | {r['target']} ({r['true_target']}) | {trig} | {mc} | {fp} | "
              f"{r['scan_seconds_median']:.0f} |")
    s = doc["summary"]
    auc = "n/a" if s.get("auroc") is None else f"{s['auroc']:.3f}"
    if s.get("auroc_deciding") is not None:
        auc += f" (deciding findings only: {s['auroc_deciding']:.3f})"
    print(f"\nAUROC {auc}; attacks flagged {s['flagged_attacks']}/{s['attacks']}; clean flagged "
          f"{s['flagged_clean']}/{s['clean']}; target right {s['target_right']}.")
    if s.get("audited"):
        print(f"Recovered-card audit: same status class in {s['matrix_same_class']} of {s['matrix_applicable']} "
              f"applicable cells; same footprint {s['same_footprint']} of {s['audited']}.")
        for name, q in (s.get("native_ratio") or {}).items():
            print(f"Native exposure, recovered / true trigger, {name}: " + ("n/a" if q is None else f"{q:.3f}"))


#: the statistics of the built-in scanners, in the order of the per-statistic table
STATISTICS = (("image-families", "ts-excess"), ("image-inversion", "mask-shrink"),
              ("image-inversion", "inverted-ts-excess"), ("text-tokens", "drift-hijack-excess"),
              ("text-tokens", "hijack-excess"), ("text-natural", "hijack-excess"))


def cmd_stats(a) -> None:
    """Per checkpoint, each statistic's best score (``n.d.``: its tower does not descend
    from the reference; ``—``: skipped, the tower is bit-identical), then per
    statistic the attack range against the null range: which statistic decides."""
    doc = json.loads(Path(a.file).read_text())
    head = [f"{sc.split('-')[-1]} {st}" for sc, st in STATISTICS]
    print("| checkpoint | kind | " + " | ".join(head) + " |")
    print("|---|---|" + "---|" * len(head))
    ranges: dict = {}
    for r in doc["rows"]:
        # a clean model with a tower trained apart from the reference: its findings are leads only
        kind = ("clean-apart" if r["kind"] == "clean" and any(f["statistic"] == "not-derived" for f in r["findings"])
                else r["kind"])
        cells = []
        for sc, st in STATISTICS:
            fs = [f for f in r["findings"] if f["scanner"] == sc]
            mine = [f["score"] for f in fs if f["statistic"] == st]
            if mine:
                v = max(mine)
                cells.append(f"{v:.2f}")
                ranges.setdefault((sc, st, kind), []).append(v)
            else:
                kinds = {f["statistic"] for f in fs}
                cells.append("n.d." if "not-derived" in kinds else "—")
        print(f"| {r['checkpoint']} | {r['kind']} | " + " | ".join(cells) + " |")
    print("\n| statistic | threshold | attacks (min–max) | clean, descending (max) "
          "| clean, a tower apart (max; leads) |")
    print("|---|---|---|---|---|")
    thr = {}
    for r in doc["rows"]:
        for f in r["findings"]:
            thr.setdefault((f["scanner"], f["statistic"]), f["threshold"])
    for sc, st in STATISTICS:
        at = ranges.get((sc, st, "attack"), [])

        def top(vals):
            return f"{max(vals):.2f} ({len(vals)} searched)" if vals else "— (none found)"

        print(f"| `{sc}` `{st}` | {thr.get((sc, st), float('nan')):.2f} | "
              + (f"{min(at):.2f}–{max(at):.2f}" if at else "—") + " | "
              + top(ranges.get((sc, st, "clean"), [])) + " | " + top(ranges.get((sc, st, "clean-apart"), [])) + " |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train-nulls")
    t.add_argument("--seeds", default="1,2,3,4,5")
    t.add_argument("--preset", default="default")
    f = sub.add_parser("train-finetunes", help="clean fine-tunes of the reference (null of derived towers)")
    f.add_argument("--reference", required=True)
    f.add_argument("--seeds", default="1,2,3,4,5")
    f.add_argument("--steps", type=int, default=200)
    f.add_argument("--preset", default="default")
    f.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("--reference", required=True)
    r.add_argument("--suspects", default="")
    r.add_argument("--nulls", default="")
    r.add_argument("--out", required=True)
    r.add_argument("--json", default=None)
    r.add_argument("--option", action="append", default=[])
    r.add_argument("--dataset-option", action="append", default=["preset=default"])
    r.add_argument("--repeat", type=int, default=1)
    r.add_argument("--audit", action="store_true", help="audit the recovered card and compare with the card audit")
    b = sub.add_parser("table")
    b.add_argument("file")
    rj = sub.add_parser("rejudge", help="judge stored scan records again with the current thresholds")
    rj.add_argument("files", nargs="+")
    rj.add_argument("--outs", required=True, help="the --out folder of each file's run, comma-separated")
    rj.add_argument("--option", action="append", default=[])
    rj.add_argument("--json", required=True)
    st = sub.add_parser("stats", help="per-statistic scores: attacks against the null")
    st.add_argument("file")
    c = sub.add_parser("combine")
    c.add_argument("files", nargs="+")
    c.add_argument("--json", required=True)
    a = p.parse_args(argv)
    commands = {"train-nulls": cmd_train_nulls, "train-finetunes": cmd_train_finetunes, "run": cmd_run,
                "table": cmd_table, "combine": cmd_combine, "stats": cmd_stats,
                "rejudge": cmd_rejudge}
    commands[a.cmd](a)


if __name__ == "__main__":
    main()
