"""The DIFE audit engine: interface cards -> cells -> footprints -> reports.

Public API::

    from dife_core.engine import AuditSpec, load_spec, validate_spec, run_audit, render_reports

    spec = load_spec("audit.toml")          # or AuditSpec.from_dict({...})
    results = run_audit(spec, "out/", resume=False, progress=True)
    render_reports("out/")                   # re-render from the stored records
    record = evaluate_cell(model, clean, world, card, interface_name)  # one cell

Interface plugins use :class:`CellContext`, return :class:`CellResult` and
may raise :class:`NotEvaluable`. Importing this package does not import torch.
"""

from .cells import CellResult, NotEvaluable, entry_type
from .context import CellContext, Mechanism, MechanismContext
from .evaluate import evaluate_cell
from .runner import run_audit
from .spec import (
    AuditSpec,
    CheckpointSpec,
    FootprintParams,
    PopulationSpec,
    Problem,
    Thresholds,
    load_spec,
    validate_spec,
)


def render_reports(out_dir) -> dict:
    """Assemble results.json from the stored records and write the reports."""
    from ..report import render_reports as _render

    return _render(out_dir)


__all__ = [
    "AuditSpec", "CheckpointSpec", "PopulationSpec", "Thresholds", "FootprintParams", "Problem", "load_spec",
    "validate_spec", "run_audit", "render_reports", "CellContext", "CellResult", "NotEvaluable", "Mechanism",
    "MechanismContext", "entry_type", "evaluate_cell",
]
