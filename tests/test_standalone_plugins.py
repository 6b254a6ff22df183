"""Each plugin installs and works alone with the core.

For every plugin (and the contrib template) a scratch folder gets
``pip install --no-deps --target`` of the core, that plugin and the ``dife-*``
distributions it declares; nothing else of DIFE is visible there. Third-party
libraries (torch, open_clip, ...) come from the venv's site-packages, seen
through a folder of links that leaves out every DIFE distribution and the
editable-install hooks, and ``python -S`` keeps ``site`` from adding the venv
(and its ``.pth`` finders) back. In that world:

* ``dife list-plugins --json`` lists exactly the installed plugins, none broken;
* every module of the plugin imports;
* (slow) the plugin's own tests pass, with its ``test`` extra's ``dife-*`` deps installed.

The core alone: lists only built-ins, imports every module, and ``import
dife_core.cli`` does not import torch; no core module names a plugin package.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = "dife"
PLUGIN_DIRS = {tomllib.loads((d / "pyproject.toml").read_text())["project"]["name"]: d
               for base in ("plugins", "contrib") for d in sorted((REPO / base).glob("*"))
               if (d / "pyproject.toml").is_file()}
PLUGINS = sorted(PLUGIN_DIRS)
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def _project(name: str) -> dict:
    d = REPO if name == CORE else PLUGIN_DIRS[name]
    return tomllib.loads((d / "pyproject.toml").read_text())["project"]


def _dife_requirements(reqs) -> list:
    """``(name, extras)`` of the DIFE distributions among ``reqs`` (PEP 508 strings)."""
    out = []
    for r in reqs:
        m = _REQ.match(r)
        name = m.group(1).lower().replace("_", "-")
        if name == CORE or name in PLUGIN_DIRS:
            out.append((name, {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}))
    return out


def declared_closure(name: str, *, test: bool) -> set:
    """DIFE distributions ``name`` needs (itself included), following declared
    dependencies and, with ``test``, its ``test`` extra (and extras it names)."""
    todo, seen = [(name, {"test"} if test else set())], {}
    while todo:
        n, extras = todo.pop()
        if n in seen and extras <= seen[n]:
            continue
        seen[n] = seen.get(n, set()) | extras
        proj = _project(n)
        reqs = list(proj.get("dependencies", []))
        for e in extras:
            reqs += proj.get("optional-dependencies", {}).get(e, [])
        todo += _dife_requirements(reqs)
    return set(seen)


# -- the scratch world ------------------------------------------------------------------------

def _ignore(_dir, names):
    return [n for n in names if n in ("__pycache__", "build", "dist", "tests") or n.endswith(".egg-info")]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """A wheel of the core and of every plugin, built from copies of the sources
    (so nothing is written into the working tree)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheels")
    dirs = []
    core = src / CORE
    core.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, core / f)
    shutil.copytree(REPO / "dife_core", core / "dife_core", ignore=_ignore)
    dirs.append(core)
    for name, d in PLUGIN_DIRS.items():
        shutil.copytree(d, src / name, ignore=_ignore)
        dirs.append(src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "-q", "-w", str(out), *map(str, dirs)],
                   check=True, capture_output=True, text=True, cwd=src)
    found = {}
    for w in out.glob("*.whl"):
        found[w.name.split("-")[0].lower().replace("_", "-")] = w
    assert set(found) == {CORE, *PLUGIN_DIRS}, sorted(found)
    return found


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    """The venv's site-packages without DIFE: a folder of links to everything else."""
    farm = tmp_path_factory.mktemp("third-party")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        low = entry.name.lower()
        if low.startswith(("dife", "__editable__", "_dife")) or low.endswith(".pth"):
            continue
        (farm / entry.name).symlink_to(entry)
    return farm


def install(wheels, names, target: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile",
                    "--disable-pip-version-check", "-q", "--target", str(target),
                    *(str(wheels[n]) for n in sorted(names))], check=True, capture_output=True, text=True)
    return target


def run_alone(target: Path, third_party: Path, args, *, cwd: Path, timeout: float = 300):
    """``python -S args`` seeing only ``target`` and the third-party libraries."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "DIFE_LOAD_PLUGINS", "DIFE_DISABLE_PLUGIN_AUTOLOAD", "DIFE_STRICT"))}
    env.update(PYTHONPATH=os.pathsep.join([str(target), str(third_party)]), PYTHONNOUSERSITE="1",
               PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _modules(package_dir: Path, package: str) -> list:
    mods = []
    for f in sorted(package_dir.rglob("*.py")):
        rel = f.relative_to(package_dir).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.append(".".join(parts))
    return mods


def _package(name: str) -> tuple:
    d = PLUGIN_DIRS[name]
    (pkg,) = [p for p in d.iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    return pkg, pkg.name


# -- the checks -------------------------------------------------------------------------------

def test_every_plugin_declares_the_core_and_only_known_dife_distributions():
    for name in PLUGINS:
        deps = _dife_requirements(_project(name).get("dependencies", []))
        assert (CORE, set()) in deps, f"{name} must declare the core ({CORE})"
    # the core depends on no plugin, and on no model family either
    core = _project(CORE)
    assert _dife_requirements(core["dependencies"]) == []
    text = " ".join(core["dependencies"]).lower()
    for lib in ("open_clip", "open-clip", "transformers", "torchvision"):
        assert lib not in text


def test_declared_closure_follows_test_extras():
    assert declared_closure("dife-badtexttower", test=False) == {CORE, "dife-badtexttower", "dife-backdoors"}
    assert {"dife-openclip", "dife-shapes"} <= declared_closure("dife-badtexttower", test=True)


def test_the_core_names_no_plugin_package():
    plugin_pkgs = {_package(n)[1] for n in PLUGINS}
    bad = []
    for f in sorted((REPO / "dife_core").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{f.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in plugin_pkgs]
    assert not bad, bad


def test_the_core_alone(wheels, third_party, tmp_path):
    target = install(wheels, {CORE}, tmp_path / "site")
    r = run_alone(target, third_party, ["-m", "dife_core", "list-plugins", "--json"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    infos = json.loads(r.stdout)
    assert all(i["name"].startswith("dife_core.") and not i["error"] for i in infos), infos
    mods = _modules(REPO / "dife_core", "dife_core")
    code = ("import importlib, sys\n"
            "import dife_core.cli\n"
            "assert 'torch' not in sys.modules, 'import dife_core.cli imported torch'\n"
            f"for m in {mods!r}:\n"
            "    importlib.import_module(m)\n"
            "print(dife_core.__file__)\n")
    r = run_alone(target, third_party, ["-c", code], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(target))


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_lists_and_imports_alone(name, wheels, third_party, tmp_path):
    needed = declared_closure(name, test=False)
    target = install(wheels, needed, tmp_path / "site")
    r = run_alone(target, third_party, ["-m", "dife_core", "list-plugins", "--json"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    infos = [i for i in json.loads(r.stdout) if not i["name"].startswith("dife_core.")]
    assert {i["name"] for i in infos} == needed - {CORE}, infos
    assert not [i for i in infos if i["error"]], infos
    assert "warning" not in r.stderr, r.stderr
    pkg_dir, pkg = _package(name)
    hidden = sorted(_package(n)[1] for n in PLUGINS if n not in needed)
    code = ("import importlib, importlib.util\n"
            f"for m in {_modules(pkg_dir, pkg)!r}:\n"
            "    mod = importlib.import_module(m)\n"
            f"    assert mod.__file__.startswith({str(target)!r}), mod.__file__\n"
            f"for m in {hidden!r}:  # the other plugins' editable installs stay out of sight\n"
            "    assert importlib.util.find_spec(m) is None, m\n")
    r = run_alone(target, third_party, ["-c", code], cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_plugin_testing_example_of_the_docs_runs_against_the_installed_template(wheels, third_party, tmp_path):
    """docs/plugin-authoring.md, "Test it": discovery and the hooks alone, with the plugin installed."""
    text = (REPO / "docs" / "plugin-authoring.md").read_text()
    body = text.split("## 5. Test it\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    target = install(wheels, declared_closure("dife-plugin-template", test=True), tmp_path / "site")
    work = tmp_path / "work"
    work.mkdir()
    (work / "test_doc_example.py").write_text(code)
    r = run_alone(target, third_party, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_doc_example.py"],
                  cwd=work)
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_tests_pass_alone(name, wheels, third_party, tmp_path):
    tests = PLUGIN_DIRS[name] / "tests"
    if not tests.is_dir():
        pytest.skip(f"{name} has no tests")
    target = install(wheels, declared_closure(name, test=True), tmp_path / "site")
    r = run_alone(target, third_party, ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(tests)],
                  cwd=tmp_path, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\d+ passed", r.stdout), r.stdout[-2000:]
