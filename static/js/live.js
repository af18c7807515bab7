/* Live regions: every few seconds, fetch this page again and swap each element marked
   [data-live-region] (matched by id) for its fresh copy. The pages work without it; it
   pauses while the tab is hidden and never replaces a region holding the keyboard focus
   or an open <details>. The interval is <body data-live-interval="5000"> (ms). */
(function () {
  "use strict";
  var interval = parseInt(document.body.dataset.liveInterval || "5000", 10);
  var busy = false;

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    document.querySelectorAll("[data-live-region][id]").forEach(function (old) {
      var next = fresh.getElementById(old.id);
      if (!next || old.contains(document.activeElement)) return;
      if (old.querySelector("details[open]")) return;
      if (old.innerHTML !== next.innerHTML) {
        old.replaceWith(next);
        document.dispatchEvent(new CustomEvent("live:updated", { detail: { id: old.id } }));
      }
    });
    document.body.dataset.liveUpdatedAt = new Date().toISOString();
  }

  function tick() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, { headers: { "X-Live-Refresh": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
      .then(function (html) { if (html) swap(html); })
      .catch(function () {})
      .finally(function () { busy = false; });
  }

  if (document.querySelector("[data-live-region][id]")) {
    window.setInterval(tick, interval);
  }
})();
