"""Charts rendered on the server as inline SVG: no JavaScript, no CDN, text escaped."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

BAR_WIDTH = 260  # the width of a 100 % bar
VALUE_WIDTH = 70
NAME_HEIGHT = 20  # a unit's name, on its own line above its bar
BAR_HEIGHT = 18
ROW_HEIGHT = NAME_HEIGHT + BAR_HEIGHT + 10
PAD = 10


def on_time_bars(rows: Sequence[tuple[str, float | None]], *, title: str = "按期完成率") -> str:
    """A horizontal bar chart of on-time rates: one bar per (unit name, rate in [0, 1] or None
    when nothing was due), its width proportional to the rate, the name above it and the
    percentage after it. Narrow (350 units, names above the bars) so that on a phone it scales
    down little and stays legible (issue 18)."""
    width = BAR_WIDTH + VALUE_WIDTH + 2 * PAD
    height = 2 * PAD + 24 + ROW_HEIGHT * max(len(rows), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f"aria-label={quoteattr(title)}>",
        f"<title>{escape(title)}</title>",
        f'<text x="{PAD}" y="{PAD + 14}" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    if not rows:
        parts.append(
            f'<text x="{PAD}" y="{PAD + 24 + 18}" font-size="13" fill="#59636e">无数据</text>'
        )
    for i, (name, rate) in enumerate(rows):
        y = PAD + 24 + i * ROW_HEIGHT
        value = 0.0 if rate is None else min(max(float(rate), 0.0), 1.0)
        bar = round(value * BAR_WIDTH, 2)
        text = "无到期事项" if rate is None else f"{value * 100:.1f}%"
        colour = "#2e7d32" if value >= 0.9 else ("#b7791f" if value >= 0.6 else "#b42318")
        parts.append(f'<text x="{PAD}" y="{y + 15}" font-size="13">{escape(name)}</text>')
        top = y + NAME_HEIGHT
        parts.append(
            f'<rect class="bar" x="{PAD}" y="{top}" width="{bar}" '
            f'height="{BAR_HEIGHT}" fill="{colour}"><title>{escape(name)}：{text}</title></rect>'
        )
        parts.append(f'<text x="{PAD + bar + 6}" y="{top + 14}" font-size="13">{text}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
