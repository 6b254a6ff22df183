"""Built-in metrics, registered through ``register_metrics`` like any plugin's.

The functions live in :mod:`dife_core.metrics` (formulas and the tie rule
are documented there and in docs/metrics.md).
"""

from dife_core import hookimpl
from dife_core.types import Metric


@hookimpl
def register_metrics(register):
    from dife_core.metrics import CATALOGUE

    for name, (label, formula, fn, higher) in CATALOGUE.items():
        register(Metric(name=name, label=label, formula=formula, compute=fn, higher_is_better=higher))
