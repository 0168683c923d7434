"""The metric explorer drawing 100k points, before and after: page load to query answer to
chart, in chromium.

Issue 10's "charts stay fast with 100k points". One store, imported with ``signalbox import``
from OpenMetrics written here: a gauge ``bench_chart_big`` of ``--series`` (84) series and a
gauge ``bench_chart_small`` of ``--small-series`` (9), a sample every 2 s over the hour
ending now, served by ``signalbox serve`` (StatsD off, collection hourly, no monitors). The
explorer asks its 1 h range at a step of ceil(3600 / 1500) = 3 s: 1,201 points a series,
so about 100k points for the big metric and about 10k for the small one, for scale. The
points the page received are read from the chart (``data-points``) and printed, and, for the
explorer of now, the points it drew after decimating them to the plot's pixel columns
(``data-drawn``, ``data-columns``: ``static/decimate.js``, M4).

Two explorers, in interleaved rounds (their order alternates round by round): ``now``, the
``static/explore.js`` of this checkout (SVG ``scatter`` of decimated lines, always), and
``before``, the ``explore.js`` and the page's script tags (``templates/explore.html``) of
``--before`` (a git revision; default the commit before decimation came: WebGL
``scattergl`` past 20,000 points, SVG below, and Plotly loaded before the explorer's script
could ask its query), put in place of this checkout's by Playwright's request routing, from
the same server. Each load is a
fresh page (a new browser context: cold cache, so ``plotly.min.js`` is fetched and parsed
every time; the window ends at the page's ``Date.now()``, so the server's results cache
never has the answer). Times are from navigation start (the page's ``performance`` clock):

* ``plotly``: ``plotly.min.js`` fetched (its ``responseEnd``); ``ready``:
  ``DOMContentLoaded``, when every deferred script, Plotly's among them, has run;
* ``asked`` / ``answered``: the ``/api/v1/query_range`` request's ``startTime`` and
  ``responseEnd`` (resource timing; for a big answer asked while Plotly runs, the body
  may wait on the busy page, so ``answered`` comes close to ``ready``);
* ``drawn``: Plotly's last ``plotly_afterplot`` after the ``Plotly.react`` that drew the
  answer (hooked by an init script that wraps ``Plotly.react``), once the DOM holds the
  drawn traces (``.gl-container canvas`` for WebGL, one ``.scatterlayer .trace path.js-line``
  a series for SVG); ``frame``: the second ``requestAnimationFrame`` after it (the frame
  showing the chart was produced: for WebGL, ``drawn`` to ``frame`` holds the GL work that
  Plotly queued, here rasterized on the CPU);
* ``hover``: after the chart is drawn, the mouse moved to the middle of the plot, then
  nudged by a pixel until Plotly says a point is hovered: from that mouse move to the frame
  after ``plotly_hover`` (Plotly's search of every trace for the closest point, and its
  label drawn); none when no line was near;
* ``answer to frame``: from ``answered``, or from ``ready`` when that is later (the
  explorer of now asks before Plotly has run, so it may wait for Plotly, not the answer);
* ``CPU``: user + system time of chromium's processes (renderer, GPU process with
  SwiftShader, browser) and, apart, of ``signalbox serve``, from navigation to ``SETTLE_MS``
  after the frame, read from ``/proc``: unlike wall time it hardly moves with the load;
* ``heap``: ``JSHeapUsedSize`` from CDP ``Performance.getMetrics`` right after the chart is
  drawn, and again after CDP ``HeapProfiler.collectGarbage`` (what the page keeps).

One untimed load per explorer and metric warms the server first. Reported: each round, then
medians, and the medians of the per-round ratios before / now (each round's pair saw the
same machine state). Chromium: Debian's, headless, with the browser
tests' flags (``tests/server/browser.py``, ``--disable-gpu``): WebGL runs on SwiftShader,
software GL on the CPU, so the WebGL figures are a CPU's, not a GPU's. Load averages are
printed at start and end: the machine is shared. ``--width`` sets the viewport's (1280): at
400 the plot has ~300 pixel columns, fewer than a series' 1,201 points, and decimation drops
points.

    .venv/bin/python bench/chart_points.py              # 5 rounds (~3 min)
    .venv/bin/python bench/chart_points.py --rounds 1   # a smoke run
    .venv/bin/python bench/chart_points.py --width 400  # a phone's width
    .venv/bin/python bench/chart_points.py --plotly-options  # Plotly's options on their own

``--plotly-options`` measures what the explorer chose among, without the server: 84 random
walks of 1,201 points drawn in a blank page with the explorer's options (SVG ``scatter``,
``line.simplify`` on, no legend past 20 series, ``hovermode: "closest"``, ``Plotly.react``,
x as Date objects) and with one changed at a time (WebGL ``scattergl``, simplify off, a
legend of every series, hover off, ``Plotly.newPlot``, x as epoch ms): one fresh page a
variant, in rounds with a rotating order; medians, and medians of per-round ratios to the
explorer's, of wall time to the frame and of chromium's CPU time.

Needs: Debian's chromium (/usr/bin/chromium), Playwright's Python package (no browser
download), and git (for ``--before``'s explore.js).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from peers import Child, free_port, http_ok, median_ratio, run_main, signalbox_exe, wait_for

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.server.browser

INTERVAL_S = 2
RANGE = "1h"
RANGE_S = 3600
MAX_POINTS = 1500  # explore.js: a step so that no series has more points than this
STEP_S = -(-RANGE_S // MAX_POINTS)
BIG, SMALL = "bench_chart_big", "bench_chart_small"
BEFORE = "2901e7a~1"  # the last explore.js without decimation (scattergl past 20,000 points)
EXPLORE_JS = "src/signalbox/server/static/explore.js"
EXPLORE_HTML = "src/signalbox/server/templates/explore.html"
DRAW_TIMEOUT_MS = 180_000
SETTLE_MS = 500  # after the chart is in the DOM, a later afterplot (a margin redraw) still counts
HOVER_TIMEOUT_MS = 5_000

# Wraps Plotly.react (a global at DOMContentLoaded, when the page's deferred scripts, Plotly's
# among them, have run; the explorer draws no earlier) to record when the chart's afterplots fire and the frame after each;
# and when the mouse moved and Plotly answered it with a hover label.
HOOK_JS = """
window.__bench = {react: [], afterplot: [], frame: [], move: [], hover: []};
document.addEventListener("mousemove", function () {
  window.__bench.move.push(performance.now());
}, true);
document.addEventListener("DOMContentLoaded", function () {
  window.__bench.dcl = performance.now();
  var P = window.Plotly, orig = P.react;
  P.react = function (gd) {
    window.__bench.react.push(performance.now());
    var out = orig.apply(this, arguments);  // Plotly sets gd.on up synchronously
    if (!gd.__benchHooked && gd.on) {       // and emits afterplot from a promise: not yet
      gd.__benchHooked = true;
      gd.on("plotly_afterplot", function () {
        window.__bench.afterplot.push(performance.now());
        requestAnimationFrame(function () {
          requestAnimationFrame(function () { window.__bench.frame.push(performance.now()); });
        });
      });
      gd.on("plotly_hover", function () {
        var moved = window.__bench.move[window.__bench.move.length - 1];
        requestAnimationFrame(function () {
          requestAnimationFrame(function () {
            window.__bench.hover.push([moved, performance.now()]);
          });
        });
      });
    }
    return out;
  };
});
"""

DRAWN_JS = """(series) => {
  const chart = document.getElementById("chart");
  if (!chart || !window.__bench || window.__bench.frame.length === 0) return false;
  if (chart.querySelector(".gl-container canvas") !== null) return true;
  return chart.querySelectorAll(".scatterlayer .trace path.js-line").length === series;
}"""

FIGURES_JS = """() => {
  const q = performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/api/v1/query_range"));
  const chart = document.getElementById("chart");
  const js = performance.getEntriesByType("resource")
    .filter((e) => e.name.endsWith("/static/plotly.min.js"));
  return {
    plotly: js.length ? js[0].responseEnd : null,
    dcl: window.__bench.dcl,
    queries: q.length,
    asked: q.length ? q[0].startTime : null,
    answered: q.length ? q[0].responseEnd : null,
    bytes: q.length ? q[0].decodedBodySize : null,
    react: window.__bench.react,
    afterplot: window.__bench.afterplot,
    frame: window.__bench.frame,
    hover: window.__bench.hover,
    points: Number(chart.dataset.points),
    drawn: chart.dataset.drawn === undefined ? null : Number(chart.dataset.drawn),
    columns: chart.dataset.columns === undefined ? null : Number(chart.dataset.columns),
    series: Number(chart.dataset.series),
    status: document.getElementById("status").textContent,
    gl: chart.querySelectorAll(".gl-container canvas").length,
    svg: chart.querySelectorAll(".scatterlayer .trace path.js-line").length,
  };
}"""

# the plot area's box in the page (Plotly's drag layer covers it)
PLOT_BOX_JS = """() => {
  const r = document.querySelector("#chart .nsewdrag").getBoundingClientRect();
  return [r.left, r.top, r.width, r.height];
}"""

RENDERER_JS = """() => {
  const g = document.createElement("canvas").getContext("webgl");
  if (!g) return "no WebGL";
  const e = g.getExtension("WEBGL_debug_renderer_info");
  return g.getParameter(e ? e.UNMASKED_RENDERER_WEBGL : g.RENDERER);
}"""


# --- data ------------------------------------------------------------------------------


def write_openmetrics(f: TextIO, end_s: int, metrics: dict[str, int]) -> int:
    """Each metric's series (a random walk each), one after the other; samples written."""
    times = range(end_s - RANGE_S, end_s + 1, INTERVAL_S)
    rows = 0
    for name, n in metrics.items():
        f.write(f"# HELP {name} Chart load.\n# TYPE {name} gauge\n")
        for i in range(n):
            rng = random.Random(f"{name}/{i}")
            level = rng.uniform(10, 100)
            labels = f'job="bench",instance="host-{i:03d}:9100"'
            for t in times:
                level = max(0.0, level + rng.gauss(0, 1))
                f.write(f"{name}{{{labels}}} {level:.3f} {t}\n")
            rows += len(times)
    f.write("# EOF\n")
    return rows


def signalbox_config(root: Path) -> Path:
    (root / "monitors").mkdir(parents=True)
    config = root / "signalbox.toml"
    config.write_text(
        f'host = "bench"\nstore = "sqlite:///{root / "sb.db"}"\n'
        '[statsd]\nenabled = false\n[collect]\ninterval = "1h"\n'
    )
    return config


def git_show(rev: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def head_block(template: str) -> str:
    """The script tags of the explorer's template (its ``head`` block, no Jinja in it)."""
    return template.split("{% block head %}", 1)[1].split("{% endblock %}", 1)[0]


@dataclass(frozen=True)
class Explorer:
    """An explorer other than this checkout's: its script, and its page's script tags."""

    script: str
    head: str  # in place of this checkout's head block in the served page
    now_head: str


def explorer_at(rev: str) -> Explorer:
    return Explorer(
        script=git_show(rev, EXPLORE_JS),
        head=head_block(git_show(rev, EXPLORE_HTML)),
        now_head=head_block((REPO / EXPLORE_HTML).read_text()),
    )


def serve_explorer(page: Any, other: Explorer) -> None:
    """Route the page's explorer (its page's script tags and explore.js) to ``other``."""

    def html(route: Any) -> None:
        got = route.fetch()
        body = got.text()
        if other.now_head not in body:
            raise RuntimeError("the served explorer page does not hold its template's scripts")
        route.fulfill(response=got, body=body.replace(other.now_head, other.head))

    page.route("**/explore?*", html)
    page.route(
        "**/static/explore.js",
        lambda route: route.fulfill(body=other.script, content_type="text/javascript"),
    )


# --- CPU time --------------------------------------------------------------------------

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (d / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                kids.setdefault(ppid, []).append(int(d.name))
    return kids


def cpu_ms(root: int | None = None, exclude: int | None = None) -> float:
    """User + system CPU of ``root``'s descendants and itself (default: this process's
    descendants: chromium's processes -- renderer, GPU (SwiftShader), browser -- and
    Playwright's driver), leaving out ``exclude``'s tree (the server). Unlike wall time it
    hardly moves with the machine's load."""
    kids, total = _children(), 0
    todo = [root] if root is not None else list(kids.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        if pid == exclude:
            continue
        todo.extend(kids.get(pid, []))
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * TICK_S * 1000


# --- one page load ---------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    points: int
    drawn: int  # after decimation (the points received, for the explorer before it)
    columns: int | None  # what the explorer decimated to
    series: int
    trace: str  # "scattergl" or "scatter"
    kbytes: float  # the query's JSON
    plotly_ms: float  # plotly.min.js fetched
    ready_ms: float  # DOMContentLoaded: every deferred script, Plotly's among them, has run
    asked_ms: float
    answered_ms: float
    drawn_ms: float
    frame_ms: float
    afterplots: int
    hover_ms: float  # NaN: no line near the mouse
    cpu_ms: float  # chromium's processes, navigation to SETTLE_MS after the frame
    server_cpu_ms: float  # signalbox serve's, the same while
    heap_mb: float
    heap_gc_mb: float

    @property
    def answer_to_frame(self) -> float:
        """From the answer, or from Plotly's having run when that came later."""
        return self.frame_ms - max(self.answered_ms, self.ready_ms)


def heap_mb(cdp: Any) -> float:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize")) / 1e6


def hover(page: Any) -> float:
    """The mouse to the plot's middle, nudged until a point is hovered: ms to the frame."""
    left, top, width, height = page.evaluate(PLOT_BOX_JS)
    for dy in (0, 7, -7, 14, -14, 21, -21, 28, -28):
        page.mouse.move(left + width / 2, top + height / 2 + dy)
        with contextlib.suppress(Exception):
            page.wait_for_function(
                "window.__bench.hover.length > 0", timeout=HOVER_TIMEOUT_MS // 5, polling=20
            )
            moved, shown = page.evaluate("window.__bench.hover[0]")
            return float(shown - moved)
    return math.nan


def load(
    browser: Any,
    base: str,
    server: int,
    metric: str,
    expect_series: int,
    other: Explorer | None,
    width: int,
) -> Load:
    """One fresh page of the explorer: this checkout's, or ``other``."""
    # a new context: nothing cached (tests.server.browser.new_page, with a width)
    page = browser.new_page(viewport={"width": width, "height": 860}, bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        if other is not None:
            serve_explorer(page, other)
        page.add_init_script(HOOK_JS)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        url = f"{base}/explore?" + urllib.parse.urlencode({"query": metric, "range": RANGE})
        cpu, server_cpu = cpu_ms(exclude=server), cpu_ms(server)
        page.goto(url)
        page.wait_for_function(DRAWN_JS, arg=expect_series, timeout=DRAW_TIMEOUT_MS, polling=50)
        page.wait_for_timeout(SETTLE_MS)
        cpu, server_cpu = cpu_ms(exclude=server) - cpu, cpu_ms(server) - server_cpu
        heap = heap_mb(cdp)
        cdp.send("HeapProfiler.collectGarbage")
        heap_gc = heap_mb(cdp)
        f = page.evaluate(FIGURES_JS)
        hover_ms = hover(page)
    finally:
        page.context.close()
    if errors:
        raise RuntimeError(f"{metric}: page errors: {errors}")
    if f["queries"] != 1 or len(f["react"]) != 1 or f["series"] != expect_series:
        raise RuntimeError(f"{metric}: not one query drawn once: {f}")
    if len(f["frame"]) != len(f["afterplot"]):
        raise RuntimeError(f"{metric}: an afterplot without its frame: {f}")
    trace = "scattergl" if f["gl"] else "scatter"
    if trace == "scatter" and f["svg"] != expect_series:
        raise RuntimeError(f"{metric}: not drawn as expected ({trace}): {f}")
    return Load(
        points=f["points"],
        drawn=f["points"] if f["drawn"] is None else f["drawn"],
        columns=f["columns"],
        series=f["series"],
        trace=trace,
        kbytes=f["bytes"] / 1e3,
        plotly_ms=f["plotly"],
        ready_ms=f["dcl"],
        asked_ms=f["asked"],
        answered_ms=f["answered"],
        drawn_ms=f["afterplot"][-1],
        frame_ms=f["frame"][-1],
        afterplots=len(f["afterplot"]),
        hover_ms=hover_ms,
        cpu_ms=cpu,
        server_cpu_ms=server_cpu,
        heap_mb=heap,
        heap_gc_mb=heap_gc,
    )


def line(label: str, r: Load) -> str:
    return (
        f"  {label:<11} plotly {r.plotly_ms:5.0f} ready {r.ready_ms:5.0f}"
        f"  asked {r.asked_ms:5.0f} answered {r.answered_ms:5.0f}"
        f"  drawn {r.drawn_ms:5.0f} frame {r.frame_ms:5.0f} ms"
        f" (answer to frame {r.answer_to_frame:5.0f})  hover {r.hover_ms:4.0f} ms"
        f"  CPU chromium {r.cpu_ms:5.0f} serve {r.server_cpu_ms:4.0f} ms"
        f"  heap {r.heap_mb:5.1f} MB, after GC {r.heap_gc_mb:5.1f} MB"
    )


def nanmedian(xs: list[float]) -> float:
    got = [x for x in xs if not math.isnan(x)]
    return statistics.median(got) if got else math.nan


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, {os.cpu_count()} CPUs)"


# --- Plotly's options, on their own ------------------------------------------------------

# Draws ``n`` random-walk series of ``points`` each (3 s apart, ending now) with one set of
# options into an empty 1,162 x 516 px div (the explorer's plot at 1280 px) and times the
# call to its promise and to the second animation frame after it.
OPTION_JS = """async ([n, points, o]) => {
  let seed = 1;
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
  const end = Date.now(), traces = [];
  for (let s = 0; s < n; s++) {
    const xs = new Array(points), ys = new Array(points);
    let level = 10 + 90 * rnd();
    for (let i = 0; i < points; i++) {
      level += rnd() - 0.5;
      const t = end - (points - 1 - i) * 3000;
      xs[i] = o.epoch ? t : new Date(t);
      ys[i] = level;
    }
    traces.push({x: xs, y: ys, type: o.type, mode: "lines", name: "series " + s,
                 line: {width: 1.5, simplify: o.simplify}, hoverlabel: {namelength: -1}});
  }
  const layout = {margin: {l: 60, r: 20, t: 10, b: 40}, xaxis: {type: "date"},
                  showlegend: o.legend, legend: {orientation: "h", y: -0.15},
                  hovermode: o.hover ? "closest" : false};
  const gd = document.getElementById("c"), t0 = performance.now();
  await Plotly[o.call](gd, traces, layout, {responsive: true, displaylogo: false});
  const t1 = performance.now();
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return [t1 - t0, performance.now() - t0];
}"""

EXPLORER_OPTIONS = {
    "type": "scatter",
    "simplify": True,
    "legend": False,
    "hover": True,
    "call": "react",
    "epoch": False,
}
OPTION_VARIANTS: dict[str, dict[str, object]] = {
    "scatter (the explorer's)": {},
    "scattergl (WebGL)": {"type": "scattergl"},
    "line.simplify off": {"simplify": False},
    "legend of every series": {"legend": True},
    "hovermode off": {"hover": False},
    "Plotly.newPlot": {"call": "newPlot"},
    "x as epoch ms": {"epoch": True},
}


def plotly_options(browser: Any, rounds: int, series: int, points: int) -> None:
    """Each variant in a fresh page, in rounds (the order rotating); medians, and the median
    of per-round ratios to the explorer's own options."""
    plotly = Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))
    names = list(OPTION_VARIANTS)
    got: dict[str, list[tuple[float, float, float]]] = {k: [] for k in names}
    print(
        f"Plotly's options: {series} series x {points} points in a blank page, one fresh page a"
        f" variant, {rounds} round(s), order rotating; ms from the call to its promise"
        " (plotted) and to the second frame after it (frame); CPU time of chromium's processes"
        f" from the call to {SETTLE_MS} ms after that frame"
    )
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            try:
                page.set_content('<div id="c" style="width:1162px;height:516px"></div>')
                page.add_script_tag(path=str(plotly))
                options = {**EXPLORER_OPTIONS, **OPTION_VARIANTS[name]}
                cpu = cpu_ms()
                plotted, frame = page.evaluate(OPTION_JS, [series, points, options])
                page.wait_for_timeout(SETTLE_MS)  # and what the GPU process still had queued
                cpu = cpu_ms() - cpu
            finally:
                page.context.close()
            got[name].append((plotted, frame, cpu))
    base = [f for _, f, _ in got[names[0]]]
    base_cpu = [c for _, _, c in got[names[0]]]
    for name in names:
        rs = got[name]
        print(
            f"  {name:<26} plotted {statistics.median(p for p, _, _ in rs):6.0f}"
            f"  frame {statistics.median(f for _, f, _ in rs):6.0f} ms"
            f" ({median_ratio([f for _, f, _ in rs], base):.2f}x the explorer's)"
            f"  chromium CPU {statistics.median(c for _, _, c in rs):6.0f} ms"
            f" ({median_ratio([c for _, _, c in rs], base_cpu):.2f}x)"
        )


# --- main ------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5, help="timed page loads per case (5)")
    ap.add_argument("--series", type=int, default=84, help="series of the big metric (84)")
    ap.add_argument(
        "--small-series", type=int, default=9, help="series of the small metric, for scale (9)"
    )
    ap.add_argument(
        "--before",
        default=BEFORE,
        help=f"git revision whose explore.js is 'before' ({BEFORE}); 'none': now only",
    )
    ap.add_argument("--width", type=int, default=1280, help="viewport width, px (1280)")
    ap.add_argument(
        "--plotly-options",
        action="store_true",
        help="instead: Plotly's options on their own, in a blank page (no server)",
    )
    a = ap.parse_args()
    if a.rounds < 1 or a.series < 1 or a.small_series < 1 or a.width < 320:
        ap.error("--rounds, --series and --small-series at least 1, --width at least 320")
    if not Path("/usr/bin/chromium").exists():
        raise SystemExit("/usr/bin/chromium not found (Debian: apt-get install chromium)")
    from tests.server.browser import CHROMIUM_ARGS, chromium

    if a.plotly_options:
        print(f"load average at start: {loadavg()}")
        with chromium() as browser:
            plotly_options(browser, a.rounds, a.series, RANGE_S // STEP_S + 1)
        print(f"load average at end: {loadavg()}")
        return 0

    explorers: dict[str, Explorer | None] = {"now": None}
    if a.before != "none":
        explorers["before"] = explorer_at(a.before)
    began = time.perf_counter()
    print(f"load average at start: {loadavg()}")
    metrics = {BIG: a.series, SMALL: a.small_series}
    end_s = int(time.time())
    with (
        tempfile.TemporaryDirectory(prefix="sb-bench-chart-") as d,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(d)
        om = tmp / "data.om"
        with om.open("w") as f:
            rows = write_openmetrics(f, end_s, metrics)
        each = rows // (a.series + a.small_series)
        print(
            f"data: a sample every {INTERVAL_S} s over the {RANGE} ending"
            f" {time.strftime('%F %H:%M:%S', time.gmtime(end_s))} UTC: {BIG} {a.series} series"
            f" ({a.series * each:,} samples), {SMALL} {a.small_series} series"
            f" ({a.small_series * each:,})"
        )
        root = tmp / "sb"
        config = signalbox_config(root)
        t = time.perf_counter()
        importer = Child(
            [signalbox_exe(), "--config", str(config), "import", str(om)], root / "import.log"
        )
        stack.callback(importer.close)
        if importer.proc.wait(timeout=1800) != 0:
            print(f"signalbox import failed:\n{importer.tail()}")
            return 1
        print(f"  signalbox import: {time.perf_counter() - t:.1f} s")
        port = free_port()
        serve = Child(
            [signalbox_exe(), "--config", str(config), "serve", "--port", str(port)],
            root / "serve.log",
        )
        stack.callback(serve.close)
        wait_for("signalbox serve", lambda: http_ok(port, "/-/ready"), 60, serve.proc)
        base = f"http://127.0.0.1:{port}"
        other = explorers.get("before")
        if other is not None:  # what serve_explorer replaces is there to replace
            with urllib.request.urlopen(f"{base}/explore?query={BIG}") as r:
                if other.now_head not in r.read().decode():
                    raise SystemExit("the served explorer page is not this checkout's template")

        browser = stack.enter_context(chromium())
        probe = browser.new_page()
        probe.goto("about:blank")
        renderer = probe.evaluate(RENDERER_JS)
        probe.context.close()
        print(
            f"chromium {browser.version}, headless, the browser tests' flags"
            f" ({' '.join(CHROMIUM_ARGS)}); viewport {a.width} x 860; WebGL: {renderer}"
            " (software GL)"
        )
        print(
            f"explorer: range {RANGE}, step {STEP_S} s; explorers: now (this checkout)"
            + (f", before ({a.before}'s explore.js)" if "before" in explorers else "")
            + "; warm-up: one untimed load per explorer and metric"
        )
        cases = [
            (f"{size} {who}", metric, n, who)
            for size, metric, n in (("100k", BIG, a.series), ("10k", SMALL, a.small_series))
            for who in explorers
        ]
        for _, metric, n, who in cases:
            load(browser, base, serve.proc.pid, metric, n, explorers[who], a.width)
        runs: dict[str, list[Load]] = {label: [] for label, _, _, _ in cases}
        for r in range(a.rounds):
            print(f"round {r + 1} (ms from navigation start):")
            # each size's explorers one after the other, which goes first alternating
            whos = list(explorers) if r % 2 == 0 else list(reversed(explorers))
            order = sorted(cases, key=lambda c: (c[0].split()[0] != "100k", whos.index(c[3])))
            for label, metric, n, who in order:
                got = load(browser, base, serve.proc.pid, metric, n, explorers[who], a.width)
                runs[label].append(got)
                print(line(label, got))

        med = statistics.median
        print(f"medians over {a.rounds} round(s), ms from navigation start:")
        for label, metric, _, _ in cases:
            rs = runs[label]
            first = rs[0]
            counts = {(x.points, x.drawn, x.series) for x in rs}
            print(
                f"  {label:<13} {metric}: the page received {first.points:,} points in"
                f" {first.series} series ({first.kbytes:,.0f} kB of JSON), drew"
                f" {first.drawn:,} as {first.trace}"
                + (f" ({first.columns} pixel columns)" if first.columns else "")
                + ("" if len(counts) == 1 else f" (counts varied: {sorted(counts)})")
            )
            print(
                f"         plotly fetched {med(x.plotly_ms for x in rs):.0f}, ready"
                f" {med(x.ready_ms for x in rs):.0f},"
                f" asked {med(x.asked_ms for x in rs):.0f}, answered"
                f" {med(x.answered_ms for x in rs):.0f}, drawn {med(x.drawn_ms for x in rs):.0f},"
                f" frame {med(x.frame_ms for x in rs):.0f}; answer to frame"
                f" {med(x.answer_to_frame for x in rs):.0f}; hover"
                f" {nanmedian([x.hover_ms for x in rs]):.0f}; CPU chromium"
                f" {med(x.cpu_ms for x in rs):.0f}, serve {med(x.server_cpu_ms for x in rs):.0f};"
                " heap"
                f" {med(x.heap_mb for x in rs):.1f} MB, after GC"
                f" {med(x.heap_gc_mb for x in rs):.1f} MB;"
                f" afterplots a load: {sorted({x.afterplots for x in rs})}"
            )
        if "before" in explorers:
            print("before / now, median of per-round ratios (each round's pair, same machine):")
            for size in ("100k", "10k"):
                b, n = runs[f"{size} before"], runs[f"{size} now"]
                frame = median_ratio([x.answer_to_frame for x in b], [x.answer_to_frame for x in n])
                nav = median_ratio([x.frame_ms for x in b], [x.frame_ms for x in n])
                cpu = median_ratio([x.cpu_ms for x in b], [x.cpu_ms for x in n])
                print(
                    f"  {size}: answer to frame {frame:.2f}x, navigation to frame {nav:.2f}x,"
                    f" chromium CPU {cpu:.2f}x"
                    f" (medians {med(x.answer_to_frame for x in b):.0f} ->"
                    f" {med(x.answer_to_frame for x in n):.0f} ms)"
                )
        if serve.proc.poll() is not None:
            print(f"signalbox serve exited: {serve.tail()}")
            return 1
    print(f"load average at end: {loadavg()}")
    print(f"whole run: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
