/* Drag-to-zoom on a time chart sets the whole view's range: the URL gets ?from=..&to=..
 * (without range=), as a typed absolute range would, and every page then shows that range.
 *
 * The browser writes the URL and announces it the way Dash's own links do (a history entry and
 * the "_dashprivate_pushstate" event that dcc.Location listens to); the dashboard's URL
 * callback (dashboard/app.py) then sets the filters from it. Charts inside an element of class
 * "own-range" (Backups' 30 days, not the shared range) zoom only themselves.
 */
(function () {
  "use strict";
  var attached = new WeakSet();

  // Plotly's dates on a UTC axis: "2026-12-07 04:12:33.1234" (fewer parts when round).
  function toIso(value) {
    var moment = new Date(String(value).replace(" ", "T") + "Z");
    return isNaN(moment.getTime()) ? null : moment.toISOString();
  }

  function onRelayout(graph, event) {
    if (!event || graph.closest(".own-range")) {
      return;
    }
    var first = event["xaxis.range[0]"];
    var last = event["xaxis.range[1]"];
    if (first === undefined && Array.isArray(event["xaxis.range"])) {
      first = event["xaxis.range"][0];
      last = event["xaxis.range"][1];
    }
    var axis = graph.layout && graph.layout.xaxis;
    if (first === undefined || last === undefined || !axis || axis.type !== "date") {
      return;
    }
    var from = toIso(first);
    var to = toIso(last);
    if (!from || !to || from >= to) {
      return;
    }
    var params = new URLSearchParams(window.location.search);
    params.delete("range");
    params.set("from", from);
    params.set("to", to);
    window.history.pushState({}, "", window.location.pathname + "?" + params.toString());
    window.dispatchEvent(new CustomEvent("_dashprivate_pushstate"));
  }

  function attach() {
    document.querySelectorAll(".js-plotly-plot").forEach(function (graph) {
      if (!attached.has(graph) && typeof graph.on === "function") {
        attached.add(graph);
        graph.on("plotly_relayout", function (event) {
          onRelayout(graph, event);
        });
      }
    });
  }

  new MutationObserver(attach).observe(document.documentElement, {
    childList: true,
    subtree: true,
  });
})();
