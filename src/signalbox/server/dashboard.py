"""The dashboard's pages, rendered from Jinja2 templates in ``templates/`` (autoescaped).

Today one page, ``/``: monitor states from the monitor store (worst first) and every
metric name linking to its query. Rows are computed here as plain data, so templates only
lay them out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from signalbox import __version__
from signalbox.metrics.samples import format_series
from signalbox.monitors.notify.notification import rfc3339
from signalbox.monitors.status import StatusReport
from signalbox.server.services import Services, services


@functools.cache
def templates() -> jinja2.Environment:
    """The templates shipped in this package; every ``{{ value }}`` is HTML-escaped."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("signalbox.server", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True, slots=True)
class MonitorRow:
    monitor: str
    series: str
    state: str  # a State value, or "-" for a monitor not evaluated yet
    css: str  # the state's class: its value, or "none"
    since: str
    reason: str


def monitor_rows(report: StatusReport) -> list[MonitorRow]:
    """One row per series, worst monitor first, each monitor's worst series first."""
    rows: list[MonitorRow] = []
    monitors = sorted(report.monitors, key=lambda m: (-m.state.severity, m.name))
    for m in monitors:
        if not m.series:
            rows.append(MonitorRow(m.name, "", "-", "none", "", "not evaluated yet"))
        for s in sorted(m.series, key=lambda s: (-s.state.severity, s.labels)):
            since = rfc3339(s.since_ms / 1000) if s.since_ms else ""
            rows.append(
                MonitorRow(
                    m.name,
                    format_series("", s.labels),
                    s.state.value,
                    s.state.value,
                    since,
                    s.reason,
                )
            )
    return rows


def index_page(svc: Services, demo: bool) -> str:
    names = sorted({n for n, _ in svc.metrics.series()})
    rows = monitor_rows(svc.monitors.status(svc.now_ms())) if svc.monitors else []
    return (
        templates()
        .get_template("index.html")
        .render(
            version=__version__,
            demo=demo,
            monitors=rows,
            has_monitors=svc.monitors is not None,
            names=names,
        )
    )


async def index(request: Request) -> Response:
    demo: bool = request.app.state.options.demo
    return HTMLResponse(await run_in_threadpool(index_page, services(request), demo))
