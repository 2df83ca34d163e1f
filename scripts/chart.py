#!/usr/bin/env python3
"""Draws a grouped horizontal bar chart as SVG (standard library only).

    scripts/chart.py OUT.svg "TITLE" "UNIT" [--relative] [--lower-is-better] < rows.tsv

Each input line is `GROUP<TAB>SERIES<TAB>VALUE` (a value of `err` or empty
is drawn as missing). Groups are drawn in the order they first appear, one
bar per series in each, in the order the series first appear, with the
value written at the end of the bar. With --relative, bars are scaled per
group (the longest bar of each group spans the width), so groups of very
different magnitudes share one chart; the labels keep the real values.
--lower-is-better only changes the subtitle. The benchmark scripts
(scripts/bench.sh, scripts/bench-pubsub.sh) call it on their results.
"""

import sys
from html import escape

PALETTE = ["#d9480f", "#1c7ed6", "#2f9e44", "#ae3ec9", "#f08c00", "#495057"]
WIDTH = 760
LABEL_W = 250
BAR_H = 16
GAP = 4
GROUP_GAP = 14
BAR_AREA = WIDTH - LABEL_W - 110


def fmt(value):
    if value >= 100_000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    if len(args) != 3:
        sys.exit(__doc__)
    out, title, unit = args
    relative = "--relative" in flags
    groups, series, values = [], [], {}
    for line in sys.stdin:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3 or not parts[0]:
            continue
        group, name, raw = parts
        if group not in groups:
            groups.append(group)
        if name not in series:
            series.append(name)
        try:
            values[(group, name)] = float(raw)
        except ValueError:
            pass
    if not groups:
        sys.exit("chart.py: no rows")
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    overall = max(values.values(), default=1.0) or 1.0
    legend_h = 24
    top = 56 + legend_h
    height = top + sum(len(series) * (BAR_H + GAP) + GROUP_GAP for _ in groups) + 16
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="12" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="12" y="40" fill="#555">{escape(unit)}'
        + ("; lower is better" if "--lower-is-better" in flags else "; higher is better")
        + ("; bars scaled per group" if relative else "")
        + "</text>",
    ]
    x = 12
    for name in series:
        svg.append(f'<rect x="{x}" y="{50}" width="12" height="12" fill="{colors[name]}"/>')
        svg.append(f'<text x="{x + 16}" y="{60}">{escape(name)}</text>')
        x += 28 + 7 * len(name)
    y = top
    for group in groups:
        scale = max((values.get((group, n), 0) for n in series), default=0) if relative else overall
        scale = scale or 1.0
        block = len(series) * (BAR_H + GAP)
        svg.append(
            f'<text x="{LABEL_W - 8}" y="{y + block / 2 + 4}" text-anchor="end">{escape(group)}</text>'
        )
        for name in series:
            value = values.get((group, name))
            if value is None:
                svg.append(f'<text x="{LABEL_W + 4}" y="{y + BAR_H - 4}" fill="#999">{escape(name)}: no result</text>')
            else:
                w = max(1.0, BAR_AREA * value / scale)
                svg.append(f'<rect x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{colors[name]}"/>')
                svg.append(f'<text x="{LABEL_W + w + 4:.1f}" y="{y + BAR_H - 4}">{fmt(value)}</text>')
            y += BAR_H + GAP
        y += GROUP_GAP
    svg.append("</svg>")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
