"""Shared formatting of results for every report (terminal, Markdown, HTML)."""

from __future__ import annotations

from typing import Optional

METRIC_LABELS = {
    "ts": "TS", "qhr": "QHR", "h@1": "H@1", "h@5": "H@5", "h@10": "H@10", "mrr": "MRR", "sel@1": "Sel@1",
    "delta_h@1": "ΔH@1", "delta_h@5": "ΔH@5", "delta_mrr": "ΔMRR", "delta_sel@1": "ΔSel@1",
    "clean_acc": "clean acc",
}

SHORT_TITLES = {
    "zero-shot-classification": "zero-shot cls.",
    "prompt-conditioned-classification": "prompted cls.",
    "targeted-retrieval": "targeted retr.",
    "image-text-retrieval": "image–text retr.",
    "text-reranking": "text rerank",
    "candidate-selection": "cand. selection",
    "downstream-visual-classification": "downstream visual",
    "text-embedding": "text embedding",
}

STATUS_WORDS = {"exposed": "exposed", "weak": "weak", "negative": "negative", "n.e.": "N.E.", "error": "error"}


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def column_title(iface: dict, sep: str = " ") -> str:
    return f"{SHORT_TITLES.get(iface['id'], iface.get('title') or iface['id'])}{sep}{metric_label(iface['metric'])}"


def cell_text(cell: Optional[dict]) -> str:
    """The matrix entry: a number for measured cells, N.E. / error otherwise."""
    if cell is None:
        return "…"
    st = cell["status"]
    if st == "n.e.":
        return "N.E."
    if st == "error":
        return "error"
    v = cell.get("value")
    if v is None:
        return "—"
    return f"{v:+.3f}" if cell.get("card", {}).get("relative") else f"{v:.3f}"


def num(v, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:.{digits}f}"
    return str(v)


def matrix(results: dict) -> tuple:
    """``(interfaces, rows)``: rows are ``(checkpoint entry, {interface id: cell})``, audited rows first."""
    ifaces = results.get("interfaces") or []
    by = {}
    for c in results["cells"]:
        by.setdefault(c["checkpoint"], {})[c["interface"]] = c
    rows = []
    for role in ("audited", "control"):
        for ck in results["checkpoints"]:
            if ck.get("role", "audited") == role:
                rows.append((ck, by.get(ck["name"], {})))
    return ifaces, rows


def footprint_of(results: dict, name: str) -> Optional[dict]:
    return next((f for f in results["footprints"] if f["checkpoint"] == name), None)


def prediction_text(f: Optional[dict]) -> str:
    if f is None or f.get("prediction_holds") is None:
        return "—"
    return "holds" if f["prediction_holds"] else "fails"
