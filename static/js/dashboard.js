/* Dashboard charts. The figures come from the page (json_script elements named by each
   canvas's data-source); every chart also has a table of the same figures, so the page
   reads fine without this script. Series differ by line style, point shape or fill
   pattern as well as colour. */
(function () {
  "use strict";
  if (!window.Chart) { return; }

  var COLOURS = {
    infected: "#b3261e", carrier: "#86195f",
    covid: "#b3261e", pneumonia: "#a05a00", normal: "#1d6b3a"
  };
  var LINE_STYLES = {
    infected: { borderDash: [], pointStyle: "circle" },
    carrier: { borderDash: [6, 4], pointStyle: "triangle" }
  };
  var PATTERNS = { covid: "solid", pneumonia: "stripes", normal: "dots" };
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#3d4754";
  Chart.defaults.animation = reduceMotion ? false : Chart.defaults.animation;

  function figures(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function shortDay(iso) {
    return iso.slice(5);  /* MM-DD: the table has the full dates */
  }

  /* A fill that tells series apart without colour: plain, diagonal stripes or dots. */
  function pattern(kind, colour) {
    if (kind === "solid") { return colour; }
    var tile = document.createElement("canvas");
    tile.width = tile.height = 8;
    var ctx = tile.getContext("2d");
    ctx.fillStyle = colour;
    ctx.globalAlpha = 0.35;
    ctx.fillRect(0, 0, 8, 8);
    ctx.globalAlpha = 1;
    if (kind === "stripes") {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(0, 8); ctx.lineTo(8, 0);
      ctx.moveTo(-2, 2); ctx.lineTo(2, -2);
      ctx.moveTo(6, 10); ctx.lineTo(10, 6);
      ctx.stroke();
    } else {
      ctx.beginPath();
      ctx.arc(4, 4, 1.8, 0, 2 * Math.PI);
      ctx.fill();
    }
    return ctx.createPattern(tile, "repeat");
  }

  var common = {
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { position: "bottom", labels: { usePointStyle: true, boxWidth: 14 } } },
    scales: {
      x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
      y: { beginAtZero: true, ticks: { precision: 0 }, grid: { color: "#e6eaef" } }
    }
  };

  function lineChart(canvas, data) {
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: data.days.map(shortDay),
        datasets: data.series.map(function (s) {
          var style = LINE_STYLES[s.key] || {};
          return {
            label: s.label, data: s.counts, borderColor: COLOURS[s.key], backgroundColor: COLOURS[s.key],
            borderDash: style.borderDash, pointStyle: style.pointStyle, pointRadius: 3, borderWidth: 2, tension: 0
          };
        })
      },
      options: common
    });
  }

  function barChart(canvas, data) {
    var options = JSON.parse(JSON.stringify(common));
    options.plugins.legend.labels.usePointStyle = false;
    options.scales.x.stacked = true;
    options.scales.y.stacked = true;
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.days.map(shortDay),
        datasets: data.series.map(function (s) {
          return {
            label: s.label, data: s.counts, backgroundColor: pattern(PATTERNS[s.key] || "solid", COLOURS[s.key]),
            borderColor: COLOURS[s.key], borderWidth: 1
          };
        })
      },
      options: options
    });
  }

  var DRAW = { line: lineChart, bar: barChart };
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var data = figures(canvas.dataset.source);
    var draw = DRAW[canvas.dataset.chart];
    if (data && draw) { draw(canvas, data); }
  });
})();
