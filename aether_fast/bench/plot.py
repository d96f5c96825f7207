"""The benchmark's side-by-side ratios as a bar chart (``aether-fast bench --plot FILE.png``).

Needs matplotlib (``pip install 'aether_fast[plot]'``); it is imported only when drawing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PLOT_FORMATS = (".png", ".svg", ".pdf")
MISSING_MATPLOTLIB = "drawing a chart needs matplotlib: pip install 'aether_fast[plot]'"


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_ratios(result: Mapping[str, Any], path: str) -> None:
    """Draw one horizontal bar per workload of a ``bench --json`` result: its ratio to the
    baseline (green when its target is met, red when not), the 1x line, and each ratio
    target as a tick. Writes ``path`` (PNG, SVG or PDF by its extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = list(result["workloads"])
    if not rows:
        raise ValueError("the benchmark result has no workloads to draw")
    rows.reverse()                                  # the first workload at the top
    ratios = [float(r["ratio"]) for r in rows]
    labels = [f"{r['workload']}\nvs {r['baseline']}" for r in rows]
    colors = ["#9e9e9e" if r["met"] is None else "#2e7d32" if r["met"] else "#c62828" for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.8))
    ys = range(len(rows))
    ax.barh(ys, ratios, color=colors, height=0.6)
    ax.set_yticks(list(ys), labels, fontsize=7)
    if max(ratios) / max(min(ratios), 1e-9) > 30:
        ax.set_xscale("log")
        ax.set_xlim(right=max(ratios) * 8)          # room for the labels right of the bars
    else:
        ax.set_xlim(0, max(ratios) * 1.6)
    ax.axvline(1.0, color="#555555", linestyle="--", linewidth=1)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    for y, row, ratio in zip(ys, rows, ratios):
        text = f"{ratio:.2f}x"
        if row.get("target_kind") == "rate":        # the target is aether_fast's own rate
            text += f"  ({float(row['aether_fast']) / 1e6:.2f}M ev/s, target {row['target']})"
        ax.annotate(text, (ratio, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
        if row.get("target_kind") == "ratio":
            ax.plot([row["target_value"]] * 2, [y - 0.35, y + 0.35], color="black", linewidth=1.5)
    machine = result.get("machine", {})
    ax.set_xlabel("aether_fast events/s divided by the baseline's (higher is better; "
                  "black tick: target, dashed: 1x)")
    ax.set_title(f"aether_fast side by side: {machine.get('cores', '?')} cores, "
                 f"Python {machine.get('python', '?')}; green: target met, red: missed", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["MISSING_MATPLOTLIB", "PLOT_FORMATS", "have_matplotlib", "plot_ratios"]
