// The queues page: depth (with the jobs scheduled later) and oldest-age charts from the
// stored queue metrics, and the operator's buttons (retry a dead job, retry a queue's dead
// jobs, pause and resume with a reason) calling /api/v1/tasks. Values from outside reach the page only through
// textContent, or escaped for Plotly (whose legends read a little HTML).
(function () {
  "use strict";
  var RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400, "7d": 604800 };
  var rangeSel = document.getElementById("range");
  var status = document.getElementById("act-status");

  function escapeHtml(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function dark() {
    var t = document.documentElement.dataset.theme;
    return t ? t === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function fetchRange(query, start, end, step) {
    return fetch("/api/v1/query_range?" + new URLSearchParams({
      query: query, start: start.toFixed(3), end: end.toFixed(3), step: String(step)
    }).toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (body) { return body.status === "success" ? body.data.result : null; });
  }

  // A chart of data-query, one line per queue; with data-also (the depth chart: the jobs
  // scheduled later, which a closed gate's deferrals pile up) a dotted line per queue in
  // the same colour, so a backlog held back by a gate shows beside what is ready.
  function draw(box) {
    var end = Date.now() / 1000, start = end - (RANGES[rangeSel.value] || 3600);
    var step = Math.max(1, Math.ceil((end - start) / 600));
    var wanted = [fetchRange(box.dataset.query, start, end, step)];
    if (box.dataset.also) wanted.push(fetchRange(box.dataset.also, start, end, step));
    Promise.all(wanted).then(function (results) {
      if (results.some(function (r) { return r === null; })) return;
      var points = 0, colours = {}, traces = [];
      results.forEach(function (series, i) {
        series.forEach(function (s) {
          var queue = s.metric.queue || "{}";
          if (!(queue in colours)) colours[queue] = COLORS[Object.keys(colours).length % COLORS.length];
          points += s.values.length;
          traces.push({
            x: s.values.map(function (v) { return new Date(v[0] * 1000); }),
            y: s.values.map(function (v) { return parseFloat(v[1]); }),
            type: "scatter", mode: s.values.length <= 60 ? "lines+markers" : "lines",
            line: { width: 1.5, shape: "hv", color: colours[queue], dash: i ? "dot" : "solid" },
            marker: { size: 4 }, legendgroup: escapeHtml(queue),
            name: escapeHtml(queue) + (i ? " · " + escapeHtml(box.dataset.alsoLabel || "") : "")
          });
        });
      });
      var fg = dark() ? "#d8dee9" : "#222", grid = dark() ? "#3b4252" : "#e5e5e5";
      Plotly.react(box, traces, {
        margin: { l: 60, r: 20, t: 10, b: 40 }, paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)", font: { color: fg, size: 12 },
        xaxis: { type: "date", gridcolor: grid, range: [new Date(start * 1000), new Date(end * 1000)] },
        yaxis: { gridcolor: grid, zerolinecolor: grid, rangemode: "tozero" },
        showlegend: true, legend: { orientation: "h", y: -0.2 }, hovermode: "closest"
      }, { responsive: true, displaylogo: false });
      box.dataset.points = String(points);
      box.dataset.series = String(traces.length);
      if (box.dataset.also) box.dataset.alsoSeries = String(results[1].length);
    }).catch(function () {});
  }
  function drawAll() {
    ["depth-chart", "age-chart"].forEach(function (id) {
      var box = document.getElementById(id);
      if (box) draw(box);
    });
  }

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  function post(what, path, body) {
    status.className = "small muted";
    status.textContent = what + "…";
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    var token = csrf();
    if (token) headers["X-CSRF-Token"] = token;
    return fetch("/api/v1/tasks/" + path, {
      method: "POST", headers: headers, credentials: "same-origin", body: JSON.stringify(body)
    }).then(function (r) { return r.json().then(function (b) { return [r.status, b]; }); })
      .then(function (res) {
        if (res[1].status === "success") {
          status.className = "small";
          status.textContent = what + ": done";
          setTimeout(function () { location.reload(); }, 400);
        } else {
          status.className = "small error";
          status.textContent = what + " refused (" + res[0] + "): " + (res[1].error || "");
        }
      })
      .catch(function (e) { status.className = "small error"; status.textContent = String(e); });
  }

  // a retry asks why (kept in the audit trail and the log, as a pause's reason); Cancel
  // retries nothing, an empty answer retries without a reason (the API's reason is optional)
  function retryBody(what) {
    var answer = window.prompt(what + ": why? (kept in the audit trail; may be left empty)", "");
    if (answer === null) return null;
    answer = answer.trim();
    return answer ? { reason: answer } : {};
  }
  Array.prototype.forEach.call(document.querySelectorAll("button.act-retry"), function (b) {
    b.addEventListener("click", function () {
      var what = "retry job " + b.dataset.job, body = retryBody(what);
      if (body) post(what, "jobs/" + encodeURIComponent(b.dataset.job) + "/retry", body);
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("button.act-retry-dead"), function (b) {
    b.addEventListener("click", function () {
      var what = "retry dead jobs of " + b.dataset.queue, body = retryBody(what);
      if (body) post(what, "queues/" + encodeURIComponent(b.dataset.queue) + "/retry_dead", body);
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("form.act-pause"), function (f) {
    f.addEventListener("submit", function (e) {
      e.preventDefault();
      var action = f.dataset.action;
      post(action + " " + f.dataset.queue,
           "queues/" + encodeURIComponent(f.dataset.queue) + "/" + action,
           { reason: f.elements.reason.value });
    });
  });

  if (rangeSel) rangeSel.addEventListener("change", drawAll);
  document.addEventListener("signalbox-theme", drawAll);
  drawAll();
  setInterval(drawAll, 15000);
})();
