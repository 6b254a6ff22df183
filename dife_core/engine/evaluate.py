"""``evaluate_cell``: the one way to measure one (checkpoint, interface) cell.

Decide applicability (the four questions) -> build the cell context -> run
the interface's evaluator -> turn its result into the cell record (entry
type from the thresholds, interval, flags). The audit runner, every attack
builder's native validation, the stress tests and the branch-swap footprint
all call it, so a number that appears in an attack card, a report and a test
comes from this one function.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable, Optional, Union

from .applicability import AttackProfile, decide
from .cells import NotEvaluable, make_record, record_from_result
from .context import CellContext
from .embeddings import EmbeddingService, NonFiniteFeatures, resolve_trigger

#: the template that makes class prompts when a world has none
DEFAULT_TEMPLATE = "a photo of a {}"


def world_templates(world, which: str = "first") -> tuple:
    """Prompt templates of ``world`` in use: its first (``"first"``) or all (``"all"``)."""
    t = tuple(world.templates[:1] if which == "first" else world.templates)
    return t or (DEFAULT_TEMPLATE,)


def get_interface(interface):
    """An :class:`~dife_core.types.Interface` from itself or its id."""
    if isinstance(interface, str):
        from ..plugins import get_registry

        return get_registry().get("interfaces", interface)
    return interface


def default_thresholds(interface_id: str) -> dict:
    from .spec import Thresholds

    return Thresholds().for_interface(interface_id)


def evaluate_cell(model, reference, world, card, interface, *, embeddings: Optional[EmbeddingService] = None,
                  checkpoint: Optional[str] = None, options: Optional[dict] = None,
                  thresholds: Optional[dict] = None, seed: int = 0, device: str = "cpu",
                  templates: Optional[tuple] = None, ranking_chunk: int = 4096,
                  mechanism: Union[None, Any, Callable[[], Any]] = None,
                  has_scorer: Optional[bool] = None) -> dict:
    """Measure one cell and return its record (the ``cells`` entries of results.json).

    :param model: the audited :class:`~dife_core.model.DualEncoder` (or a branch-swap hybrid).
    :param reference: the clean reference DualEncoder, or None.
    :param world: the :class:`~dife_core.populations.World` whose populations the card reads.
    :param card: the checkpoint's attack card (:class:`~dife_core.cards.AttackCard`, a dict,
        an :class:`AttackProfile`) or None (every cell N.E.: the trigger is unknown).
    :param interface: an :class:`~dife_core.types.Interface` or a registered interface id.
    :param embeddings: the embedding service to share across cells (default: a new one).
    :param mechanism: a mechanism attack's :class:`~dife_core.engine.context.Mechanism`,
        or a zero-argument function that builds it (called only when the cell needs it).
    :param has_scorer: whether the mechanism has a scorer (default: ``mechanism is not None``).
    """
    iface = get_interface(interface)
    icard = iface.card
    profile = card if isinstance(card, AttackProfile) or card is None else AttackProfile.from_card(card)
    name = checkpoint or getattr(model, "name", "model")
    thresholds = thresholds if thresholds is not None else default_thresholds(iface.name)
    if has_scorer is None:
        has_scorer = mechanism is not None
    app = decide(icard, profile, world, has_clean=reference is not None, has_scorer=has_scorer)
    if not app.ok:
        return make_record(checkpoint=name, card=icard, status="n.e.", reason=app.reason, question=app.question,
                           thresholds=thresholds)
    try:
        trigger = resolve_trigger(profile.trigger, where=f"{name}: attack card trigger")
        mech = None
        if app.channel == "mechanism":
            mech = mechanism() if callable(mechanism) and not hasattr(mechanism, "context") else mechanism
        ctx = CellContext(card=icard, checkpoint=name, model=model, clean=reference, world=world, attack=profile,
                          channel=app.channel, trigger=trigger,
                          embeddings=embeddings if embeddings is not None else EmbeddingService(seed=seed),
                          options={**dict(icard.options), **dict(options or {})}, seed=seed, device=device,
                          templates=tuple(templates) if templates else world_templates(world),
                          ranking_chunk=ranking_chunk, mechanism=mech)
        result = iface.evaluate(ctx)
        return record_from_result(result, checkpoint=name, card=icard, channel=app.channel, thresholds=thresholds,
                                  seed=seed)
    except NotEvaluable as e:
        return make_record(checkpoint=name, card=icard, status="n.e.", reason=e.reason, question=e.question,
                           channel=app.channel, thresholds=thresholds)
    except NonFiniteFeatures as e:
        return make_record(checkpoint=name, card=icard, status="error", channel=app.channel, reason=str(e),
                           thresholds=thresholds)
    except Exception as e:  # a failing evaluator marks its cell; the caller goes on
        _debug()
        return make_record(checkpoint=name, card=icard, status="error", channel=app.channel,
                           reason=f"{type(e).__name__}: {e}", thresholds=thresholds)
    except BaseException as e:  # a Rust tokenizer panic is a BaseException; never a dead audit
        if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        _debug()
        return make_record(checkpoint=name, card=icard, status="error", channel=app.channel,
                           reason=f"{type(e).__name__}: {e}", thresholds=thresholds)


def native_value(record: dict, metric: str) -> float:
    """The value an attack card stores as its native result: ``metric`` of a
    cell record from :func:`evaluate_cell` (the primary value or one of its
    metrics). Raises when the cell was not measured."""
    from ..errors import PluginError

    if record["status"] in ("n.e.", "error"):
        raise PluginError(f"native interface {record['interface']!r} was not measured on the built checkpoint: "
                          f"{record['status']}: {record.get('reason')}")
    if metric == record["metric"] and record.get("value") is not None:
        return float(record["value"])
    v = (record.get("metrics") or {}).get(metric)
    if v is None:
        raise PluginError(f"native interface {record['interface']!r} reports no metric {metric!r}; "
                          f"it reports {', '.join(sorted(record.get('metrics') or {}))}")
    return float(v)


def _debug() -> None:
    if os.environ.get("DIFE_DEBUG"):
        traceback.print_exc(file=sys.stderr)


__all__ = ["evaluate_cell", "native_value", "world_templates", "get_interface", "DEFAULT_TEMPLATE"]
