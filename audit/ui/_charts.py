"""Server-rendered SVG bar charts for the overview page (no script, CSP-safe)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

__all__ = ["stacked_bars"]

_PALETTE = ("#2f6f9f", "#d9822b", "#3f9f5f", "#9f3f6f", "#6f5f9f", "#9f8f3f", "#3f8f9f")


def stacked_bars(*, days: Sequence[str], series: Mapping[str, Sequence[int]], title: str) -> Markup:
    """One stacked bar per day, one colour per series, with a legend and totals.

    ``series`` maps a label (e.g. an enclave) to one count per day in ``days``."""
    width, height, left, bottom, top = 640, 220, 36, 36, 14
    n = max(1, len(days))
    plot_w, plot_h = width - left - 8, height - bottom - top
    totals = [sum(s[i] for s in series.values()) for i in range(len(days))]
    peak = max([1, *totals])
    bar_w = plot_w / n * 0.7
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height + 18 * ((len(series) + 2) // 3)}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'stroke="#888" stroke-width="1"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="10" '
        f'fill="#555">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="10" '
        'fill="#555">0</text>',
    ]
    for i, day in enumerate(days):
        x = left + plot_w / n * i + (plot_w / n - bar_w) / 2
        y: float = top + plot_h
        for k, (label, counts) in enumerate(series.items()):
            c = counts[i]
            if c <= 0:
                continue
            h = plot_h * c / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{_PALETTE[k % len(_PALETTE)]}"><title>{escape(day)} '
                f"{escape(label)}: {c}</title></rect>"
            )
        if totals[i]:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y - 2:.1f}" text-anchor="middle" '
                f'font-size="9" fill="#333">{totals[i]}</text>'
            )
        if n <= 16 or i % 2 == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 12}" text-anchor="middle" '
                f'font-size="9" fill="#555">{escape(day[5:])}</text>'
            )
    for k, label in enumerate(series):
        lx = left + (k % 3) * 200
        ly = height + 4 + 18 * (k // 3)
        parts.append(
            f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" '
            f'fill="{_PALETTE[k % len(_PALETTE)]}"/>'
            f'<text x="{lx + 14}" y="{ly}" font-size="11" fill="#333">'
            f"{escape(label[:28])} ({sum(series[label])})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every interpolated text is escaped above)
