"""Charts drawn on the server as inline SVG (pure: numbers in, markup out). No script and no external
asset: the figures render wherever the page does, and each chart carries a title and description for
screen readers; the pages put the same numbers in a table beside it."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 160
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 34, 20, 8


def bar_chart(chart_id: str, title: str, months: Sequence[str], counts: Sequence[int]) -> Markup:
    """Monthly counts as bars, with a y axis (0 and the maximum) and year marks on the x axis. The SVG
    scales to its container's width (``viewBox``), so it never overflows a phone screen."""
    most = max(counts, default=0)
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(1, len(months))
    bar_w = max(1.0, step * 0.8)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="xMinYMin meet">',
             f'<title id="{chart_id}-t">{escape(title)}</title>',
             f'<desc id="{chart_id}-d">{sum(counts)} papers from {escape(months[0] if months else "")} to '
             f'{escape(months[-1] if months else "")}, at most {most} in a month. The table below lists '
             f'every month.</desc>',
             f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 4}" y2="{PAD_TOP + plot_h}"/>',
             f'<text class="tick" x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>',
             f'<text class="tick" x="{PAD_LEFT - 4}" y="{PAD_TOP + 10}" text-anchor="end">{most}</text>']
    for n, (month, count) in enumerate(zip(months, counts)):
        x = PAD_LEFT + n * step + (step - bar_w) / 2
        if month.endswith("-01") or n == 0:
            parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 4}">{escape(month[:4])}</text>')
        if count:
            h = plot_h * count / most
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{PAD_TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                         f'height="{h:.1f}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
