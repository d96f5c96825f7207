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


COLORS = {"yes": "#2e7d32", "NO": "#c62828", "within noise": "#f9a825"}
NO_VERDICT = "#9e9e9e"


def _verdict(row: Mapping[str, Any]) -> str:
    """The row's verdict (runs saved before verdicts had only ``met``)."""
    if "verdict" in row:
        return str(row["verdict"])
    return "-" if row.get("met") is None else "yes" if row["met"] else "NO"


def plot_ratios(result: Mapping[str, Any], path: str) -> None:
    """Draw one horizontal bar per workload of a ``bench --json`` result: its ratio to the
    baseline (the median of the paired repeats) with the range of those ratios as an error
    bar, coloured by verdict (green yes, red NO, amber within noise, grey no target), each
    ratio target as a black tick and the 1x line dashed. Rows whose baseline was unavailable
    are listed without a bar. Writes ``path`` (PNG, SVG or PDF by its extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = list(result["workloads"])
    if not rows:
        raise ValueError("the benchmark result has no workloads to draw")
    rows.reverse()                                  # the first workload at the top
    ratios = [float(r["ratio"]) if r.get("ratio") is not None else 0.0 for r in rows]
    ranges = [r.get("ratio_range") or ((x, x) if x else (0.0, 0.0)) for r, x in zip(rows, ratios)]
    drawn = [x for x in ratios if x > 0] or [1.0]
    labels = [f"{r['workload']}\nvs {r['baseline']}" for r in rows]
    colors = [COLORS.get(_verdict(r), NO_VERDICT) for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.8))
    ys = list(range(len(rows)))
    err = [[max(0.0, x - lo) for x, (lo, _) in zip(ratios, ranges)],
           [max(0.0, hi - x) for x, (_, hi) in zip(ratios, ranges)]]
    ax.barh(ys, ratios, color=colors, height=0.6, xerr=err, ecolor="#333333", capsize=2)
    ax.set_yticks(ys, labels, fontsize=7)
    top = max(max(hi for _, hi in ranges), max(drawn))
    if top / min(drawn) > 30:
        ax.set_xscale("log")
        ax.set_xlim(min(drawn) / 2, top * 8)        # room for the labels right of the bars
    else:
        ax.set_xlim(0, top * 1.6)
    ax.axvline(1.0, color="#555555", linestyle="--", linewidth=1)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    for y, row, x, (lo, hi) in zip(ys, rows, ratios, ranges):
        if not x:
            ax.annotate(f"{_verdict(row)}", (min(drawn) if ax.get_xscale() == "log" else 0, y), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7)
            continue
        text = f"{x:.2f}x ({lo:.2f}-{hi:.2f})  {_verdict(row)}"
        ax.annotate(text, (hi, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=7)
        target = row.get("target_value")
        if target is not None and row.get("target_kind", "ratio") == "ratio":
            ax.plot([target] * 2, [y - 0.38, y + 0.38], color="black", linewidth=1.8)
    machine = result.get("machine", {})
    ax.set_xlabel("aether_fast's rate divided by the baseline's, same run (higher is better); bar: median of the "
                  "paired repeats, whisker: their range; black tick: target; dashed: 1x", fontsize=8)
    ax.set_title(f"aether_fast side by side: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
                 f"{machine.get('python', '?')}; green yes, red NO, amber within noise", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["MISSING_MATPLOTLIB", "PLOT_FORMATS", "have_matplotlib", "plot_ratios"]
