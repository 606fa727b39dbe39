// The console's only script: keeps the page live without a reload. Every page reads without it.
// While the tab is visible, the #live region is fetched again every data-refresh milliseconds
// and swapped in place (the server escaped everything in it; no HTML is built here). A form the
// operator is filling in holds the refresh, so a click never lands on a replaced button.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var every = parseInt(live.getAttribute("data-refresh") || "0", 10);
  if (!(every > 0)) { return; }
  var busy = false;
  function holding() {
    var a = document.activeElement;
    return a && a !== document.body && live.contains(a) &&
      (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA");
  }
  function refresh() {
    if (busy || document.hidden || holding()) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Console-Refresh": "1" } })
      .then(function (r) {
        if (!r.ok || r.redirected) { throw new Error("status " + r.status); }
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) {
          live.replaceChildren.apply(live, Array.prototype.map.call(fresh.childNodes, function (n) {
            return document.importNode(n, true);
          }));
          live.setAttribute("data-refreshed", new Date().toISOString());
        }
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, every);
})();
