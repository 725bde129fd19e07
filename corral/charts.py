"""Charts drawn on the server as SVG: no script, nothing from outside, and
the page's CSP holds (colours are attributes, not inline styles)."""

from datetime import date
from typing import Any

# Distinct in colour and in lightness (read in greyscale too).
PALETTE = ["#3366cc", "#dc7633", "#2e8b57", "#8e44ad", "#b03a2e", "#17a2b8", "#7f8c8d"]
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 200, 56, 22, 8


def nice_max(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value`."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= value:
                return step * m
        step *= 10


def short(n: int) -> str:
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)


def stacked_bars(days: list[date], series: dict[str, dict[date, int]]) -> dict[str, Any]:
    """One bar per day, a segment per series (the largest series at the bottom)."""
    names = sorted(series, key=lambda s: -sum(series[s].values()))
    totals = [sum(series[s].get(d, 0) for s in names) for d in days]
    top = nice_max(max(totals, default=0) or 1)
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bars = []
    for i, day in enumerate(days):
        y = float(HEIGHT - BOTTOM)
        for n, name in enumerate(names):
            value = series[name].get(day, 0)
            if not value:
                continue
            h = value / top * plot_h
            y -= h
            bars.append(
                {
                    "x": round(LEFT + i * slot + slot * 0.15, 1),
                    "y": round(y, 1),
                    "w": round(slot * 0.7, 1),
                    "h": round(h, 1),
                    "fill": PALETTE[n % len(PALETTE)],
                    "title": f"{name}, {day:%b %d}: {value:,} tokens",
                }
            )
    labels = [
        {"x": round(LEFT + i * slot + slot / 2, 1), "text": f"{day:%d}"}
        for i, day in enumerate(days)
        if len(days) <= 14 or i % 2 == 0
    ]
    ticks = [
        {"y": round(HEIGHT - BOTTOM - f * plot_h, 1), "text": short(int(top * f))}
        for f in (0, 0.5, 1)
    ]
    legend = [{"name": name, "fill": PALETTE[n % len(PALETTE)]} for n, name in enumerate(names)]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "baseline": HEIGHT - BOTTOM,
        "label_y": HEIGHT - 6,
        "bars": bars,
        "labels": labels,
        "ticks": ticks,
        "legend": legend,
        "empty": not bars,
    }
