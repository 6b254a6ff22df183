"""``dife demo``: a suite of ``examples/``, end to end.

A demo suite is a folder holding a build spec and an audit spec
(``examples/<suite>/build.toml`` and ``audit.toml``, the same files a user
runs with ``dife build`` and ``dife audit``). The demo builds the suite's
checkpoints into the build cache (reused when identical), points the audit
spec's checkpoints at the builds and runs the audit. The core knows no
attack, dataset or model family here: everything comes from the two specs.
``--preset NAME`` picks the sibling folder ``<suite>-NAME`` (e.g.
``default-test``, the same suite at test size).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path
from typing import Optional

from .errors import NotFoundError

BUILD_SPEC = "build.toml"
AUDIT_SPEC = "audit.toml"


def examples_dir() -> Path:
    """``$DIFE_EXAMPLES`` or the ``examples/`` folder of this source tree."""
    env = os.environ.get("DIFE_EXAMPLES")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "examples"


def suites(root: Optional[Path] = None) -> list:
    """Names of the demo suites: folders of ``examples/`` with both specs."""
    root = Path(root or examples_dir())
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / BUILD_SPEC).is_file() and (p / AUDIT_SPEC).is_file())


def suite_dir(suite: str, preset: str = "default", root: Optional[Path] = None) -> Path:
    root = Path(root or examples_dir())
    name = suite if preset in ("", "default") else f"{suite}-{preset}"
    d = root / name
    if not ((d / BUILD_SPEC).is_file() and (d / AUDIT_SPEC).is_file()):
        raise NotFoundError(f"no demo suite {name!r} in {root} (a folder with {BUILD_SPEC} and {AUDIT_SPEC}); "
                            f"available: {', '.join(suites(root)) or '(none)'}.")
    return d


def _with_seed(data: dict, seed: int) -> dict:
    """Every ``seed`` key of a spec set to ``seed`` (the build and audit seeds
    and the seeds of dataset and recipe options alike)."""
    out = copy.deepcopy(data)

    def walk(d):
        if isinstance(d, dict):
            for k, v in d.items():
                if k == "seed" and isinstance(v, int) and not isinstance(v, bool):
                    d[k] = seed
                else:
                    walk(v)
        elif isinstance(d, list):
            for v in d:
                walk(v)

    walk(out)
    return out


def _require_plugins(d: Path, build: dict, audit: dict) -> None:
    """Say plainly which installed plugins the suite needs, before anything runs."""
    from .plugins import get_registry

    reg = get_registry()
    wanted = [("datasets", (build.get("world") or {}).get("dataset")),
              ("datasets", (audit.get("populations") or {}).get("dataset")),
              ("model_loaders", (build.get("clean") or {}).get("recipe")),
              ("model_loaders", (build.get("clean") or {}).get("loader"))]
    wanted += [("attacks", a.get("attack")) for a in build.get("attacks") or [] if isinstance(a, dict)]
    missing = sorted({f"{kind[:-1].replace('_', ' ')} {name!r}" for kind, name in wanted
                      if isinstance(name, str) and name not in reg.all(kind)})
    if missing:
        raise NotFoundError(f"demo suite {d.name!r} needs {', '.join(missing)}, which no installed plugin provides; "
                            f"install the project's plugins (make install does) or run `dife audit SPEC` on your own "
                            f"checkpoints and data.")


def demo_spec(*, suite: str = "default", preset: str = "default", seed: Optional[int] = None, device: str = "cpu",
              progress: bool = True, log=None, root: Optional[Path] = None) -> dict:
    """Build (or reuse) the suite's checkpoints and return the audit spec dict that audits them."""
    import tomllib

    from .building import build_attack, default_cache_dir, load_clean, load_world, parse_build_spec

    d = suite_dir(suite, preset, root)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    build_data = tomllib.loads((d / BUILD_SPEC).read_text(encoding="utf-8"))
    audit_data = tomllib.loads((d / AUDIT_SPEC).read_text(encoding="utf-8"))
    if seed is not None:
        build_data, audit_data = _with_seed(build_data, seed), _with_seed(audit_data, seed)
    _require_plugins(d, build_data, audit_data)
    bspec = parse_build_spec(build_data, path=d / BUILD_SPEC)

    t0 = time.perf_counter()
    world = load_world(bspec)
    clean = load_clean(bspec, device=device)
    log(f"clean model ({d.name}): ready in {time.perf_counter() - t0:.1f} s")
    progress_fn = None
    if progress:
        from .building import rich_progress

        progress_fn = rich_progress()
    built = {}
    for e in bspec.attacks:
        t = time.perf_counter()
        outcome = build_attack(e.attack, clean=clean, world=world, overrides=e.config, seed=e.seed, device=device,
                               name=e.name, cache_dir=default_cache_dir(), progress=progress_fn,
                               where=f"{e.where}.config")
        native = (outcome.card or {}).get("native") or {}
        how = "reused from cache" if outcome.reused else f"built in {time.perf_counter() - t:.1f} s"
        value = native.get("value")
        shown = f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"
        log(f"{e.name}: {how}; native {native.get('metric', '?')} = {shown}")
        built[e.name] = str(outcome.path)
    for ck in audit_data.get("checkpoints") or []:
        if isinstance(ck, dict) and ck.get("name") in built:
            ck["source"] = built[ck["name"]]
    missing = [ck.get("name") for ck in audit_data.get("checkpoints") or [] if isinstance(ck, dict)
               and ck.get("name") not in built]
    if missing:
        raise NotFoundError(f"{d / AUDIT_SPEC}: checkpoints {missing} are not built by {d / BUILD_SPEC}.")
    audit_data["device"] = device
    return audit_data


def run_demo(out: Optional[str] = "dife-demo", *, suite: str = "default", preset: str = "default",
             seed: Optional[int] = None, device: str = "cpu", fresh: bool = False, progress: bool = True,
             **audit_options) -> dict:
    """Build the suite, audit it into ``out`` and return the results dict.

    Re-running reuses the cached clean model, the cached attack builds and,
    unless ``fresh``, every finished cell in ``out`` (the audit's resume).
    """
    from .engine import run_audit

    d = suite_dir(suite, preset)
    spec = demo_spec(suite=suite, preset=preset, seed=seed, device=device, progress=progress)
    from .engine.spec import AuditSpec

    audit = AuditSpec.from_dict(spec, base_dir=d, where=str(d / AUDIT_SPEC))
    out = Path(out)
    return run_audit(audit, out, resume=not fresh and out.exists(), progress=progress, show_matrix=True,
                     **audit_options)
