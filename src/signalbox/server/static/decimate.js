// Line decimation for the charts: of a series' points, keep per pixel column the first, the
// last, the lowest and the highest (M4: Jugel et al., VLDB 2014). A line drawn through those
// is the line drawn through all of them, pixel for pixel, so no peak or dip is lost -- what a
// sample-every-k or an average would do -- and a chart draws a few points a column, however
// many the answer held. The full arrays stay with the caller: a zoom decimates them again.
(function (root) {
  "use strict";

  // the first index whose x is >= v (after <= v when `after`); xs ascending
  function bound(xs, v, after) {
    var lo = 0, hi = xs.length;
    while (lo < hi) {
      var mid = (lo + hi) >>> 1;
      if (after ? xs[mid] <= v : xs[mid] < v) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  // Indices (ascending) of the points to draw of (xs, ys) over [x0, x1] on `columns` pixel
  // columns. xs ascending; a NaN y is a gap and is kept where it is, so a gap stays a gap.
  // The nearest point outside the window on each side is kept too: lines run to the edges.
  function m4Indices(xs, ys, x0, x1, columns) {
    var n = xs.length, out = [];
    if (!n) return out;
    var start = bound(xs, x0, false), end = bound(xs, x1, true);
    var cols = Math.max(1, Math.floor(columns)), scale = x1 > x0 ? cols / (x1 - x0) : 0;
    var col = -1, first = -1, last = -1, lo = -1, hi = -1;
    function flush() {
      if (first < 0) return;
      // first <= lo, hi <= last: in x order, each once
      var a = lo < hi ? lo : hi, b = lo < hi ? hi : lo;
      out.push(first);
      if (a !== first) out.push(a);
      if (b !== a) out.push(b);
      if (last !== b) out.push(last);
      first = -1;
    }
    if (start > 0) out.push(start - 1);
    for (var i = start; i < end; i++) {
      var y = ys[i];
      if (y !== y) { flush(); out.push(i); col = -1; continue; }
      var c = Math.floor((xs[i] - x0) * scale);
      if (c >= cols) c = cols - 1;
      if (c !== col) { flush(); col = c; first = lo = hi = last = i; continue; }
      last = i;
      if (y < ys[lo]) lo = i;
      if (y > ys[hi]) hi = i;
    }
    flush();
    if (end < n) out.push(end);
    return out;
  }

  // The points themselves: {x, y} arrays of what m4Indices keeps.
  function m4(xs, ys, x0, x1, columns) {
    var keep = m4Indices(xs, ys, x0, x1, columns);
    var x = new Array(keep.length), y = new Array(keep.length);
    for (var k = 0; k < keep.length; k++) { x[k] = xs[keep[k]]; y[k] = ys[keep[k]]; }
    return { x: x, y: y };
  }

  root.signalboxDecimate = { m4: m4, m4Indices: m4Indices };
})(window);
