"""Charts drawn on the server as SVG, put inline in the page: no script, no image request.

Each function returns markup for one ``<svg>`` with ``role="img"``, a ``<title>`` and a
``<desc>``; every label is escaped (``Markup.format`` escapes what it is given).  Colours are
attributes (``fill="…"``), not style, so the page's CSP (no inline style) lets them through.
The pages also give each chart's numbers as a table, for screen readers and for copying.
Time runs left to right in every language.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup

PALETTE = (
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9",
    "#d55e00", "#f0e442", "#000000", "#999999", "#882255",
)  # fmt: skip
"""Okabe–Ito's colour-blind-safe colours, then two more."""

WIDTH = 720
FONT = 'font-family="sans-serif" font-size="12"'


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _nice_max(value: float) -> float:
    """A round number at or above ``value`` for the top of an axis."""
    if value <= 0:
        return 1
    step = 1.0
    while step * 10 <= value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if value <= step * factor:
            return step * factor
    return step * 10


def _ticks(top: float, most: int = 5) -> list[float]:
    """Whole-number ticks from 0 to ``top`` (a :func:`_nice_max`), at most ``most`` steps: the
    charts count reports and days, and "1.25 reports" is no count."""
    whole = max(1, math.ceil(top))
    step = 1
    while whole / step > most or whole % step:
        step += 1
    return [float(value) for value in range(0, whole + 1, step)]


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def _open(title: str, description: str, height: int, chart_id: str) -> Markup:
    return Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img"'
        ' aria-labelledby="{id}-title {id}-desc" direction="ltr" class="chart" {font}>'
        '<title id="{id}-title">{title}</title><desc id="{id}-desc">{desc}</desc>'
    ).format(w=WIDTH, h=height, id=chart_id, title=title, desc=description, font=Markup(FONT))  # noqa: S704


def stacked_columns(
    chart_id: str,
    title: str,
    description: str,
    columns: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
) -> Markup:
    """One column per label in ``columns``, stacked by ``series`` (label, a value per column),
    with a legend under the chart."""
    left, right, top, plot_height = 48, 12, 12, 220
    legend_rows = (len(series) + 1) // 2
    height = top + plot_height + 40 + legend_rows * 20 + 8
    totals = [sum(values[i] for _label, values in series) for i in range(len(columns))]
    peak = _nice_max(max(totals, default=0))
    plot_width = WIDTH - left - right
    slot = plot_width / max(1, len(columns))
    bar = max(2.0, slot * 0.7)
    out = _open(title, description, height, chart_id)
    out += _axis(left, top, plot_width, plot_height, peak)
    for index, label in enumerate(columns):
        x = left + slot * index + (slot - bar) / 2
        y: float = top + plot_height
        for number, (name, values) in enumerate(series):
            value = values[index]
            if not value:
                continue
            h = plot_height * value / peak
            y -= h
            out += Markup(
                '<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{c}">'
                "<title>{name}, {label}: {value}</title></rect>"
            ).format(x=x, y=y, w=bar, h=h, c=colour(number), name=name, label=label, value=value)
        if len(columns) <= 16 or index % 2 == 0:
            out += Markup(
                '<text x="{x:.1f}" y="{y}" text-anchor="middle" font-size="10">{label}</text>'
            ).format(x=x + bar / 2, y=top + plot_height + 16, label=label)
    legend_top = top + plot_height + 34
    for number, (name, _values) in enumerate(series):
        x = left + (number % 2) * (plot_width / 2)
        y = legend_top + (number // 2) * 20
        out += Markup(
            '<rect x="{x:.1f}" y="{y}" width="12" height="12" fill="{c}"/>'
            '<text x="{tx:.1f}" y="{ty}">{name}</text>'
        ).format(x=x, y=y, c=colour(number), tx=x + 18, ty=y + 10, name=name)
    return out + Markup("</svg>")


def horizontal_bars(
    chart_id: str, title: str, description: str, bars: Sequence[tuple[str, int]]
) -> Markup:
    """One bar per (label, value), its value written at its end."""
    label_width, right, row = 240, 60, 28.0
    height = int(12 + row * max(1, len(bars)) + 8)
    peak = max((value for _label, value in bars), default=0) or 1
    plot_width = WIDTH - label_width - right
    out = _open(title, description, height, chart_id)
    for index, (label, value) in enumerate(bars):
        y = 12 + row * index
        w = plot_width * value / peak
        out += Markup(
            '<text x="{lx}" y="{ty}" text-anchor="end">{label}</text>'
            '<rect x="{x}" y="{y}" width="{w:.1f}" height="{h}" fill="{c}"/>'
            '<text x="{vx:.1f}" y="{ty}">{value}</text>'
        ).format(
            lx=label_width - 8,
            ty=y + row / 2 + 2,
            label=label,
            x=label_width,
            y=y + 4,
            w=w,
            h=row - 8,
            c=colour(index),
            vx=label_width + w + 6,
            value=value,
        )
    return out + Markup("</svg>")


def columns_with_gaps(
    chart_id: str,
    title: str,
    description: str,
    columns: Sequence[str],
    values: Sequence[float | None],
    unit: str,
) -> Markup:
    """One column per label; None draws no column (nothing to measure that week)."""
    left, right, top, plot_height = 48, 12, 12, 180
    height = top + plot_height + 30
    peak = _nice_max(max((v for v in values if v is not None), default=0))
    plot_width = WIDTH - left - right
    slot = plot_width / max(1, len(columns))
    bar = max(2.0, slot * 0.6)
    out = _open(title, description, height, chart_id)
    out += _axis(left, top, plot_width, plot_height, peak)
    for index, (label, value) in enumerate(zip(columns, values, strict=True)):
        x = left + slot * index + (slot - bar) / 2
        if value is not None:
            h = plot_height * value / peak
            out += Markup(
                '<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{c}">'
                "<title>{label}: {value} {unit}</title></rect>"
            ).format(
                x=x,
                y=top + plot_height - h,
                w=bar,
                h=h,
                c=colour(0),
                label=label,
                value=_number(value),
                unit=unit,
            )
        if len(columns) <= 16 or index % 2 == 0:
            out += Markup(
                '<text x="{x:.1f}" y="{y}" text-anchor="middle" font-size="10">{label}</text>'
            ).format(x=x + bar / 2, y=top + plot_height + 16, label=label)
    return out + Markup("</svg>")


def _axis(left: int, top: int, width: float, height: int, peak: float) -> Markup:
    out = Markup("")
    for tick in _ticks(peak):
        y = top + height - height * tick / peak
        out += Markup(
            '<line x1="{l}" x2="{r:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc"/>'
            '<text x="{tx}" y="{ty:.1f}" text-anchor="end" font-size="10">{value}</text>'
        ).format(l=left, r=left + width, y=y, tx=left - 6, ty=y + 4, value=_number(tick))
    return out
