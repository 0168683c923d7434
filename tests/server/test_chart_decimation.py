"""The explorer's charts at 100k points (issue 10): decimated per pixel column, every peak kept.

``static/decimate.js`` keeps of each pixel column's points the first, the last, the lowest
and the highest (M4): its rules are checked here in chromium through ``page.evaluate``
against the properties a line chart needs (Hypothesis draws the series), and the explorer
is loaded against a real ``signalbox serve`` holding 84 series x 1,201 points, one of them
with a single sample far above everything else: that sample must be the top of the chart.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.helpers import SIGNALBOX, free_port
from tests.server.browser import chromium, new_page, screenshot
from tests.serving import serve_process

pytestmark = pytest.mark.peer("chromium")

DECIMATE_JS = Path(__file__).parents[2] / "src" / "signalbox" / "server" / "static" / "decimate.js"
SERIES = 84
INTERVAL_S = 3  # the explorer's step over 1 h: one answer point a sample
SPIKY = 17  # the series with the spike
SPIKE = 5000.0  # the rest walk between 0 and ~200

# Every path Plotly drew for a line: its topmost point (pixels from the plot's top) and how
# far the y axis puts a value
PATHS_TOP_JS = """() => {
  const gd = document.getElementById("chart");
  const tops = Array.from(gd.querySelectorAll(".scatterlayer .trace path.js-line")).map((p) => {
    const nums = (p.getAttribute("d") || "").match(/-?[0-9.]+(e-?[0-9]+)?/g).map(Number);
    let top = Infinity;
    for (let i = 1; i < nums.length; i += 2) top = Math.min(top, nums[i]);
    return top;
  });
  return tops;
}"""


# -- decimate.js on its own ---------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def decimator(browser: Any) -> Iterator[Any]:
    """A blank page with decimate.js loaded."""
    page = new_page(browser)
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(DECIMATE_JS))
    yield page
    page.context.close()


def m4_indices(
    page: Any, xs: list[float], ys: list[float], window: tuple[float, float], columns: int
) -> list[int]:
    # NaN does not survive JSON: it travels as null and is made NaN again in the page
    got = page.evaluate(
        """([xs, ys, x0, x1, cols]) => window.signalboxDecimate.m4Indices(
             Float64Array.from(xs), Float64Array.from(ys, (y) => (y === null ? NaN : y)),
             x0, x1, cols)""",
        [xs, [None if math.isnan(y) else y for y in ys], window[0], window[1], columns],
    )
    return [int(i) for i in got]


def column(x: float, x0: float, x1: float, columns: int) -> int:
    """The pixel column decimate.js puts x in (the same double arithmetic, in order)."""
    scale = columns / (x1 - x0)
    return min(math.floor((x - x0) * scale), columns - 1)


@st.composite
def series(draw: st.DrawFn) -> tuple[list[float], list[float], tuple[float, float], int]:
    n = draw(st.integers(0, 400))
    steps = draw(st.lists(st.sampled_from([1.0, 1.0, 2.0, 0.5, 7.0]), min_size=n, max_size=n))
    xs: list[float] = []
    x = draw(st.floats(0, 1e12, allow_nan=False)) // 1
    for s in steps:
        xs.append(x)
        x += s
    value = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(math.nan))
    ys = draw(st.lists(value, min_size=n, max_size=n))
    lo = xs[0] if xs else 0.0
    hi = xs[-1] if xs else 1.0
    x0 = draw(st.floats(lo - 10, hi, allow_nan=False))
    x1 = x0 + draw(st.floats(0.5, max(1.0, hi - x0 + 10), allow_nan=False))
    return xs, ys, (x0, x1), draw(st.integers(1, 60))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=series())
def test_decimation_keeps_each_columns_first_last_lowest_and_highest(
    decimator: Any, case: tuple[list[float], list[float], tuple[float, float], int]
) -> None:
    xs, ys, (x0, x1), columns = case
    kept = m4_indices(decimator, xs, ys, (x0, x1), columns)
    assert kept == sorted(set(kept)), "each point once, in x order"
    inside = [i for i, x in enumerate(xs) if x0 <= x <= x1]
    outside = [i for i in kept if i not in inside]
    # beyond the window: only the nearest point on each side, so lines run to the edges
    before = [i for i, x in enumerate(xs) if x < x0]
    after = [i for i, x in enumerate(xs) if x > x1]
    assert outside == ([before[-1]] if before else []) + ([after[0]] if after else [])
    # a gap (NaN) is kept where it is: it breaks the line there, drawn or not
    assert {i for i in inside if math.isnan(ys[i])} <= set(kept)
    # between gaps, per column: its first, its last, its lowest and highest values, no more
    runs: dict[tuple[int, int], list[int]] = {}
    gap = 0
    for i in inside:
        if math.isnan(ys[i]):
            gap += 1
            continue
        runs.setdefault((gap, column(xs[i], x0, x1, columns)), []).append(i)
    keep = set(kept)
    for members in runs.values():
        mine = [i for i in members if i in keep]
        assert members[0] in keep and members[-1] in keep
        assert min(ys[i] for i in mine) == min(ys[i] for i in members)
        assert max(ys[i] for i in mine) == max(ys[i] for i in members)
        assert len(mine) <= 4


def test_a_lone_spike_survives_decimation_that_a_stride_would_drop(decimator: Any) -> None:
    n, columns = 100_000, 1000
    rng = random.Random(10)
    xs = [float(i) for i in range(n)]
    ys = [50 + rng.uniform(-1, 1) for _ in range(n)]
    spike = 61_237
    ys[spike] = 900.0
    stride = n // columns
    assert spike % stride != 0  # every stride-th sample, as naive decimation keeps, misses it
    kept = m4_indices(decimator, xs, ys, (0.0, float(n - 1)), columns)
    assert len(kept) <= 4 * columns
    assert max(ys[i] for i in kept) == 900.0 and spike in kept
    assert min(ys[i] for i in kept) == min(ys)


# -- the explorer, served -----------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A serve over 84 series of 1 h at 3 s, imported; series 17 has one sample at SPIKE."""
    root = tmp_path_factory.mktemp("chart")
    port = free_port()
    (root / "signalbox.toml").write_text(
        f'host = "web1"\n[collect]\ninterval = "1h"\n[server]\nport = {port}\n'
        "[statsd]\nenabled = false\n"
    )
    (root / "monitors").mkdir()
    end = int(time.time())
    times = range(end - 3600, end + 1, INTERVAL_S)
    lines = ["# TYPE chart_load gauge"]
    for s in range(SERIES):
        rng = random.Random(s)
        level = rng.uniform(20, 100)
        for k, t in enumerate(times):
            level = min(200.0, max(0.0, level + rng.gauss(0, 1)))
            value = SPIKE if (s == SPIKY and k == len(times) // 2 + 1) else level
            lines.append(f'chart_load{{instance="host-{s:02d}"}} {value:.3f} {t}')
    lines.append("# EOF")
    om = root / "load.om"
    om.write_text("\n".join(lines) + "\n")
    r = subprocess.run(
        [SIGNALBOX, "import", str(om)], cwd=root, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout + r.stderr
    with serve_process(root, port) as base:
        yield base


def _explore(browser: Any, served: str, width: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 860}, bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(served + "/explore?" + urllib.parse.urlencode({"query": "chart_load", "range": "1h"}))
    page.wait_for_function(
        f"document.querySelectorAll('#chart .scatterlayer .trace path.js-line').length === {SERIES}",
        timeout=120_000,
    )
    return page


def _answer(page: Any) -> dict[str, list[float]]:
    """The query_range answer the page drew, asked again (the store does not change): each
    series' values by its instance label."""
    url = page.evaluate(
        """() => performance.getEntriesByType("resource")
             .filter((e) => e.name.includes("/api/v1/query_range"))[0].name"""
    )
    with urllib.request.urlopen(url) as r:
        body = json.loads(r.read())
    return {
        s["metric"]["instance"]: [float(v) for _, v in s["values"]] for s in body["data"]["result"]
    }


def _drawn(page: Any) -> dict[str, list[float]]:
    """What the chart holds per trace (decimated), by instance."""
    got = page.evaluate(
        """() => document.getElementById("chart").data.map((t) => [t.name, Array.from(t.y)])"""
    )
    return {_instance(name): ys for name, ys in got}


def _instance(name: str) -> str:
    m = re.search(r'instance="([^"]+)"', name)
    assert m is not None, name
    return m.group(1)


def _spike_on_top(page: Any) -> None:
    """The spiky series' line is the chart's highest, at the spike's height on the y axis."""
    tops = page.evaluate(PATHS_TOP_JS)
    names = page.evaluate("() => document.getElementById('chart').data.map((t) => t.name)")
    spiky = next(i for i, n in enumerate(names) if f'instance="host-{SPIKY:02d}"' in n)
    assert min(tops) == tops[spiky]
    y = page.evaluate(f"() => document.getElementById('chart')._fullLayout.yaxis.l2p({SPIKE})")
    assert abs(tops[spiky] - y) <= 1.0, (tops[spiky], y)


def test_the_explorer_draws_100k_points_with_every_peak_and_dip(browser: Any, served: str) -> None:
    page = _explore(browser, served, 1280)
    chart = page.locator("#chart")
    assert int(chart.get_attribute("data-points") or 0) >= 100_000
    assert chart.get_attribute("data-series") == str(SERIES)
    assert page.locator("#chart .gl-container canvas").count() == 0  # SVG, no WebGL
    answer, drawn = _answer(page), _drawn(page)
    assert sum(map(len, answer.values())) >= 100_000
    assert drawn.keys() == answer.keys()
    for k, ys in answer.items():  # every series' highest and lowest are drawn
        assert max(drawn[k]) == max(ys) and min(drawn[k]) == min(ys), k
    assert max(drawn[f"host-{SPIKY:02d}"]) == SPIKE
    _spike_on_top(page)
    # the name list and the label browser, asked once the chart is drawn, come too
    page.wait_for_selector("#metric-names option[value='chart_load']", state="attached")
    page.locator("details.labels summary").click()
    page.wait_for_selector("#label-browser .chip >> text=host-17")
    screenshot(page, "explore-100k.png")
    assert page.errors == []
    page.context.close()


def test_on_a_phone_the_chart_draws_fewer_points_and_keeps_the_spike(
    browser: Any, served: str
) -> None:
    """360 px: ~260 pixel columns for 1,201 points a series, so decimation drops points."""
    page = _explore(browser, served, 360)
    chart = page.locator("#chart")
    points = int(chart.get_attribute("data-points") or 0)
    drawn_n = int(chart.get_attribute("data-drawn") or 0)
    columns = int(chart.get_attribute("data-columns") or 0)
    assert points >= 100_000 and drawn_n < points and drawn_n <= SERIES * (4 * columns + 2)
    answer, drawn = _answer(page), _drawn(page)
    spiky = answer[f"host-{SPIKY:02d}"]
    # as many points a column as decimation has: averaging them (a naive decimation) would
    # flatten the spike, keeping every k-th would keep it only by luck (k - 1 ways in k miss)
    k = math.ceil(len(spiky) / columns)
    assert k >= 2
    assert (
        max(sum(spiky[i : i + k]) / len(spiky[i : i + k]) for i in range(0, len(spiky), k)) < SPIKE
    )
    assert sum(SPIKE in spiky[o::k] for o in range(k)) == 1
    for name, ys in answer.items():
        assert max(drawn[name]) == max(ys) and min(drawn[name]) == min(ys), name
    _spike_on_top(page)
    # a wider window has more columns: drawn again from the kept answer, nothing asked
    page.set_viewport_size({"width": 1280, "height": 860})
    page.wait_for_function(
        f"() => Number(document.getElementById('chart').dataset.columns) > {columns}"
    )
    page.wait_for_function(
        f"() => Number(document.getElementById('chart').dataset.drawn) > {drawn_n}"
    )
    assert (
        page.evaluate(
            "() => performance.getEntriesByType('resource').filter("
            "(e) => e.name.includes('/api/v1/query_range')).length"
        )
        == 1
    )
    assert page.errors == []
    page.context.close()


def test_a_zoom_is_drawn_at_once_from_the_kept_answer_then_asked_again(
    browser: Any, served: str
) -> None:
    page = _explore(browser, served, 360)
    held: list[Any] = []
    page.route("**/api/v1/query_range*", lambda route: held.append(route))
    # zoom to the 5 minutes around the spike, as a drag on the chart does
    window = page.evaluate(
        """([spike, name]) => {
          const gd = document.getElementById("chart");
          const t = gd.data.find((d) => d.name.includes(name)), i = t.y.indexOf(spike);
          const at = t.x[i].getTime();
          Plotly.relayout(gd, {"xaxis.range[0]": new Date(at - 150000),
                               "xaxis.range[1]": new Date(at + 150000)});
          return [at - 150000, at + 150000];
        }""",
        [SPIKE, f'instance="host-{SPIKY:02d}"'],
    )
    # drawn again before the finer query answers (it is held): every point of the 5 minutes
    # (100 a series, fewer than 4 a column), from the answer the page kept
    page.wait_for_function("() => Number(document.getElementById('chart').dataset.drawn) < 20000")
    answer = _answer(page)  # the held query is another URL: this is the first answer again
    drawn = _drawn(page)
    xs = page.evaluate("() => document.getElementById('chart').data[0].x.map((d) => d.getTime())")
    inside = [x for x in xs if window[0] <= x <= window[1]]
    assert 95 <= len(inside) <= 105 and len(xs) - len(inside) <= 2
    assert max(drawn[f"host-{SPIKY:02d}"]) == SPIKE
    assert len(held) >= 1 and page.locator("#chart").get_attribute("data-points") == str(
        sum(map(len, answer.values()))
    )
    for route in held:
        route.continue_()
    page.unroute("**/api/v1/query_range*")
    # the finer answer replaces it: a step of 1 s over the 5 minutes
    page.wait_for_function(
        "() => /step 1s/.test(document.getElementById('status').textContent)", timeout=60_000
    )
    assert max(_drawn(page)[f"host-{SPIKY:02d}"]) == SPIKE
    assert page.errors == []
    page.context.close()
