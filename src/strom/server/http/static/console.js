// Throughput charts (uPlot) for every .chart[data-src] on the page, refreshed every two seconds
// while the chart is on the page; set up again after each htmx swap.
(function () {
  var timers = [];
  function series(data) {
    return [data.t, data.bytes_in, data.bytes_out, data.records_in];
  }
  function draw(el) {
    var src = el.getAttribute("data-src");
    var plot = null;
    function refresh() {
      if (!document.body.contains(el)) { return false; }
      fetch(src).then(function (r) { return r.json(); }).then(function (data) {
        if (plot === null) {
          plot = new uPlot({
            width: Math.max(300, el.clientWidth || 800), height: 220,
            series: [{}, {label: "bytes in/s", stroke: "#1f6feb"},
                     {label: "bytes out/s", stroke: "#12b76a"},
                     {label: "records in/s", stroke: "#f79009", scale: "records"}],
            axes: [{}, {label: "bytes/s"}, {side: 1, scale: "records", label: "records/s"}],
          }, series(data), el);
          el.setAttribute("data-ready", "true");
        } else {
          plot.setData(series(data));
        }
      });
      return true;
    }
    refresh();
    var id = setInterval(function () { if (!refresh()) { clearInterval(id); } }, 2000);
    timers.push(id);
  }
  function setup() {
    document.querySelectorAll(".chart[data-src]").forEach(function (el) {
      if (!el.hasAttribute("data-ready")) { draw(el); }
    });
  }
  document.addEventListener("DOMContentLoaded", setup);
  document.addEventListener("htmx:afterSettle", setup);
})();
