"""Server-side SVG bar charts, accessible: role="img", a title and description; a data table goes beside each."""
from __future__ import annotations

from markupsafe import Markup, escape


def bar_chart(title: str, points: list[tuple[str, float]], unit: str = "hours", width: int = 640,
              bar_height: int = 22) -> Markup:
    """Horizontal bars, one per (label, value); readable without JavaScript or colour."""
    label_width, gap = 180, 6
    height = max(1, len(points)) * (bar_height + gap) + 10
    top = max((v for _l, v in points), default=0) or 1
    chart_id = "chart-" + "".join(ch for ch in title.lower() if ch.isalnum())[:40]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'aria-labelledby="{chart_id}-t {chart_id}-d">',
             f'<title id="{chart_id}-t">{escape(title)}</title>',
             f'<desc id="{chart_id}-d">{escape(title)}: '
             + escape("; ".join(f"{label} {value:g} {unit}" for label, value in points) or "no data") + "</desc>"]
    for i, (label, value) in enumerate(points):
        y = 5 + i * (bar_height + gap)
        bar = int((width - label_width - 80) * (value / top)) if value > 0 else 0
        parts.append(f'<text x="0" y="{y + bar_height - 6}" class="chart-label">{escape(str(label)[:28])}</text>')
        parts.append(f'<rect x="{label_width}" y="{y}" width="{bar}" height="{bar_height}" class="chart-bar"/>')
        parts.append(f'<text x="{label_width + bar + 4}" y="{y + bar_height - 6}" class="chart-value">'
                     f'{value:g}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
