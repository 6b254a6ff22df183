"""No test without an assertion: every ``test_*`` function in the repository's
test folders asserts, expects an exception (``pytest.raises``/``warns``), or
calls a helper of its own module that does."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPECTING = {"raises", "warns", "fail", "skip", "importorskip", "xfail"}


def _test_files():
    for pattern in ("tests/**/*.py", "plugins/*/tests/**/*.py", "contrib/**/tests/**/*.py"):
        yield from (p for p in ROOT.glob(pattern) if ".venv" not in p.parts)


def _asserts(node) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Assert):
            return True
        if isinstance(n, ast.Call):
            f = n.func
            if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) in EXPECTING:
                return True
    return False


def test_every_test_function_asserts_something():
    bare = []
    for path in _test_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        helpers = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        for fn in ast.walk(tree):
            if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_")) or _asserts(fn):
                continue
            called = {c.func.id for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
            if not any(h in helpers and _asserts(helpers[h]) for h in called):
                bare.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}")
    assert not bare, "tests without an assertion:\n" + "\n".join(bare)
