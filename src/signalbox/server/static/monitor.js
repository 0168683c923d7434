// A monitor's page: its query drawn with its thresholds, its state history as a timeline,
// and the operator's buttons (silence, acknowledge, unsilence, drill) calling the write API.
// Values from outside reach the page only through textContent, or escaped for Plotly.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("monitor-data").textContent);
  var RANGES = { "1h": 3600, "6h": 21600, "1d": 86400, "7d": 604800 };
  var COLORS = { warning: "#d29922", critical: "#cf222e", recover: "#1a7f37" };
  var SEVERITY = { OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3 };
  var api = "/api/v1/monitors/" + encodeURIComponent(data.name);

  function escapeHtml(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function dark() {
    var t = document.documentElement.dataset.theme;
    return t ? t === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  function baseLayout() {
    var fg = dark() ? "#d8dee9" : "#222", grid = dark() ? "#3b4252" : "#e5e5e5";
    return {
      margin: { l: 60, r: 20, t: 10, b: 40 }, paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)", font: { color: fg, size: 12 },
      xaxis: { type: "date", gridcolor: grid }, yaxis: { gridcolor: grid, zerolinecolor: grid },
      showlegend: true, legend: { orientation: "h", y: -0.2 }, hovermode: "closest"
    };
  }
  function seriesName(metric) {
    var parts = Object.keys(metric).filter(function (k) { return k !== "__name__"; }).sort()
      .map(function (k) { return k + '="' + metric[k] + '"'; });
    return (metric.__name__ || "") + "{" + parts.join(", ") + "}";
  }

  // -- the query with its thresholds --------------------------------------------------------
  var chart = document.getElementById("chart");
  var rangeSel = document.getElementById("range");
  function drawQuery() {
    if (!chart || !data.query) return;
    var end = Date.now() / 1000, start = end - (RANGES[rangeSel.value] || 21600);
    var step = Math.max(1, Math.ceil((end - start) / 1000));
    fetch("/api/v1/query_range?" + new URLSearchParams({
      query: data.query, start: start.toFixed(3), end: end.toFixed(3), step: String(step)
    }).toString(), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        if (body.status !== "success") return;
        // SVG lines decimated per pixel column (decimate.js, M4: each column's first, last,
        // lowest and highest point, so no peak crossing a threshold is lost): WebGL's
        // scattergl took seconds to a first frame without a GPU, as on the explorer.
        var margin = baseLayout().margin;
        var cols = Math.ceil(Math.max(1, chart.clientWidth - margin.l - margin.r) *
                             Math.min(2, Math.max(1, window.devicePixelRatio || 1)));
        var points = 0, drawn = 0;
        var traces = body.data.result.map(function (s) {
          points += s.values.length;
          var xs = new Float64Array(s.values.length), ys = new Float64Array(s.values.length);
          s.values.forEach(function (v, i) { xs[i] = v[0] * 1000; ys[i] = parseFloat(v[1]); });
          var kept = window.signalboxDecimate.m4(xs, ys, start * 1000, end * 1000, cols);
          drawn += kept.x.length;
          return {
            x: kept.x.map(function (ms) { return new Date(ms); }), y: kept.y, type: "scatter",
            mode: s.values.length <= 60 ? "lines+markers" : "lines", line: { width: 1.5 }, marker: { size: 4 },
            name: escapeHtml(seriesName(s.metric))
          };
        });
        var shapes = [], notes = [];
        Object.keys(data.thresholds).forEach(function (level) {
          var t = data.thresholds[level];
          shapes.push({
            type: "line", xref: "paper", x0: 0, x1: 1, y0: t.value, y1: t.value,
            line: { color: COLORS[level], width: 1.5, dash: level === "recover" ? "dot" : "dash" }
          });
          notes.push({
            xref: "paper", x: 1, xanchor: "right", y: t.value, yanchor: "bottom",
            text: level + " " + escapeHtml(t.op) + " " + t.value, showarrow: false,
            font: { color: COLORS[level], size: 11 }
          });
        });
        var layout = baseLayout();
        layout.shapes = shapes; layout.annotations = notes;
        layout.xaxis.range = [new Date(start * 1000), new Date(end * 1000)];
        Plotly.react(chart, traces, layout, { responsive: true, displaylogo: false });
        chart.dataset.points = String(points);
        chart.dataset.drawn = String(drawn);
        chart.dataset.thresholds = String(shapes.length);
      }).catch(function () {});
  }

  // -- the state timeline -------------------------------------------------------------------
  function drawTimeline() {
    var box = document.getElementById("timeline");
    var changes = data.history.filter(function (h) { return h.event === "state" && h.state; });
    if (!box || !changes.length) return;
    var by = {};
    changes.slice().reverse().forEach(function (h) {
      (by[h.series] = by[h.series] || []).push(h);
    });
    var now = new Date();
    var traces = Object.keys(by).map(function (k) {
      var xs = by[k].map(function (h) { return new Date(h.at); });
      var ys = by[k].map(function (h) { return SEVERITY[h.state]; });
      xs.push(now); ys.push(ys[ys.length - 1]);
      return { x: xs, y: ys, type: "scatter", mode: "lines", line: { shape: "hv", width: 2 },
               name: escapeHtml(k || "{}") };
    });
    var layout = baseLayout();
    layout.yaxis.tickvals = [0, 1, 2, 3];
    layout.yaxis.ticktext = ["OK", "UNKNOWN", "WARNING", "CRITICAL"];
    layout.yaxis.range = [-0.3, 3.3];
    layout.margin.l = 90;
    box.style.height = "200px";
    Plotly.react(box, traces, layout, { responsive: true, displaylogo: false });
  }

  // -- operating ----------------------------------------------------------------------------
  var status = document.getElementById("act-status");
  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  function post(what, body) {
    status.className = "small muted";
    status.textContent = what + "…";
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    var token = csrf();
    if (token) headers["X-CSRF-Token"] = token;
    return fetch(api + "/" + what, {
      method: "POST", headers: headers, credentials: "same-origin", body: JSON.stringify(body)
    }).then(function (r) { return r.json().then(function (b) { return [r.status, b]; }); })
      .then(function (res) {
        if (res[1].status === "success") {
          status.className = "small";
          status.textContent = what + ": done";
          setTimeout(function () { location.reload(); }, 600);
        } else {
          status.className = "small error";
          status.textContent = what + " refused (" + res[0] + "): " + (res[1].error || "");
        }
      })
      .catch(function (e) { status.className = "small error"; status.textContent = String(e); });
  }
  function onForm(id, what, fields) {
    var f = document.getElementById(id);
    if (!f) return;
    f.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = {};
      fields.forEach(function (n) { body[n] = f.elements[n].value; });
      post(what, body);
    });
  }
  onForm("act-silence", "silence", ["duration", "reason"]);
  onForm("act-ack", "ack", ["reason"]);
  var un = document.getElementById("act-unsilence");
  if (un) un.addEventListener("click", function () { post("unsilence", {}); });
  var dr = document.getElementById("act-drill");
  if (dr) dr.addEventListener("click", function () {
    if (confirm("Send a TEST notification through this monitor's notifiers now?")) post("drill", {});
  });

  if (rangeSel) rangeSel.addEventListener("change", drawQuery);
  document.addEventListener("signalbox-theme", function () { drawQuery(); drawTimeline(); });
  drawQuery();
  drawTimeline();
})();
