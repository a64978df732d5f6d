// The console's charts, drawn with uPlot from the tables on the page (no data of their own: the chart
// and the table for screen readers cannot disagree). A table opts in with data-chart="time" (its first
// column an ISO time, in UTC) or data-chart="index" (its first column a label, e.g. an issue's date);
// every other column whose header has data-series is one line. Lines differ in dash pattern and width,
// not only in colour, so the chart reads in grey too. Without JavaScript the tables stay as they are.
(function () {
  "use strict";
  var COLOURS = ["#1a5fb4", "#c64600", "#1a7f37", "#6f42c1"];
  var DASHES = [[], [8, 4], [2, 3], [12, 3, 2, 3]];

  function number(text) {
    var value = parseFloat(String(text).replace(/[,%\s]/g, ""));
    return isNaN(value) ? null : value;
  }

  function draw(table) {
    var kind = table.getAttribute("data-chart");
    var headers = Array.prototype.slice.call(table.querySelectorAll("thead th"));
    var series = [];
    headers.forEach(function (th, index) {
      if (index > 0 && th.hasAttribute("data-series")) series.push({ index: index, label: th.textContent.trim() });
    });
    var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr"));
    if (!series.length || rows.length < 2) return;
    var xs = [], labels = [];
    var ys = series.map(function () { return []; });
    rows.forEach(function (row, position) {
      var cells = row.children;
      var first = cells[0].getAttribute("data-value") || cells[0].textContent.trim();
      labels.push(cells[0].textContent.trim());
      xs.push(kind === "time" ? Date.parse(first) / 1000 : position);
      series.forEach(function (one, n) {
        var cell = cells[one.index];
        ys[n].push(number(cell ? (cell.getAttribute("data-value") || cell.textContent) : ""));
      });
    });
    var holder = document.createElement("div");
    holder.className = "chart";
    holder.setAttribute("aria-hidden", "true"); // the table below says the same to a screen reader
    // Before the table's scrolling box, if it has one: the chart stays in view, the rows scroll.
    var box = table.closest(".scroll") || table;
    box.parentNode.insertBefore(holder, box);
    var width = Math.max(280, Math.min(holder.clientWidth || 600, 900));
    var options = {
      width: width,
      height: 240,
      scales: { x: { time: kind === "time" } },
      axes: [
        kind === "time" ? {} : { values: function (u, ticks) { return ticks.map(function (t) { return labels[t] || ""; }); } },
        {}
      ],
      series: [{}].concat(series.map(function (one, n) {
        return {
          label: one.label,
          stroke: COLOURS[n % COLOURS.length],
          width: n === 0 ? 2.5 : 1.5,
          dash: DASHES[n % DASHES.length],
          points: { show: true, size: 5 + n }
        };
      }))
    };
    new uPlot(options, [xs].concat(ys), holder); // eslint-disable-line no-new, no-undef
  }

  function drawAll() {
    if (typeof uPlot === "undefined") return;
    Array.prototype.forEach.call(document.querySelectorAll("table[data-chart]"), draw);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();
