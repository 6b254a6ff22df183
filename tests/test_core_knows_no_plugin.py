"""The core names no plugin: no attack id, dataset name or built-in interface
id appears in ``dife_core/`` outside ``dife_core/builtins/`` (where the
built-in interfaces themselves live). What the core needs to know about them
comes from their cards and the registries."""

import re
from pathlib import Path

from dife_core.plugins import get_registry

CORE = Path(__file__).resolve().parents[1] / "dife_core"


def _names() -> set:
    reg = get_registry()
    # the core's own datasets (csv, imagefolder) are its own; a plugin's are not
    plugin_datasets = {n for n in reg.all("datasets") if not str(reg.owner("datasets", n)).startswith("dife_core")}
    names = set(reg.all("attacks")) | set(reg.all("interfaces")) | plugin_datasets
    assert {"zero-shot-classification", "badtexttower", "shapes"} <= names  # the plugins under test are loaded
    return names


def test_no_plugin_or_builtin_name_in_the_core():
    names = _names()
    pattern = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) +
                         r")(?![\w-])")
    hits = []
    for path in sorted(CORE.rglob("*.py")):
        if "builtins" in path.relative_to(CORE).parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in pattern.finditer(line):
                word = m.group(1)
                # a dataset name that is also an English word counts only as a string literal
                if word in get_registry().all("datasets") and not re.search(rf"[\"']{re.escape(word)}[\"']", line):
                    continue
                hits.append(f"{path.relative_to(CORE.parent)}:{n}: {word}")
    assert not hits, "the core names plugins:\n" + "\n".join(hits)
