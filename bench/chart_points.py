"""The metric explorer drawing 100k points: page load to query answer to chart, in chromium.

Issue 10's "charts stay fast with 100k points". One store, imported with ``signalbox import``
from OpenMetrics written here: a gauge ``bench_chart_big`` of ``--series`` (84) series and a
gauge ``bench_chart_small`` of ``--small-series`` (9), a sample every 2 s over the hour
ending now, served by ``signalbox serve`` (StatsD off, collection hourly, no monitors). The
explorer asks its 1 h range at a step of ceil(3600 / 1500) = 3 s: 1,201 points a series,
so about 100k points for the big metric (Plotly's WebGL ``scattergl``, past 20,000) and
about 10k for the small one (SVG ``scatter``), for scale. The points the page received are
read from the chart (``data-points``) and printed.

Each round loads ``/explore?query=<metric>&range=1h`` once per metric, each time in a fresh
page (a new browser context: cold cache, so ``plotly.min.js`` is fetched and parsed every
time; the window ends at the page's ``Date.now()``, so the server's results cache never has
the answer). Times are from navigation start (the page's ``performance`` clock):

* ``asked`` / ``answered``: the ``/api/v1/query_range`` request's ``startTime`` and
  ``responseEnd`` (resource timing);
* ``drawn``: Plotly's last ``plotly_afterplot`` after the ``Plotly.react`` that drew the
  answer (hooked by an init script that wraps ``Plotly.react``), once the DOM holds the
  drawn traces (``.gl-container canvas`` for WebGL, one ``.scatterlayer .trace path.js-line``
  a series for SVG); ``frame``: the second ``requestAnimationFrame`` after it (the frame
  showing the chart was produced: for WebGL, ``drawn`` to ``frame`` holds the GL work that
  Plotly queued, here rasterized on the CPU);
* ``heap``: ``JSHeapUsedSize`` from CDP ``Performance.getMetrics`` right after, and again
  after CDP ``HeapProfiler.collectGarbage`` (what the page keeps).

One untimed load per metric warms the server first. Reported: each round, then medians.
Chromium: Debian's, headless, with the browser tests' flags (``tests/server/browser.py``,
``--disable-gpu``): WebGL runs on SwiftShader, software GL on the CPU, so the WebGL figures
are a CPU's, not a GPU's. Load averages are printed at start and end: the machine is shared.

    .venv/bin/python bench/chart_points.py              # 5 rounds (~1.5 min)
    .venv/bin/python bench/chart_points.py --rounds 1   # a smoke run

Needs: Debian's chromium (/usr/bin/chromium) and Playwright's Python package (no browser
download).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from peers import Child, free_port, http_ok, run_main, signalbox_exe, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.server.browser

INTERVAL_S = 2
RANGE = "1h"
RANGE_S = 3600
MAX_POINTS = 1500  # explore.js: a step so that no series has more points than this
STEP_S = -(-RANGE_S // MAX_POINTS)
GL_FROM = 20_000  # explore.js: scattergl past this many points
BIG, SMALL = "bench_chart_big", "bench_chart_small"
DRAW_TIMEOUT_MS = 180_000
SETTLE_MS = 500  # after the chart is in the DOM, a later afterplot (a margin redraw) still counts

# Wraps Plotly.react (a global by the time the deferred explore.js has run, before its fetch
# can have answered) to record when the chart's afterplots fire and the frame after each.
HOOK_JS = """
window.__bench = {react: [], afterplot: [], frame: []};
document.addEventListener("DOMContentLoaded", function () {
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
    }
    return out;
  };
});
"""

DRAWN_JS = """([gl, series]) => {
  const chart = document.getElementById("chart");
  if (!chart || !window.__bench || window.__bench.frame.length === 0) return false;
  if (gl) return chart.querySelector(".gl-container canvas") !== null;
  return chart.querySelectorAll(".scatterlayer .trace path.js-line").length === series;
}"""

FIGURES_JS = """() => {
  const q = performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/api/v1/query_range"));
  const chart = document.getElementById("chart");
  return {
    queries: q.length,
    asked: q.length ? q[0].startTime : null,
    answered: q.length ? q[0].responseEnd : null,
    bytes: q.length ? q[0].decodedBodySize : null,
    react: window.__bench.react,
    afterplot: window.__bench.afterplot,
    frame: window.__bench.frame,
    points: Number(chart.dataset.points),
    series: Number(chart.dataset.series),
    status: document.getElementById("status").textContent,
    gl: chart.querySelectorAll(".gl-container canvas").length,
    svg: chart.querySelectorAll(".scatterlayer .trace path.js-line").length,
  };
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


# --- one page load ---------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    points: int
    series: int
    trace: str  # "scattergl" or "scatter"
    kbytes: float  # the query's JSON
    asked_ms: float
    answered_ms: float
    drawn_ms: float
    frame_ms: float
    afterplots: int
    heap_mb: float
    heap_gc_mb: float


def heap_mb(cdp: Any) -> float:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize")) / 1e6


def load(browser: Any, base: str, metric: str, expect_series: int) -> Load:
    from tests.server.browser import new_page

    page = new_page(browser)  # a new context: nothing cached
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.add_init_script(HOOK_JS)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        gl = expect_series * (RANGE_S // STEP_S + 1) > GL_FROM
        url = f"{base}/explore?" + urllib.parse.urlencode({"query": metric, "range": RANGE})
        page.goto(url)
        page.wait_for_function(
            DRAWN_JS, arg=[gl, expect_series], timeout=DRAW_TIMEOUT_MS, polling=50
        )
        page.wait_for_timeout(SETTLE_MS)
        heap = heap_mb(cdp)
        cdp.send("HeapProfiler.collectGarbage")
        heap_gc = heap_mb(cdp)
        f = page.evaluate(FIGURES_JS)
    finally:
        page.context.close()
    if errors:
        raise RuntimeError(f"{metric}: page errors: {errors}")
    if f["queries"] != 1 or len(f["react"]) != 1 or f["series"] != expect_series:
        raise RuntimeError(f"{metric}: not one query drawn once: {f}")
    if len(f["frame"]) != len(f["afterplot"]):
        raise RuntimeError(f"{metric}: an afterplot without its frame: {f}")
    trace = "scattergl" if f["points"] > GL_FROM else "scatter"
    if (trace == "scattergl") != gl or (gl and f["gl"] == 0) or (not gl and f["svg"] == 0):
        raise RuntimeError(f"{metric}: not drawn as expected ({trace}): {f}")
    return Load(
        points=f["points"],
        series=f["series"],
        trace=trace,
        kbytes=f["bytes"] / 1e3,
        asked_ms=f["asked"],
        answered_ms=f["answered"],
        drawn_ms=f["afterplot"][-1],
        frame_ms=f["frame"][-1],
        afterplots=len(f["afterplot"]),
        heap_mb=heap,
        heap_gc_mb=heap_gc,
    )


def line(label: str, r: Load) -> str:
    return (
        f"  {label:<6} asked {r.asked_ms:6.0f}  answered {r.answered_ms:6.0f}"
        f"  drawn {r.drawn_ms:6.0f}  frame {r.frame_ms:6.0f} ms"
        f"  (answer to frame {r.frame_ms - r.answered_ms:5.0f} ms)"
        f"  heap {r.heap_mb:5.1f} MB, after GC {r.heap_gc_mb:5.1f} MB"
    )


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, {os.cpu_count()} CPUs)"


# --- main ------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5, help="timed page loads per metric (5)")
    ap.add_argument("--series", type=int, default=84, help="series of the big metric (84)")
    ap.add_argument(
        "--small-series", type=int, default=9, help="series of the small metric, for scale (9)"
    )
    a = ap.parse_args()
    if a.rounds < 1 or a.series < 1 or a.small_series < 1:
        ap.error("--rounds, --series and --small-series at least 1")
    if not Path("/usr/bin/chromium").exists():
        raise SystemExit("/usr/bin/chromium not found (Debian: apt-get install chromium)")
    from tests.server.browser import CHROMIUM_ARGS, chromium

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

        browser = stack.enter_context(chromium())
        probe = browser.new_page()
        probe.goto("about:blank")
        renderer = probe.evaluate(RENDERER_JS)
        probe.context.close()
        print(
            f"chromium {browser.version}, headless, the browser tests' flags"
            f" ({' '.join(CHROMIUM_ARGS)}); viewport 1280 x 860; WebGL: {renderer}"
            " (software GL)"
        )
        print(f"explorer: range {RANGE}, step {STEP_S} s; warm-up: one untimed load per metric")
        cases = [("100k", BIG, a.series), ("10k", SMALL, a.small_series)]
        for _, metric, n in cases:
            load(browser, base, metric, n)
        runs: dict[str, list[Load]] = {label: [] for label, _, _ in cases}
        for r in range(a.rounds):
            print(f"round {r + 1} (ms from navigation start):")
            for label, metric, n in cases:
                got = load(browser, base, metric, n)
                runs[label].append(got)
                print(line(label, got))

        med = statistics.median
        print(f"medians over {a.rounds} round(s), ms from navigation start:")
        for label, metric, _ in cases:
            rs = runs[label]
            first = rs[0]
            counts = {(x.points, x.series) for x in rs}
            print(
                f"  {label:<6} {metric}: the page received {first.points:,} points in"
                f" {first.series} series ({first.kbytes:,.0f} kB of JSON), drawn as"
                f" {first.trace}" + ("" if len(counts) == 1 else f" (counts varied: {counts})")
            )
            print(
                f"         asked {med(x.asked_ms for x in rs):.0f}, answered"
                f" {med(x.answered_ms for x in rs):.0f}, drawn {med(x.drawn_ms for x in rs):.0f},"
                f" frame {med(x.frame_ms for x in rs):.0f}; answer to frame"
                f" {med(x.frame_ms - x.answered_ms for x in rs):.0f}; heap"
                f" {med(x.heap_mb for x in rs):.1f} MB, after GC"
                f" {med(x.heap_gc_mb for x in rs):.1f} MB;"
                f" afterplots a load: {sorted({x.afterplots for x in rs})}"
            )
        if serve.proc.poll() is not None:
            print(f"signalbox serve exited: {serve.tail()}")
            return 1
    print(f"load average at end: {loadavg()}")
    print(f"whole run: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
