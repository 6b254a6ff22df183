"""Inline plots for report.html (matplotlib, PNG as base64; no pyplot state).

Text from checkpoints is drawn with mathtext off, so a ``$`` in a name is
just a character.
"""

from __future__ import annotations

import base64
import io

from ..safetext import visible
from .format import cell_text, iface_title, matrix, straddles

_RC = {"text.parse_math": False, "font.size": 8, "svg.fonttype": "none"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def heatmap_png(results: dict) -> str:
    """The exposure matrix as a heatmap: colour = primary value on [-1, 1]
    (red promotes the target, blue demotes it); N.E. hatched grey; error black."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    ifaces, rows = matrix(results)
    n, m = max(len(rows), 1), max(len(ifaces), 1)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(1.3 + 1.05 * m, 0.9 + 0.42 * n))
        ax = fig.add_subplot(1, 1, 1)
        data = np.full((n, m), np.nan)
        for r, (_, cells) in enumerate(rows):
            for j, i in enumerate(ifaces):
                c = cells.get(i["id"])
                if c is not None and c["status"] not in ("n.e.", "error") and c.get("value") is not None:
                    data[r, j] = c["value"]
        cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
        ax.imshow(data, cmap=cmap, vmin=-1, vmax=1, aspect="auto")
        for r, (_, cells) in enumerate(rows):
            for j, i in enumerate(ifaces):
                c = cells.get(i["id"])
                st = c["status"] if c else None
                if st == "n.e.":
                    ax.add_patch(Rectangle((j - 0.5, r - 0.5), 1, 1, facecolor="#eeeeee", hatch="///",
                                           edgecolor="#bbbbbb", linewidth=0))
                elif st == "error":
                    ax.add_patch(Rectangle((j - 0.5, r - 0.5), 1, 1, facecolor="#333333"))
                v = data[r, j]
                colour = "white" if st == "error" or (not np.isnan(v) and abs(v) > 0.6) else "black"
                label = (cell_text(c) + ("~" if straddles(c) else "")) if c is not None else ""
                weight = "bold" if st == "exposed" else "normal"
                ax.text(j, r, label, ha="center", va="center", color=colour, fontsize=7.5, fontweight=weight)
        ax.set_xticks(range(len(ifaces)))
        ax.set_xticklabels([visible(iface_title(i)) for i in ifaces], rotation=30, ha="right")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([visible(ck["name"]) + (" (control)" if ck.get("role") == "control" else "")
                            for ck, _ in rows])
        ax.set_title("Exposure matrix (primary metric; hatched = N.E.; ~ = interval straddles a threshold)")
        return _png(fig)


def branch_swap_png(f: dict) -> str:
    """a00/a10/a01/a11 bars of one checkpoint's footprint diagnosis."""
    import matplotlib
    from matplotlib.figure import Figure

    repair = f.get("probe") == "component-repair"
    labels = (["both clean", "trigger only", "prompt only", "full"] if repair
              else ["a00\n(C_V,C_T)", "a10\n(P_V,C_T)", "a01\n(C_V,P_T)", "a11\n(P_V,P_T)"])
    vals = [f.get(k) or 0.0 for k in ("a00", "a10", "a01", "a11")]
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(3.6, 2.4))
        ax = fig.add_subplot(1, 1, 1)
        colours = ["#9e9e9e", "#d6604d", "#4393c3", "#762a83"]
        ax.bar(range(4), vals, color=colours)
        for x, v in enumerate(vals):
            ax.text(x, v + 0.02, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(4))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylim(0, max(1.0, max(vals) + 0.12))
        ax.set_ylabel(visible(f.get("readout") or "readout"))
        ax.set_title(f"{visible(f['checkpoint'])}: {visible(f.get('footprint') or '—')}")
        return _png(fig)
