/* Screening page: poll the small status endpoint every ~1.5 s until the screening is
   final and swap in the parts of the page that changed, without a full reload. The
   server renders those parts (the same templates as the page), so nothing is
   duplicated here. Polling backs off after errors and stops when the tab is hidden. */
(function () {
  "use strict";
  var root = document.getElementById("screening");
  if (!root || !window.fetch) { return; }
  var live = document.getElementById("screening-live");
  var figure = document.getElementById("screening-figure");
  var url = root.dataset.statusUrl;
  var delay = 1500;
  var timer = null;

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function apply(data) {
    if (data.status !== root.dataset.status) {
      live.innerHTML = data.html;
      root.dataset.status = data.status;
    }
    if (data.figure_key !== figure.dataset.key) {
      figure.innerHTML = data.figure_html;
      figure.dataset.key = data.figure_key;
    }
    root.dataset.final = data.final ? "true" : "false";
  }

  function poll() {
    if (document.hidden) { return; }  // resumed by visibilitychange
    fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin", cache: "no-store"})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        apply(data);
        delay = 1500;
        if (!data.final) { schedule(delay); }
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000);
        schedule(delay);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && root.dataset.final !== "true") { schedule(0); }
  });
  if (root.dataset.final !== "true") { schedule(delay); }
})();
