"""Compare a paper-suite audit with the paper's exposure matrix (the tables in docs/findings.md).

    .venv/bin/dife demo --suite paper --out dife-paper
    .venv/bin/python benchmarks/compare_paper.py dife-paper/results.json
    .venv/bin/python benchmarks/compare_paper.py dife-paper-seeds/results.json --seeds   # an audit with seeds = [...]

Prints, in markdown: the five-column matrix cell by cell (our value and
status class beside the paper's, match or mismatch), the image–text retrieval
column (reported, not scored: the paper leaves that card underspecified),
the footprints beside the paper's, and the counts. Status classes: exposed /
weak-or-negative / N.E. (an error cell counts as a mismatch). Exit code 0.
"""

from __future__ import annotations

import argparse
import json
import sys

# The paper's figures (arXiv 2606.17815, its tables): None = N.E.
PAPER = {
    "badencoder": {"zero-shot-classification": 0.9998, "prompt-conditioned-classification": None,
                   "targeted-retrieval": None, "text-reranking": None, "downstream-visual-classification": 0.9996,
                   "image-text-retrieval": 0.0001},
    "badtexttower": {"zero-shot-classification": None, "prompt-conditioned-classification": 0.991,
                     "targeted-retrieval": 1.000, "text-reranking": 0.965, "downstream-visual-classification": None,
                     "image-text-retrieval": None},
    "toxictextclip": {"zero-shot-classification": 0.0971, "prompt-conditioned-classification": None,
                      "targeted-retrieval": None, "text-reranking": -0.025, "downstream-visual-classification": None,
                      "image-text-retrieval": 0.0009},
    "liang-badclip": {"zero-shot-classification": 0.9994, "prompt-conditioned-classification": None,
                      "targeted-retrieval": None, "text-reranking": None, "downstream-visual-classification": 0.9992,
                      "image-text-retrieval": 0.0001},
    "contrastive-poisoning": {"zero-shot-classification": 1.0000, "prompt-conditioned-classification": None,
                              "targeted-retrieval": None, "text-reranking": None,
                              "downstream-visual-classification": 1.0000, "image-text-retrieval": 0.0001},
    "bai-badclip": {"zero-shot-classification": 0.0973, "prompt-conditioned-classification": None,
                    "targeted-retrieval": None, "text-reranking": None, "downstream-visual-classification": 1.0000,
                    "image-text-retrieval": 0.0010},
}
PAPER_FOOTPRINT = {"badencoder": "visual", "badtexttower": "textual", "toxictextclip": "weak",
                   "liang-badclip": "visual", "contrastive-poisoning": "visual", "bai-badclip": "coupled"}
# Paper thresholds for its status words: exposed at TS/H@1 >= 0.5 or a delta >= 0.2.
RELATIVE = {"text-reranking"}
SCORED = ("zero-shot-classification", "prompt-conditioned-classification", "targeted-retrieval", "text-reranking",
          "downstream-visual-classification")
SHORT = {"zero-shot-classification": "zero-shot TS", "prompt-conditioned-classification": "prompted QHR",
         "targeted-retrieval": "targeted H@1", "text-reranking": "rerank ΔH@1",
         "downstream-visual-classification": "downstream TS", "image-text-retrieval": "image–text H@1"}


def paper_class(interface: str, value) -> str:
    if value is None:
        return "N.E."
    exposed = value >= 0.2 if interface in RELATIVE else value >= 0.5
    return "exposed" if exposed else "weak/neg"


def our_class(cell) -> str:
    if cell is None:
        return "missing"
    return {"exposed": "exposed", "weak": "weak/neg", "negative": "weak/neg", "n.e.": "N.E."}.get(cell["status"],
                                                                                             cell["status"])


def fmt(v, relative=False) -> str:
    if v is None:
        return "N.E."
    return f"{v:+.3f}" if relative else f"{v:.3f}"


def compare(results: dict) -> dict:
    cells = {(c["checkpoint"], c["interface"]): c for c in results["cells"]}
    rows, matches, total = [], 0, 0
    for ck, ref in PAPER.items():
        for iface in SCORED + ("image-text-retrieval",):
            cell = cells.get((ck, iface))
            ours = our_class(cell)
            theirs = paper_class(iface, ref[iface])
            ok = ours == theirs
            if iface in SCORED:
                total += 1
                matches += ok
            value = None if cell is None or cell["status"] == "n.e." else cell["value"]
            rows.append({"checkpoint": ck, "interface": iface, "ours": value, "ours_class": ours,
                         "paper": ref[iface], "paper_class": theirs, "match": ok, "scored": iface in SCORED,
                         "reason": (cell or {}).get("reason")})
    fps = {f["checkpoint"]: f for f in results.get("footprints", [])}
    foot = [{"checkpoint": ck, "ours": (fps.get(ck) or {}).get("footprint"), "paper": want,
             "prediction_holds": (fps.get(ck) or {}).get("prediction_holds"),
             "match": (fps.get(ck) or {}).get("footprint") == want} for ck, want in PAPER_FOOTPRINT.items()]
    return {"cells": rows, "matches": matches, "total": total, "footprints": foot}


def markdown(cmp: dict) -> str:
    out = ["| checkpoint | interface | ours | class | paper | class | |", "|---|---|---|---|---|---|---|"]
    for r in cmp["cells"]:
        rel = r["interface"] in RELATIVE
        mark = ("match" if r["match"] else "**mismatch**") if r["scored"] else "(not scored)"
        out.append(f"| {r['checkpoint']} | {SHORT[r['interface']]} | {fmt(r['ours'], rel)} | {r['ours_class']} | "
                   f"{fmt(r['paper'], rel)} | {r['paper_class']} | {mark} |")
    out.append("")
    out.append(f"Status-class matches on the five scored columns: **{cmp['matches']} / {cmp['total']}**.")
    out.append("")
    out.append("| checkpoint | footprint (ours) | footprint (paper) | prediction | |")
    out.append("|---|---|---|---|---|")
    for f in cmp["footprints"]:
        pred = {True: "holds", False: "fails", None: "—"}[f["prediction_holds"]]
        out.append(f"| {f['checkpoint']} | {f['ours']} | {f['paper']} | {pred} | "
                   f"{'match' if f['match'] else '**mismatch**'} |")
    return "\n".join(out)


def _per_seed_class(interface: str, status: str) -> str:
    return {"exposed": "E", "weak": "w", "negative": "w", "n.e.": "N.E."}.get(status, status)


def seeds_markdown(results: dict) -> str:
    """Per-seed values, mean ± std and per-seed status of the scored cells, and
    the footprint each seed's four slots decide (an audit with several seeds)."""
    import statistics

    from dife_core.engine.footprint import decide
    from dife_core.engine.spec import FootprintParams

    seeds = [str(s) for s in results.get("seeds") or []]
    cells = {(c["checkpoint"], c["interface"]): c for c in results["cells"]}
    head = " | ".join(f"seed {s}" for s in seeds)
    out = [f"| checkpoint | interface | {head} | mean ± std | status per seed | paper |",
           "|---|---|" + "---|" * len(seeds) + "---|---|---|"]
    for ck, ref in PAPER.items():
        for iface in SCORED + ("image-text-retrieval",):
            cell = cells.get((ck, iface))
            if cell is None or cell["status"] == "n.e.":
                continue
            rel = iface in RELATIVE
            per = cell.get("per_seed") or {}
            vals = [per.get(s) for s in seeds]
            sd = statistics.pstdev([v for v in vals if v is not None]) if len(vals) > 1 else 0.0
            status = "/".join(_per_seed_class(iface, (cell.get("per_seed_status") or {}).get(s, "?")) for s in seeds)
            out.append(f"| {ck} | {SHORT[iface]} | " + " | ".join(fmt(v, rel) for v in vals)
                       + f" | {fmt(cell['value'], rel)} ± {sd:.3f} | {status} | {fmt(ref[iface], rel)} |")
    params = FootprintParams(**(results.get("footprint_params") or {}))
    out += ["", f"| checkpoint | {head} | paper |", "|---|" + "---|" * len(seeds) + "---|"]
    fps = {f["checkpoint"]: f for f in results.get("footprints", [])}
    for ck, want in PAPER_FOOTPRINT.items():
        per = (fps.get(ck) or {}).get("per_seed") or {}
        dec = [decide(per[s], params)["footprint"] if s in per else "—" for s in seeds]
        out.append(f"| {ck} | " + " | ".join(dec) + f" | {want} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of a paper-suite audit")
    ap.add_argument("--json", action="store_true", help="print the comparison as JSON")
    ap.add_argument("--seeds", action="store_true", help="per-seed tables of an audit run with several seeds")
    args = ap.parse_args(argv)
    with open(args.results) as fh:
        results = json.load(fh)
    if args.seeds:
        print(seeds_markdown(results))
        return 0
    cmp = compare(results)
    print(json.dumps(cmp, indent=2) if args.json else markdown(cmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
