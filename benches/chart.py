#!/usr/bin/env python3
"""Draws BENCHMARKS.md's ratios as a bar chart: docs/bench-ratios.png.

    python3 benches/chart.py benches/ratios.csv docs/bench-ratios.png

The CSV has one row per measure: `measure,ratio,target` (target may be empty), ratios as
BENCHMARKS.md reports them (> 1: entrepot better than its reference). Needs matplotlib.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, out: str) -> None:
    with open(src, newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    names = [r["measure"] for r in rows][::-1]
    ratios = [float(r["ratio"]) for r in rows][::-1]
    targets = [float(r["target"]) if r["target"] else None for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2), dpi=120)
    colors = [
        "#4c9f70" if t is None or r >= t else "#d08c2f" for r, t in zip(ratios, targets)
    ]
    bars = ax.barh(names, ratios, color=colors)
    for bar, r in zip(bars, ratios):
        ax.text(bar.get_width() + 0.02, bar.get_y() + bar.get_height() / 2, f"{r:.2f}×", va="center", fontsize=8)
    for i, t in enumerate(targets):
        if t is not None:
            ax.plot([t, t], [i - 0.4, i + 0.4], color="black", linewidth=1.5)
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("ratio to a reference measured in the same run (> 1: entrepot better); black tick: target", fontsize=8)
    ax.set_title("entrepot against its references (medians; benches/wrk.sh, benches/cold.sh)", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlim(0, max(ratios + [t for t in targets if t]) * 1.2)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
