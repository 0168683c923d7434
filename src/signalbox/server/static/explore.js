// The metric explorer: runs the query in the URL against /api/v1/query_range and draws it.
// Everything shown comes from the API as JSON; label text reaches the page only through
// textContent or, for Plotly (which reads a little HTML in legends), escaped first.
(function () {
  "use strict";
  var RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400, "7d": 604800, "30d": 2592000 };
  var MAX_POINTS = 1500; // per series: steps are chosen so a chart never asks for more
  var form = document.getElementById("explore");
  var input = document.getElementById("query");
  var rangeSel = document.getElementById("range");
  var refresh = document.getElementById("refresh");
  var status = document.getElementById("status");
  var chart = document.getElementById("chart");
  var timer = null;
  var named = false; // the metric names (a datalist for the query box) are asked once
  // The page loads Plotly (4.8 MB) after this script, both deferred: the query is asked while
  // the browser still fetches and parses Plotly, and drawn once Plotly has run (every deferred
  // script has run by DOMContentLoaded).
  var plotted = new Promise(function (resolve) {
    if (window.Plotly || document.readyState === "complete") { resolve(); return; }
    document.addEventListener("DOMContentLoaded", function () { resolve(); });
    window.addEventListener("load", function () { resolve(); });
  }).then(function () {
    if (!window.Plotly) throw new Error("the chart library (/static/plotly.min.js) did not load");
  });
  var zoom = null; // [startSec, endSec] after a drag-zoom; cleared by a new range

  function escapeHtml(s) {
    // Plotly's legends read tags (<b>, <a href>) and decode &lt; &gt; &amp;: those three are
    // what a label value must not be taken for (quotes are not special outside a tag)
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function seriesName(metric) {
    var name = metric.__name__ || "";
    var parts = Object.keys(metric).filter(function (k) { return k !== "__name__"; }).sort()
      .map(function (k) { return k + '="' + metric[k] + '"'; });
    return name + (parts.length ? "{" + parts.join(", ") + "}" : "") || "{}";
  }

  function dark() {
    var t = document.documentElement.dataset.theme;
    return t ? t === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  function setUrl() {
    var p = new URLSearchParams();
    p.set("query", input.value);
    p.set("range", rangeSel.value);
    if (zoom) { p.set("start", zoom[0].toFixed(3)); p.set("end", zoom[1].toFixed(3)); }
    if (refresh.checked) p.set("refresh", "1");
    history.replaceState(null, "", "/explore?" + p.toString());
  }

  function window_() {
    if (zoom) return zoom;
    var end = Date.now() / 1000;
    return [end - (RANGES[rangeSel.value] || 3600), end];
  }

  function run() {
    var q = input.value.trim();
    setUrl();
    if (!q) { status.textContent = "Type a PromQL query."; return; }
    var w = window_();
    var step = Math.max(1, Math.ceil((w[1] - w[0]) / MAX_POINTS));
    var url = "/api/v1/query_range?" + new URLSearchParams({
      query: q, start: w[0].toFixed(3), end: w[1].toFixed(3), step: String(step)
    }).toString();
    status.textContent = "Running…";
    var t0 = performance.now();
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { return [r.status, body]; }); })
      .then(function (res) {
        var body = res[1];
        if (body.status !== "success") {
          status.textContent = "Error: " + (body.error || ("HTTP " + res[0]));
          status.className = "error small";
          return;
        }
        var ms = performance.now() - t0;
        return plotted.then(function () {
          draw(body.data.result, step, ms, body.warnings || [], w);
        });
      })
      .catch(function (e) { status.textContent = "Error: " + e; status.className = "error small"; })
      // the label browser and the name list wait for the chart: their requests would share
      // the server and this page's one thread with the answer that is waited for
      .then(function () { loadLabels(q); if (!named) { named = true; names(); } });
  }

  // Every answer is drawn as SVG lines of at most a few points a pixel column: the answer's
  // points, decimated (decimate.js, M4), so each column's highest and lowest stay drawn. With
  // no GPU (software GL), WebGL's scattergl took seconds to show 100k points; SVG of 100k
  // points or fewer, a fraction of that (bench/chart_points.py).
  var MARGIN = { l: 60, r: 20, t: 10, b: 40 };
  var shown = null; // what is drawn: the answer in full, kept so a zoom or a resize decimates again

  function columns() {
    // the plot area's pixel columns (device pixels, up to 2 a CSS pixel: lines are drawn there)
    var css = Math.max(1, chart.clientWidth - MARGIN.l - MARGIN.r);
    return Math.ceil(css * Math.min(2, Math.max(1, window.devicePixelRatio || 1)));
  }

  function draw(result, step, ms, warnings, w) {
    var points = 0;
    var series = result.map(function (s) {
      var n = s.values.length, xs = new Float64Array(n), ys = new Float64Array(n);
      for (var i = 0; i < n; i++) {
        xs[i] = s.values[i][0] * 1000;
        ys[i] = parseFloat(s.values[i][1]);
      }
      points += n;
      return { name: escapeHtml(seriesName(s.metric)), xs: xs, ys: ys };
    });
    shown = { series: series, window: [w[0] * 1000, w[1] * 1000] };
    chart.dataset.points = String(points);
    chart.dataset.series = String(series.length);
    render(shown.window);
    status.className = "muted small";
    status.textContent = series.length + " series, " + points + " points, step " + step + "s, " +
      Math.round(ms) + " ms" + (warnings.length ? " · " + warnings.join("; ") : "");
  }

  // The kept answer over [x0, x1] (ms), decimated to the chart's width.
  function render(range) {
    var cols = columns(), drawn = 0;
    var traces = shown.series.map(function (s) {
      var d = window.signalboxDecimate.m4(s.xs, s.ys, range[0], range[1], cols);
      drawn += d.x.length;
      // as Dates, which Plotly shows in the browser's time zone (epoch numbers would be UTC)
      for (var i = 0; i < d.x.length; i++) d.x[i] = new Date(d.x[i]);
      return {
        // markers where points are few enough to tell apart (a lone sample is a dot, not nothing)
        x: d.x, y: d.y, type: "scatter", mode: s.xs.length <= 60 ? "lines+markers" : "lines",
        line: { width: 1.5 }, marker: { size: 4 }, name: s.name, hoverlabel: { namelength: -1 }
      };
    });
    shown.columns = cols;
    shown.range = range;
    chart.dataset.drawn = String(drawn);
    chart.dataset.columns = String(cols);
    var fg = dark() ? "#d8dee9" : "#222", grid = dark() ? "#3b4252" : "#e5e5e5";
    var layout = {
      margin: { l: MARGIN.l, r: MARGIN.r, t: MARGIN.t, b: MARGIN.b }, paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)", font: { color: fg, size: 12 },
      xaxis: { type: "date", gridcolor: grid, range: [new Date(range[0]), new Date(range[1])] },
      yaxis: { gridcolor: grid, zerolinecolor: grid },
      // past 20 series a legend would crowd out the chart: hovering names a line instead
      showlegend: traces.length <= 20, legend: { orientation: "h", y: -0.15 }, hovermode: "closest"
    };
    Plotly.react(chart, traces, layout, { responsive: true, displaylogo: false });
  }

  function loadLabels(q) {
    var m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(q.replace(/^.*?\(\s*/, ""));
    var box = document.getElementById("label-browser");
    if (!m) { box.textContent = ""; return; }
    var w = window_();
    fetch("/api/v1/series?" + new URLSearchParams({
      "match[]": m[0], start: w[0].toFixed(0), end: w[1].toFixed(0)
    }).toString(), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        box.textContent = "";
        if (body.status !== "success") return;
        var values = {};
        body.data.slice(0, 2000).forEach(function (s) {
          Object.keys(s).forEach(function (k) {
            if (k === "__name__") return;
            (values[k] = values[k] || {})[s[k]] = true;
          });
        });
        Object.keys(values).sort().forEach(function (k) {
          var row = document.createElement("div");
          var key = document.createElement("b");
          key.textContent = k + ": ";
          row.appendChild(key);
          Object.keys(values[k]).sort().slice(0, 50).forEach(function (v) {
            var a = document.createElement("button");
            a.type = "button"; a.className = "chip"; a.textContent = v;
            a.addEventListener("click", function () {
              var esc = v.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
              input.value = m[0] + "{" + k + '="' + esc + '"}';
              run();
            });
            row.appendChild(a);
          });
          box.appendChild(row);
        });
      })
      .catch(function () {});
  }

  function names() {
    fetch("/api/v1/label/__name__/values", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        var list = document.getElementById("metric-names");
        (body.data || []).slice(0, 5000).forEach(function (n) {
          var o = document.createElement("option"); o.value = n; list.appendChild(o);
        });
      }).catch(function () {});
  }

  function schedule() {
    if (timer) { clearInterval(timer); timer = null; }
    if (refresh.checked) timer = setInterval(run, 15000);
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); zoom = null; run(); });
  rangeSel.addEventListener("change", function () { zoom = null; run(); });
  refresh.addEventListener("change", function () { schedule(); setUrl(); });
  document.addEventListener("signalbox-theme", run);

  var params = new URLSearchParams(location.search);
  if (params.get("refresh") === "1") refresh.checked = true;
  var s = parseFloat(params.get("start")), e = parseFloat(params.get("end"));
  if (isFinite(s) && isFinite(e) && e > s) zoom = [s, e];
  schedule();
  run();
  // drag-zoom on the chart: draw the zoomed window at once from the kept answer (decimated
  // again, so the detail it holds shows), then ask for it again at a finer step
  var hooked = false;
  var obs = setInterval(function () {
    if (hooked || !chart.on) return;
    hooked = true; clearInterval(obs);
    chart.on("plotly_relayout", function (ev) {
      if (ev["xaxis.range[0]"] && ev["xaxis.range[1]"]) {
        zoom = [new Date(ev["xaxis.range[0]"]).getTime() / 1000, new Date(ev["xaxis.range[1]"]).getTime() / 1000];
        redraw([zoom[0] * 1000, zoom[1] * 1000]);
        run();
      } else if (ev["xaxis.autorange"]) { zoom = null; run(); }
    });
  }, 100);
  function redraw(range) {
    // after Plotly's own relayout has finished with the chart
    if (shown) setTimeout(function () { render(range); }, 0);
  }
  // a wider chart has more columns than the drawn points were decimated to
  var resized = null;
  window.addEventListener("resize", function () {
    clearTimeout(resized);
    resized = setTimeout(function () {
      if (shown && columns() !== shown.columns) render(shown.range);
    }, 200);
  });
})();
