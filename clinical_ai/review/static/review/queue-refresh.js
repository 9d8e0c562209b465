// The review queue refreshes its results by itself: every 30 seconds while the tab is shown (at once when
// it is shown again after that long), with the same filters and page (the results ask for their own URL
// again, see _queue_results.html). The page does not scroll, and a link that had the keyboard focus has
// it again after the refresh.
(function () {
  "use strict";
  var PERIOD_MS = 30000;
  var last = Date.now();
  var refocus = null;

  function refresh() {
    var results = document.getElementById("queue-results");
    if (!results || !window.htmx || document.visibilityState !== "visible") return;
    last = Date.now();
    var focused = document.activeElement;
    refocus = focused && results.contains(focused) && focused.getAttribute("href");
    window.htmx.trigger(results, "queue-refresh");
  }

  document.addEventListener("htmx:afterSettle", function () {
    var results = document.getElementById("queue-results");
    if (!refocus || !results) return;
    var links = results.querySelectorAll("a[href]");
    for (var i = 0; i < links.length; i++) {
      if (links[i].getAttribute("href") === refocus) {
        links[i].focus({ preventScroll: true });
        break;
      }
    }
    refocus = null;
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && Date.now() - last >= PERIOD_MS) refresh();
  });
  setInterval(refresh, PERIOD_MS);
})();
