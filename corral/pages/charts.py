"""Charts drawn on the server as SVG: no script, nothing from outside, and
the page's CSP holds (colours are attributes, not inline styles). Each chart
carries its figures as a table too (includes/chart_table.html), for those who
cannot see it and those who want the numbers."""

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from django.utils import timezone

from agents.reports.trends import Point

# Distinct in colour and in lightness (read in greyscale too).
PALETTE = ["#3366cc", "#dc7633", "#2e8b57", "#8e44ad", "#b03a2e", "#17a2b8", "#7f8c8d"]
WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 640, 200, 56, 22, 8, 24


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


def axis_ticks(top: int, plot_h: float) -> list[dict[str, Any]]:
    """Zero, the middle and the top of the axis; no middle when it falls between
    two whole numbers (an axis up to 1 landing)."""
    return [
        {"y": round(HEIGHT - BOTTOM - f * plot_h, 1), "text": short(int(top * f))}
        for f in (0, 0.5, 1)
        if float(top * f).is_integer()
    ]


def figures(
    heading: str, names: Sequence[str], rows: Sequence[tuple[str, Sequence[int]]]
) -> dict[str, Any]:
    """A chart's figures as a table: a row per bar or point, a column per series."""
    return {"heading": heading, "names": list(names), "rows": [(k, list(v)) for k, v in rows]}


def stacked_bars(
    days: list[date], series: dict[str, dict[date, int]], unit: str = "tokens"
) -> dict[str, Any]:
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
                    "title": f"{name}, {day:%b %d}: {value:,} {unit}",
                }
            )
    labels = [
        {"x": round(LEFT + i * slot + slot / 2, 1), "text": f"{day:%d}"}
        for i, day in enumerate(days)
        if len(days) <= 14 or i % 2 == 0
    ]
    ticks = axis_ticks(top, plot_h)
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
        "figures": figures(
            "Day",
            names,
            [(f"{day:%b %d}", [series[s].get(day, 0) for s in names]) for day in days],
        ),
    }


def moment(at: datetime, span_s: float) -> str:
    """A time on an axis: to the second within ten minutes, to the minute within
    a day, with its date beyond."""
    local = timezone.localtime(at)
    if span_s < 600:
        return f"{local:%H:%M:%S}"
    return f"{local:%H:%M}" if span_s < 86400 else f"{local:%b %d %H:%M}"


def described(times: Sequence[datetime], series: Mapping[str, Sequence[int]], span: float) -> str:
    """What a line chart shows, in a sentence: each series from its first figure
    to its last, and its highest."""
    if not times:
        return "No figures yet."
    told = [
        f"{name} {values[0]:,} to {values[-1]:,} (at most {max(values):,})"
        for name, values in series.items()
    ]
    return f"From {moment(times[0], span)} to {moment(times[-1], span)}: {'; '.join(told)}."


def line_chart(
    times: Sequence[datetime], series: Mapping[str, Sequence[int]], unit: str
) -> dict[str, Any]:
    """A line per series over shared times, drawn in steps (a count holds until
    it changes), a dot with its figure at each point."""
    names = list(series)
    top = nice_max(max((v for s in series.values() for v in s), default=0) or 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
    start = times[0] if times else timezone.now()
    span = (times[-1] - start).total_seconds() if times else 0.0

    def x(at: datetime) -> float:
        share = (at - start).total_seconds() / span if span else 0.5  # one moment: the middle
        return round(LEFT + share * plot_w, 1)

    def y(value: int) -> float:
        return round(HEIGHT - BOTTOM - value / top * plot_h, 1)

    lines = []
    for n, name in enumerate(names):
        points = [
            {"x": x(at), "y": y(v), "title": f"{name}, {moment(at, span)}: {v:,} {unit}"}
            for at, v in zip(times, series[name], strict=True)
        ]
        path = "".join(
            f"M{p['x']},{p['y']}" if i == 0 else f" H{p['x']} V{p['y']}"
            for i, p in enumerate(points)
        )
        colour = PALETTE[n % len(PALETTE)]
        lines.append({"name": name, "colour": colour, "path": path, "points": points})
    # The first time, the middle one and the last, each kept inside the picture.
    edges = dict.fromkeys([0, len(times) // 2, len(times) - 1] if times else [])
    anchors = {0: "start", len(times) - 1: "end"}
    labels = [
        {"x": x(times[i]), "text": moment(times[i], span), "anchor": anchors.get(i, "middle")}
        for i in edges
    ]
    ticks = axis_ticks(top, plot_h)
    rows = [(moment(at, span), [series[s][i] for s in names]) for i, at in enumerate(times)]
    return {
        "description": described(times, series, span),
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "label_y": HEIGHT - 6,
        "lines": lines,
        "labels": labels,
        "ticks": ticks,
        "legend": [{"name": line["name"], "fill": line["colour"]} for line in lines],
        "empty": not times,
        "figures": figures("Time", names, rows),
    }


def over_time(points: Sequence[Point], names: Sequence[str], unit: str) -> dict[str, Any]:
    """line_chart of a report's points, a series per name (the points' values in order)."""
    series = {name: [p.values[i] for p in points] for i, name in enumerate(names)}
    return line_chart([p.at for p in points], series, unit)
