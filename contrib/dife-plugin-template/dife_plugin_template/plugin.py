"""Hook implementations. Keep this module cheap to import: no torch here."""

from dife_core import hookimpl
from dife_core.types import Metric


def top1_margin(scores, target_index: int) -> float:
    """Mean margin of the target's score over the best other candidate.

    ``scores`` is a list of per-query score lists. Positive means the target
    wins on average.
    """
    margins = []
    for row in scores:
        others = [s for i, s in enumerate(row) if i != target_index]
        margins.append(row[target_index] - max(others))
    return sum(margins) / len(margins) if margins else float("nan")


@hookimpl
def register_metrics(register):
    register(
        Metric(
            name="template-top1-margin",
            formula="mean over queries of s(target) - max_{c != target} s(c)",
            compute=top1_margin,
        )
    )
