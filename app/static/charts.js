/* Draws every <canvas data-chart> from the JSON in the <script class="chart-data"> right after it,
   on page load and whenever HTMX swaps content in. */
(function () {
  var PALETTE = ["#6366f1", "#16a34a", "#f59e0b", "#dc2626", "#0ea5e9", "#a855f7", "#64748b"];
  function draw(canvas) {
    if (canvas.dataset.drawn || typeof Chart === "undefined") return;
    var source = canvas.nextElementSibling;
    if (!source || !source.classList.contains("chart-data")) return;
    var data = JSON.parse(source.textContent);
    var kind = canvas.dataset.chart;
    var config;
    if (kind === "stacked-bar") {
      var names = Object.keys(data.series);
      config = {
        type: "bar",
        data: { labels: data.labels, datasets: names.map(function (n, i) {
          return { label: n, data: data.series[n], backgroundColor: PALETTE[i % PALETTE.length] };
        }) },
        options: { animation: false, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }
      };
    } else {
      config = {
        type: kind,
        data: { labels: data.labels, datasets: [{ data: data.values, backgroundColor: data.colors || PALETTE }] },
        options: { animation: false, plugins: { legend: { display: kind === "doughnut" } },
                   scales: kind === "doughnut" ? {} : { y: { beginAtZero: true } } }
      };
    }
    canvas.dataset.drawn = "1";
    new Chart(canvas, config);
  }
  function drawAll(root) { (root || document).querySelectorAll("canvas[data-chart]").forEach(draw); }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (e) { drawAll(e.target); });
})();
