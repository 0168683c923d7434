"""The dashboard's pages, rendered from Jinja2 templates in ``templates/`` (autoescaped).

* ``/``: the overview -- what fires and since when, every monitor's state, the last day's
  transitions, silences and acknowledgements, stale spool files, and the metric names;
* ``/explore?query=...&range=1h``: any PromQL as a line chart (``static/explore.js`` draws it
  with the Plotly bundle the ``plotly`` wheel ships, served from the installed package:
  nothing is fetched from the internet, nothing is copied into this repository);
* ``/static/NAME``: a fixed set of files (no path from the request reaches the file system).

Rows are computed here as plain data, so templates only lay them out; every value from
outside (metric names, label values, reasons) is escaped by Jinja2, and the charts' legends
are escaped again in JavaScript before Plotly, which reads a little HTML, draws them.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
from dataclasses import dataclass
from pathlib import Path

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from signalbox import __version__
from signalbox.exceptions import NotFoundError, SignalboxError, UsageError
from signalbox.metrics.samples import format_series
from signalbox.monitors.definitions.threshold import format_number
from signalbox.monitors.notify.notification import rfc3339
from signalbox.monitors.status import StatusReport
from signalbox.server import flags_page, queues_page
from signalbox.server.logs_page import logs as logs_page
from signalbox.server.services import Services, services

log = logging.getLogger("signalbox.server")


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


NAMES_SHOWN = 500
"""Metric names listed on the overview; past that, the explorer's label browser."""

_DAY_MS = 86_400_000
_CHANGE_EVENTS = frozenset({"state", "silenced", "unsilenced", "acknowledged", "drill"})


def ago(at_ms: int, now_ms: int) -> str:
    """``at_ms`` as a short distance in the past (``3m ago``), what people read at 3 a.m."""
    s = max(0, (now_ms - at_ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


@dataclass(frozen=True, slots=True)
class Firing:
    monitor: str
    series: str
    state: str
    css: str
    since: str
    ago: str
    reason: str
    muted: str


@dataclass(frozen=True, slots=True)
class Change:
    at: str
    ago: str
    monitor: str
    series: str
    what: str
    reason: str


@dataclass(frozen=True, slots=True)
class StaleFile:
    name: str
    at: str
    ago: str
    problem: str


def firing_rows(report: StatusReport, now_ms: int) -> list[Firing]:
    """Series in WARNING or CRITICAL, worst first, oldest first within a state."""
    out = []
    for m in report.monitors:
        for s in m.series:
            if not s.state.firing:
                continue
            muted = ", ".join(
                x for x in (s.silenced and f"silenced: {s.silenced}",
                            s.acknowledged and f"acked: {s.acknowledged}") if x
            )  # fmt: skip
            out.append(
                Firing(
                    m.name, format_series("", s.labels), s.state.value, s.state.value,
                    rfc3339(s.since_ms / 1000) if s.since_ms else "",
                    ago(s.since_ms, now_ms) if s.since_ms else "", s.reason, muted,
                )
            )  # fmt: skip
    state_order = {"CRITICAL": 0, "WARNING": 1}
    return sorted(out, key=lambda r: (state_order.get(r.state, 2), r.since, r.monitor))


def change_rows(svc: Services, report: StatusReport, now_ms: int, limit: int = 50) -> list[Change]:
    """The last day's transitions, silences, acknowledgements and drills, newest first."""
    if svc.monitors is None:
        return []
    entries = []
    for m in report.monitors:
        entries += [
            e
            for e in svc.monitors.history(m.name, since_ms=now_ms - _DAY_MS, limit=limit)
            if e.event in _CHANGE_EVENTS
        ]
    entries.sort(key=lambda e: -e.at_ms)
    out = []
    for e in entries[:limit]:
        if e.event == "state":
            before = e.from_state.value if e.from_state else "-"
            what = f"{before} → {e.to_state.value if e.to_state else '-'}"
        else:
            what = e.event
        out.append(
            Change(
                rfc3339(e.at_ms / 1000), ago(e.at_ms, now_ms), e.monitor,
                format_series("", e.labels), what, e.reason,
            )
        )  # fmt: skip
    return out


_STALE_QUERY = (
    "signalbox_spool_file_age_seconds > on (file, host) signalbox_spool_file_stale_after_seconds"
)
_ERRORS_QUERY = "increase(signalbox_spool_errors_total[1h]) > 0"


def stale_files(svc: Services, now_ms: int) -> tuple[list[StaleFile], int]:
    """Spool files older than their staleness limit, or with refused lines in the last hour
    (from the collector's own metrics, through the query engine), and how many files the
    last pass read."""
    out: dict[str, StaleFile] = {}
    at = rfc3339(now_ms / 1000)
    try:
        for v in svc.engine.instant(_STALE_QUERY, now_ms).vector:
            name = v.metric.get("file", "?")
            out[name] = StaleFile(name, at, "now", f"not updated for {v.value:.0f}s")
        for v in svc.engine.instant(_ERRORS_QUERY, now_ms).vector:
            name = v.metric.get("file", "?")
            if name not in out:
                out[name] = StaleFile(
                    name, at, "now", f"{v.value:.0f} refused line(s) in the last hour"
                )
        files = svc.engine.instant("sum(signalbox_spool_files)", now_ms).vector
    except SignalboxError as e:  # the overview still shows the rest
        log.warning("overview: spool file state unavailable: %s", e)
        return [], 0
    return sorted(out.values(), key=lambda f: f.name), int(files[0].value) if files else 0


def index_page(svc: Services, demo: bool) -> str:
    now = svc.now_ms()
    names = svc.metrics.names()
    report = svc.monitors.status(now) if svc.monitors else None
    stale, spool_count = stale_files(svc, now)
    return page(
        "index.html",
        "overview",
        demo,
        monitors=monitor_rows(report) if report else [],
        monitor_count=len(report.monitors) if report else 0,
        firing=firing_rows(report, now) if report else [],
        changes=change_rows(svc, report, now) if report else [],
        stale_files=stale,
        spool_count=spool_count,
        has_monitors=svc.monitors is not None,
        names=names[:NAMES_SHOWN],
        names_more=max(0, len(names) - NAMES_SHOWN),
        queue_notes=queues_page.queue_notes(svc, now),
    )


def page(template: str, current: str, demo: bool, /, **values: object) -> str:
    """A page of the dashboard: ``template`` inside ``base.html``'s frame (``current``: the
    navigation entry to mark)."""
    return (
        templates()
        .get_template(template)
        .render(version=__version__, demo=demo, page=current, **values)
    )


async def index(request: Request) -> Response:
    demo: bool = request.app.state.options.demo
    return HTMLResponse(await run_in_threadpool(index_page, services(request), demo))


async def explore(request: Request) -> Response:
    """The explorer's frame; the query, range and step live in the URL and the browser
    fetches ``/api/v1/query_range`` itself (what it shows is what the API answers)."""
    demo: bool = request.app.state.options.demo
    q = request.query_params
    return HTMLResponse(
        page(
            "explore.html", "explore", demo,
            query=q.get("query", ""), range=q.get("range", "1h"),
        )
    )  # fmt: skip


# -- a monitor's page -----------------------------------------------------------------------
_BACKTEST_RANGES = {"1d": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
_HISTORY_SHOWN = 200


@dataclass(frozen=True, slots=True)
class SeriesRow:
    series: str
    labels: dict[str, str]
    state: str
    since: str
    ago: str
    value: str
    reason: str
    muted: str


@dataclass(frozen=True, slots=True)
class HistoryRow:
    at: str
    ago: str
    at_ms: int
    series: str
    labels: dict[str, str]
    event: str
    to_state: str
    what: str
    reason: str


def monitor_page_data(svc: Services, name: str, backtest: str | None) -> dict[str, object]:
    """Everything the monitor page shows, as plain data (the template lays it out)."""
    src = svc.monitors
    if src is None:
        raise NotFoundError("area", "monitors", "this server has no monitor store")
    now = svc.now_ms()
    report = src.status(now)
    status = next((m for m in report.monitors if m.name == name), None)
    definition = getattr(src, "definition", None)
    monitor, source = definition(name) if definition is not None else (None, "")
    if status is None and monitor is None:
        known = ", ".join(sorted(m.name for m in report.monitors)) or "none"
        raise NotFoundError("monitor", name, f"known: {known}")
    series = [
        SeriesRow(
            format_series("", s.labels), dict(s.labels), s.state.value,
            rfc3339(s.since_ms / 1000) if s.since_ms else "",
            ago(s.since_ms, now) if s.since_ms else "",
            "" if s.value is None else format_number(s.value), s.reason,
            ", ".join(x for x in (s.silenced and f"silenced: {s.silenced}",
                                  s.acknowledged and f"acked: {s.acknowledged}") if x),
        )
        for s in sorted(status.series if status else [], key=lambda s: (-s.state.severity, s.labels))
    ]  # fmt: skip
    entries = src.history(name, since_ms=now - 7 * _DAY_MS, limit=_HISTORY_SHOWN)
    history = [
        HistoryRow(
            rfc3339(e.at_ms / 1000), ago(e.at_ms, now), e.at_ms, format_series("", e.labels),
            dict(e.labels), e.event, e.to_state.value if e.to_state else "",
            (f"{e.from_state.value if e.from_state else '-'} → {e.to_state.value}"
             if e.event == "state" and e.to_state else e.event),
            e.reason,
        )
        for e in entries
    ]  # fmt: skip
    rule = monitor.rule() if monitor is not None else None
    thresholds = {}
    if rule is not None:
        for level in ("warning", "critical", "recover"):
            t = getattr(rule, level)
            if t is not None:
                thresholds[level] = {"op": t.op, "value": t.value}
    result: dict[str, object] = {
        "name": name,
        "state": status.state.value if status else "-",
        "monitor": monitor,
        "kind": status.kind if status else "",
        "source": source,
        "series": series,
        "history": history,
        "silences": status.silences if status else [],
        # a PromQL query to chart: threshold checks only (a staleness or queue check's
        # subject is a description, like "age of spool file x.metrics")
        "query": rule.subject
        if rule is not None and monitor is not None and monitor.kind == "threshold"
        else "",
        "thresholds": thresholds,
        "history_json": [
            {"at": h.at_ms, "series": h.series, "state": h.to_state, "event": h.event}
            for h in history
        ],
        "backtest_ranges": list(_BACKTEST_RANGES),
        "backtest": None,
        "backtest_range": backtest or "",
    }
    if backtest:
        since = _BACKTEST_RANGES.get(backtest)
        if since is None:
            raise UsageError(
                f"invalid parameter 'backtest': expected one of {', '.join(_BACKTEST_RANGES)}, "
                f"got {backtest!r}"
            )
        run = getattr(src, "backtest", None)
        if run is None:
            raise UsageError("this server does not backtest monitors")
        doc = run(name, since_s=since, now_ms=now).to_json()
        result["backtest"] = next(iter(doc.get("monitors", [])), None)
        result["backtest_window"] = (rfc3339(doc["start"]), rfc3339(doc["end"]), doc["step_s"])
    return result


async def monitor_page(request: Request) -> Response:
    demo: bool = request.app.state.options.demo
    name = str(request.path_params["name"])
    backtest = request.query_params.get("backtest")
    data = await run_in_threadpool(monitor_page_data, services(request), name, backtest)
    return HTMLResponse(page("monitor.html", "monitor", demo, **data))


# -- static files ------------------------------------------------------------------------
_OWN_STATIC = {
    "signalbox.css": "text/css",
    "decimate.js": "text/javascript",
    "explore.js": "text/javascript",
    "flags.js": "text/javascript",
    "monitor.js": "text/javascript",
    "queues.js": "text/javascript",
    "theme.js": "text/javascript",
}


@functools.cache
def _plotly_js() -> Path | None:
    """The Plotly bundle of the installed ``plotly`` package (a dependency)."""
    try:
        path = Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


async def static(request: Request) -> Response:
    name = str(request.path_params["name"])
    headers = {"Cache-Control": "public, max-age=3600"}
    if name == "plotly.min.js":
        js = _plotly_js()
        if js is None:
            raise NotFoundError("static file", name, "the plotly package is not installed")
        return FileResponse(js, media_type="text/javascript", headers=headers)
    kind = _OWN_STATIC.get(name)
    if kind is None:  # a fixed set: nothing from the URL reaches the file system
        raise NotFoundError(
            "static file", name, f"known: {', '.join(sorted(_OWN_STATIC))}, plotly.min.js"
        )
    path = Path(str(importlib.resources.files("signalbox.server") / "static" / name))
    return FileResponse(path, media_type=kind, headers=headers)


def routes() -> list[BaseRoute]:
    """The dashboard's pages and files."""
    return [
        Route("/", index),
        Route("/explore", explore),
        Route("/monitors/{name}", monitor_page),
        Route("/queues", queues_page.queues),
        Route("/flags", flags_page.flags),
        Route("/logs", logs_page),
        Route("/static/{name}", static),
    ]
