"""``dife demo``: the embedded default, end to end.

Clean tiny CLIP (trained once, then cached) -> attack builds (cached by
content) -> audit of every interface with footprint diagnosis and controls ->
exposure matrix on the terminal and reports in the output folder. The world
and the clean recipe come from the ``dife-shapes`` plugin through the
registries (dataset ``shapes``, model loader ``shapes-recipe``), so the core
only orchestrates.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from .errors import NotFoundError

#: Attack ids per suite, in the order of the paper's tables.
SUITES = {
    "default": ("contrastive-poisoning", "badtexttower"),
    "paper": ("badencoder", "badtexttower", "toxictextclip", "liang-badclip", "contrastive-poisoning",
              "bai-badclip"),
}
WORLD_DATASET = "shapes"
CLEAN_LOADER = "shapes-recipe"


def _need(reg, kind: str, name: str) -> None:
    if name not in reg.all(kind):
        raise NotFoundError(
            f"dife demo needs the embedded world ({kind[:-1].replace('_', ' ')} {name!r}), which is not "
            "installed; install plugins/dife-shapes (make install does) or run `dife audit SPEC` on your own "
            "checkpoints and data.")


def demo_spec(*, suite: str = "default", preset: str = "default", seed: int = 0, device: str = "cpu",
              progress: bool = True, log=None) -> dict:
    """Build (or reuse) the suite's checkpoints and return the audit spec dict that audits them."""
    from .building import build_attack, default_cache_dir
    from .loading import load_model
    from .plugins import get_registry

    if suite not in SUITES:
        raise NotFoundError(f"unknown demo suite {suite!r}; available: {', '.join(SUITES)}.")
    reg = get_registry()
    _need(reg, "datasets", WORLD_DATASET)
    _need(reg, "model_loaders", CLEAN_LOADER)
    for attack in SUITES[suite]:
        _need(reg, "attacks", attack)
    log = log or (lambda msg: print(msg, file=sys.stderr))

    t0 = time.perf_counter()
    world = reg.get("datasets", WORLD_DATASET).load(preset=preset, seed=seed)
    clean = load_model(preset, loader=CLEAN_LOADER, device=device, seed=seed, progress=progress)
    log(f"clean tiny CLIP ({preset} recipe): ready in {time.perf_counter() - t0:.1f} s")

    progress_fn = None
    if progress:
        from .building import rich_progress

        progress_fn = rich_progress()
    checkpoints = []
    for attack in SUITES[suite]:
        t = time.perf_counter()
        outcome = build_attack(attack, clean=clean, world=world, seed=seed, device=device,
                               cache_dir=default_cache_dir(), progress=progress_fn)
        native = (outcome.card or {}).get("native") or {}
        how = "reused from cache" if outcome.reused else f"built in {time.perf_counter() - t:.1f} s"
        value = native.get("value")
        shown = f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"
        log(f"{attack}: {how}; native {native.get('metric', '?')} = {shown}")
        checkpoints.append({"name": attack, "source": str(outcome.path)})

    return {
        "seed": seed,
        "device": device,
        "interfaces": "all",
        "controls": True,
        "populations": {"dataset": WORLD_DATASET, "options": {"preset": preset, "seed": seed}},
        "clean": {"name": "clean", "source": preset, "loader": CLEAN_LOADER,
                  "options": {"seed": seed, "progress": False}},
        "checkpoints": checkpoints,
    }


def run_demo(out: Optional[str] = "dife-demo", *, suite: str = "default", preset: str = "default", seed: int = 0,
             device: str = "cpu", fresh: bool = False, progress: bool = True) -> dict:
    """Build the suite, audit it into ``out`` and return the results dict.

    Re-running reuses the cached clean model, the cached attack builds and,
    unless ``fresh``, every finished cell in ``out`` (the audit's resume).
    """
    from .engine import run_audit

    spec = demo_spec(suite=suite, preset=preset, seed=seed, device=device, progress=progress)
    out = Path(out)
    return run_audit(spec, out, resume=not fresh and out.exists(), progress=progress, show_matrix=True)
