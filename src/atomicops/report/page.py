"""A report as one self-contained HTML page: styles, script and data inline, the timeline
and the graph as inline SVG, nothing fetched when it opens (no CDN, no font, no image)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from html import escape
from importlib import resources
from typing import Any

from atomicops.report.model import Marker, Report

_W = 1180  # the drawings' width in SVG units
_LEFT = 12
_LANE = 18
_BAR = 13
_TOP = 40  # room for the phase labels and the markers' labels
_PHASE_FILLS = ("#e0e7ff", "#dcfce7", "#fef3c7", "#fce7f3", "#e0f2fe", "#ede9fe")
_UNDO_FILLS = ("#fde68a", "#fed7aa", "#fecaca", "#fbcfe8", "#e9d5ff", "#c7d2fe")
_KNOWN_STATES = frozenset({"applied", "no-change", "rolled_back", "failed", "rollback_failed", "uncertain",
                           "applying", "rolling_back", "pending", "planned", "create"})


def _asset(name: str) -> str:
    return resources.files("atomicops.report").joinpath(name).read_text(encoding="utf-8")


def render(report: Report) -> str:
    data = report.as_dict()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched: no network access is needed (nor allowed) to open the page.
        ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"),
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report.title)}</title>",
        f"<style>{_asset('page.css')}</style></head><body>",
        (f'<header class="top"><h1>{escape(report.title)}</h1>'
        f'<div class="sub">atomicops report · made {escape(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))}</div></header>'),
        "<main>",
        _header(report),
    ]
    if report.bars or report.runs:
        parts.append(_timeline(report))
    if report.nodes:
        parts.append(_graph(report))
    if report.waves:
        parts.append(_plan_order(report))
    if report.plan_steps:
        parts.append(_plan_steps(report))
    if report.verify is not None:
        parts.append(_verify(report))
    if report.diff is not None:
        parts.append(_diff(report))
    if report.history:
        parts.append(_history(report))
    parts += [
        "</main>",
        '<div id="tip" role="tooltip"></div>',
        f'<script type="application/json" id="report-data">{_json(data)}</script>',
        f"<script>{_asset('page.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _json(data: Any) -> str:
    # Inside <script>: no "<" at all, so no "</script>" or "<!--" can end or bend the block.
    return json.dumps(data, default=str, separators=(",", ":")).replace("<", "\\u003c")


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def _header(report: Report) -> str:
    cells = []
    for label, value in report.header:
        cls = ""
        if label == "exit code" and value:
            cls = ' class="outcome-0"' if value == "0" else ' class="outcome-bad"'
        cells.append(f"<dt>{escape(label)}</dt><dd{cls}>{escape(value)}</dd>")
    return f'<section id="summary"><h2>Summary</h2><dl class="facts">{"".join(cells)}</dl></section>'


class _Scale:
    """Seconds to x. Long pauses between runs (a rollback a day after its apply) are shrunk to
    a fixed width and marked, so the steps stay readable; the active spans keep one scale."""

    def __init__(self, spans: list[tuple[float, float]], width: float):
        spans = sorted(spans)
        merged: list[list[float]] = []
        for s, e in spans:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        active = sum(e - s for s, e in merged) or 1.0
        self.cap = max(active * 0.04, 0.2)
        self.spans = merged
        self.gaps: list[tuple[float, float, float]] = []  # (x where the gap starts, its seconds, width)
        total = active + sum(min(self.cap, merged[i + 1][0] - merged[i][1]) for i in range(len(merged) - 1))
        self.k = width / (total or 1.0)
        x = 0.0
        self.offsets: list[float] = []
        for i, (s, e) in enumerate(merged):
            self.offsets.append(x)
            x += (e - s) * self.k
            if i + 1 < len(merged):
                gap = merged[i + 1][0] - e
                shrunk = min(self.cap, gap) * self.k
                if gap > self.cap:
                    self.gaps.append((x, gap, shrunk))
                x += shrunk

    def x(self, t: float) -> float:
        for (s, e), off in zip(self.spans, self.offsets, strict=True):
            if t <= e or (s, e) == tuple(self.spans[-1]):
                return _LEFT + off + max(0.0, min(t, e) - s) * self.k if t >= s else _LEFT + off
        return _LEFT  # unreachable: the last span takes every later time

    def seconds_per_unit(self) -> float:
        return 1.0 / self.k


def _nice(step: float) -> float:
    exp = 10 ** math.floor(math.log10(step))
    return next(m * exp for m in (1, 2, 5, 10) if m * exp >= step)


def _timeline(report: Report) -> str:
    bars, markers = report.bars, report.markers
    do = [b for b in bars if b.kind == "do"]
    undo = [b for b in bars if b.kind == "undo"]
    failed = [b for b in bars if b.status in ("failed", "undo_failed")]
    summary = (f'<p class="summary" id="timeline-summary" data-steps="{len(do)}" data-undos="{len(undo)}" '
               f'data-lanes="{report.lanes}">{len(do)} step bars, {len(undo)} undo bars, '
               f"{report.lanes} lane(s) (steps that ran at the same time), {len(failed)} failed"
               f"{', ' + str(sum(1 for m in markers if m.kind == 'trigger')) + ' trigger(s) fired' if any(m.kind == 'trigger' for m in markers) else ''}</p>")
    times = [(b.start, b.end) for b in bars] + [(m.ts, m.ts) for m in markers]
    if not times:
        return f'<section id="timeline"><h2>Timeline</h2>{summary}<p>No step ran.</p></section>'
    by_run: dict[str, list[float]] = {}
    for b in bars:
        by_run.setdefault(b.run, []).extend((b.start, b.end))
    for m in markers:
        for r in report.runs:
            if r.started <= m.ts <= (r.finished or m.ts):
                by_run.setdefault(r.id, []).append(m.ts)
    spans = [(min(v), max(v)) for v in by_run.values()] or [(min(t[0] for t in times), max(t[1] for t in times))]
    scale = _Scale(spans, _W - 2 * _LEFT)
    height = _TOP + max(report.lanes, 1) * _LANE + 34
    out = [(f'<svg id="timeline-svg" viewBox="0 0 {_W} {height}" style="width:100%" role="img" '
           f'aria-label="timeline of the run">')]
    phases = report.phases or sorted({b.phase for b in bars})
    for band in report.bands:
        i = phases.index(band.phase) if band.phase in phases else 0
        fill = (_UNDO_FILLS if band.kind == "undo" else _PHASE_FILLS)[i % len(_PHASE_FILLS)]
        x0, x1 = scale.x(band.start), scale.x(band.end)
        out.append(f'<rect class="band" x="{_fmt(x0)}" y="{_TOP - 12}" width="{_fmt(max(x1 - x0, 1))}" '
                   f'height="{height - _TOP - 22}" fill="{fill}"><title>{escape(("undo " if band.kind == "undo" else "") + band.phase)}</title></rect>')
        label = ("↶ " if band.kind == "undo" else "") + band.phase
        if x1 - x0 > 6.5 * len(label) + 8:  # a label that does not fit is in the band's tooltip
            out.append(f'<text class="band-label" x="{_fmt(x0 + 3)}" y="{_TOP - 3}">{escape(label)}</text>')
    for x, seconds, width in scale.gaps:
        out.append(f'<rect class="gap" x="{_fmt(x + _LEFT)}" y="{_TOP - 12}" width="{_fmt(width)}" height="{height - _TOP - 22}"/>'
                   f'<text class="gap-label" x="{_fmt(x + _LEFT + 2)}" y="{height - 24}">⋯ {escape(_span(seconds))}</text>')
    axis_y = height - 20
    out.append(f'<line class="axis" x1="{_LEFT}" x2="{_W - _LEFT}" y1="{axis_y}" y2="{axis_y}"/>')
    origin = scale.spans[0][0]
    step = _nice(scale.seconds_per_unit() * 110)
    for s, e in scale.spans:
        t = math.ceil((s - origin) / step) * step + origin
        while t <= e:
            out.append(f'<text class="tick" x="{_fmt(scale.x(t))}" y="{axis_y + 13}" text-anchor="middle">{_span(t - origin)}</text>')
            t += step
    for i, b in enumerate(bars):
        x0, x1 = scale.x(b.start), scale.x(b.end)
        y = _TOP + b.lane * _LANE
        out.append(f'<rect class="bar {b.kind} {b.status}" data-i="{i}" data-op="{escape(b.op)}" '
                   f'data-step="{escape(b.step)}" x="{_fmt(x0)}" y="{y}" width="{_fmt(max(x1 - x0, 2.5))}" '
                   f'height="{_BAR}" rx="1.5"/>')
    out += _marks(markers, scale, height)
    out.append("</svg>")
    legend = _legend([("var(--do)", "step (do)"), ("var(--undo)", "undo"), ("var(--bad)", "failed"),
                      ("var(--worse)", "undo failed"), ("var(--odd)", "interrupted"), ("var(--skip)", "skipped")])
    return (f'<section id="timeline"><h2>Timeline</h2>{summary}<div class="scroll" style="max-height:none">'
            f'{"".join(out)}</div>{legend}<p class="summary">Each bar runs from the step\'s intent record to its '
            f"result record; phases are the shaded bands (↶: undone); hover a bar for its key, duration, outputs "
            f"and error.</p></section>")


def _marks(markers: Sequence[Marker], scale: _Scale, height: int) -> list[str]:
    out = []
    placed: list[float] = []
    for i, m in enumerate(markers):
        x = scale.x(m.ts)
        # Labels that would overlap move down a line; a run start's label goes at the top.
        level = sum(1 for p in placed if abs(p - x) < 90) % 2
        placed.append(x)
        y = 11 + level * 11
        label = {"failure": "✗ ", "trigger": "⚠ ", "run": "▶ ", "checkpoint": "⚑ "}.get(m.kind, "") + m.label
        anchor = "end" if x > _W - 200 else "start"
        dx = -3 if anchor == "end" else 3
        out.append(f'<g class="mark {m.kind}" data-i="{i}"><line x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{y + 2}" '
                   f'y2="{height - 20}"/><text x="{_fmt(x + dx)}" y="{y}" text-anchor="{anchor}">'
                   f"{escape(_clip(label, 60))}</text><title>{escape(m.label + (': ' + m.detail if m.detail else ''))}</title></g>")
    return out


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _legend(items: Iterable[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(f'<span><i style="background:{c}"></i>{escape(t)}</span>' for c, t in items) + "</div>"


def _graph(report: Report) -> str:
    colw, rowh, nodew, nodeh, left = 150, 58, 136, 34, 96
    rows = max((n.column for n in report.nodes), default=0) + 1
    per_row: dict[int, int] = {}
    for n in report.nodes:
        per_row[n.column] = max(per_row.get(n.column, 0), n.row + 1)
    widest = max(per_row.values(), default=1)
    width = left + widest * colw + 10
    height = rows * rowh + 16
    pos: dict[str, tuple[float, float]] = {}
    for n in report.nodes:  # top-down: a wave is a row, centred
        offset = (widest - per_row[n.column]) * colw / 2
        pos[n.id] = (left + offset + n.row * colw + (colw - nodew) / 2, 10 + n.column * rowh)
    out = [(f'<svg id="graph-svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="operation graph">')]
    for i, phase in enumerate(report.phases):
        ys = [pos[n.id][1] for n in report.nodes if n.phase == phase]
        if not ys:
            continue
        top, bottom = min(ys) - 8, max(ys) + nodeh + 8
        out.append(f'<rect class="phase-band{" alt" if i % 2 else ""}" x="0" y="{_fmt(top)}" width="{width}" '
                   f'height="{_fmt(bottom - top)}"/><text class="phase-label" x="6" y="{_fmt(top + 16)}">'
                   f"{escape(phase)}</text>")
    for dep, op in report.edges:
        if dep not in pos or op not in pos:
            continue
        (x0, y0), (x1, y1) = pos[dep], pos[op]
        ax, ay, bx, by = x0 + nodew / 2, y0 + nodeh, x1 + nodew / 2, y1
        mid = (ay + by) / 2
        out.append(f'<path class="edge" d="M{_fmt(ax)},{_fmt(ay)} C{_fmt(ax)},{_fmt(mid)} {_fmt(bx)},{_fmt(mid)} '
                   f'{_fmt(bx)},{_fmt(by)}"/>')
    for i, n in enumerate(report.nodes):
        x, y = pos[n.id]
        state = n.state.replace(" ", "-")
        cls = state if state in _KNOWN_STATES else "other"
        out.append(f'<g class="node state-{escape(cls)}" data-i="{i}" data-op="{escape(n.id)}" data-state="{escape(n.state)}">'
                   f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{nodew}" height="{nodeh}"/>'
                   f'<text x="{_fmt(x + 7)}" y="{_fmt(y + 14)}">{escape(_clip(n.id, 21))}</text>'
                   f'<text class="state" x="{_fmt(x + 7)}" y="{_fmt(y + 27)}">{escape(_clip(n.state, 16))} · {n.steps} step(s)</text></g>')
    out.append("</svg>")
    states: dict[str, int] = {}
    for n in report.nodes:
        states[n.state] = states.get(n.state, 0) + 1
    summary = (f'<p class="summary" id="graph-summary" data-nodes="{len(report.nodes)}" data-edges="{len(report.edges)}">'
               f"{len(report.nodes)} operations, {len(report.edges)} dependencies; "
               + escape(", ".join(f"{k}: {v}" for k, v in sorted(states.items()))) + "</p>")
    return (f'<section id="graph"><h2>Operation graph</h2>{summary}<div style="overflow-x:auto"><div style="width:max-content;margin:0 auto">{"".join(out)}</div></div>'
            '<p class="summary">Rows are the waves that can run together (phases are barriers); a node\'s colour is '
            "its final state. The same graph as <code>atomicops graph</code>.</p></section>")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, row_attrs: Callable[[int], str] = lambda i: "",
           classes: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f'<td class="{classes[j] if j < len(classes) else ""}">{c}</td>' for j, c in enumerate(row))
        body.append(f"<tr{row_attrs(i)}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _verify(report: Report) -> str:
    rows = report.verify or []
    if not rows:
        return '<section id="verify"><h2>Verify</h2><p>The plan has no verify checks.</p></section>'
    passed = sum(1 for r in rows if r.ok)
    unknown = sum(1 for r in rows if r.ok is None)
    cells = []
    for r in rows:
        verdict = {True: '<span class="pass">pass</span>', False: '<span class="fail">FAIL</span>',
                   None: '<span class="unknown">not known</span>'}[r.ok]
        cells.append([escape(r.check), escape(r.expected), escape(r.observed), verdict])
    table = _table(["check", "expected", "observed", "pass"], cells, classes=["", "mono", "mono", ""])
    return (f'<section id="verify"><h2>Verify</h2><p class="summary">{passed} of {len(rows)} checks passed{f", {unknown} not known from this run" if unknown else ""}</p>'
            f'<div class="scroll">{table}</div></section>')


def _diff(report: Report) -> str:
    rows = report.diff or []
    if not rows:
        body = ('<p class="clean" id="diff-clean">clean: the environment after the rollback equals the one '
                "before the apply (AWS, PostgreSQL, JetStream)</p>")
    else:
        body = (f'<p class="dirty">{len(rows)} difference(s) between before the apply and after the rollback</p>'
                + _table(["source", "kind", "change", "what"],
                         [[escape(r.source), escape(r.kind), escape(r.change), escape(r.what)] for r in rows],
                         classes=["", "", "", "mono"]))
    return f'<section id="diff"><h2>Inventory diff</h2>{body}</section>'


def _history(report: Report) -> str:
    types = sorted({h.type for h in report.history})
    options = '<option value="">every event type</option>' + "".join(f'<option>{escape(t)}</option>' for t in types)
    rows = [[str(h.seq), escape(time.strftime("%H:%M:%S", time.gmtime(h.ts)) + f".{int(h.ts * 1000) % 1000:03d}"),
             escape(h.run), escape(h.type), escape(h.where), escape(h.detail)] for h in report.history]
    table = _table(["seq", "time (UTC)", "run", "event", "where", "detail"], rows,
                   row_attrs=lambda i: f' data-type="{escape(report.history[i].type)}"',
                   classes=["", "", "mono", "", "", "mono"])
    return (f'<section id="history-section"><h2>History</h2><div class="filters">'
            f'<input id="history-filter" type="search" placeholder="filter: words in any column">'
            f'<select id="history-type">{options}</select><span class="summary" id="history-count"></span></div>'
            f'<div class="scroll" id="history">{table}</div></section>')


def _plan_order(report: Report) -> str:
    def waves(ws: Sequence[Sequence[str]]) -> str:
        return '<ol class="waves">' + "".join(f"<li>{escape(', '.join(w))}</li>" for w in ws) + "</ol>"

    return (f'<section id="order"><h2>Order</h2><div class="facts" style="grid-template-columns:1fr 1fr">'
            f"<div><b>Forward waves</b> (each after the one before; one wave runs in parallel){waves(report.waves)}</div>"
            f"<div><b>Rollback order</b> (reverse: dependents first){waves(report.rollback_order)}</div></div></section>")


def _plan_steps(report: Report) -> str:
    rows = [[escape(s.op), escape(s.step), escape(s.does), escape(s.undone_by)] for s in report.plan_steps]
    table = _table(["operation", "step", "would do", "undone by"], rows, classes=["", "", "mono", "mono"])
    return f'<section id="steps"><h2>Steps</h2><div class="scroll">{table}</div></section>'

