"""Mutation check of the plugin interfaces (dife-interfaces-extra): apply one
one-line change of a measured quantity at a time, run the plugin's tests,
record whether at least one fails, restore the file.

    .venv/bin/python benchmarks/mutations_extra.py        # prints a markdown table

Never run it while editing the plugin: each mutation rewrites a source file
for the length of one test run (restored in a ``finally``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "plugins" / "dife-interfaces-extra" / "dife_interfaces_extra"
TESTS = ROOT / "plugins" / "dife-interfaces-extra" / "tests"

#: (interface, change, file, old, new)
MUTATIONS = [
    ("clip-score-filtering", "true pairs misaligned (each image with the next caption)", "filtering.py",
     "true = (xi * xt).sum(dim=-1)", "true = (xi * xt.roll(1, 0)).sum(dim=-1)"),
    ("clipscore-caption-eval", "a tie with the true caption counts as a win (`>` -> `>=`)", "clipscore.py",
     "wins.append((cs > own.view(-1, 1))", "wins.append((cs >= own.view(-1, 1))"),
    ("image-knn-retrieval", "the clean-query reference ranked with the triggered query", "search.py",
     "ref = C.neighbour_ranks(gallery[q], gallery,",
     "ref = C.neighbour_ranks(ctx.image_features(pool, triggered=True)[q], gallery,"),
    ("text-semantic-search", "the reference side's query triggered", "search.py",
     "return _result(ctx, ranks(ctx.model, True), ranks(ref_model, ref_trig),",
     "return _result(ctx, ranks(ctx.model, True), ranks(ref_model, True),"),
    ("knn-classifier", "cosine weighting ignored (every neighbour votes 1)", "knn_classifier.py",
     'w = sims if weighting == "cosine" else torch.ones_like(sims)', "w = torch.ones_like(sims)"),
]


def run(one) -> tuple:
    iface, change, name, old, new = one
    path = PKG / name
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{name}: the line to mutate is not found exactly once: {old!r}")
    try:
        path.write_text(text.replace(old, new))
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(TESTS)],
                           capture_output=True, text=True, cwd=ROOT)
    finally:
        path.write_text(text)
    failed = [ln.split(" ")[1] for ln in r.stdout.splitlines() if ln.startswith("FAILED ")]
    return r.returncode != 0, failed


def main() -> int:
    rows, ok = [], True
    for m in MUTATIONS:
        caught, failed = run(m)
        ok &= caught
        names = ", ".join(f.split("::")[-1] for f in failed) or "—"
        rows.append(f"| {m[0]} | {m[1]} | `{m[2]}` | {'yes' if caught else '**no**'}: {names} |")
        print(rows[-1], file=sys.stderr)
    print("| interface | change | file | caught by |\n|---|---|---|---|\n" + "\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
