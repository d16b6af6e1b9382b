/* Review worklist: keyboard shortcuts (shown on the page and in aria-keyshortcuts).
   j / k pick the next / previous screening (htmx loads it beside the list), c confirms
   the AI label, o overrides it, z zooms the film, h shows the heatmap, Ctrl+Enter
   records the review. Shortcuts are ignored while typing in a field. htmx refreshes
   the list every few seconds; the row of the screening on show stays marked. */
(function () {
  "use strict";
  if (!document.querySelector(".queue-layout")) { return; }

  function pane() { return document.getElementById("reading-pane"); }
  function form() { return document.getElementById("review-form"); }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#review-queue tr[data-screening]")); }

  function mark() {
    var current = pane() ? pane().dataset.screening : "";
    rows().forEach(function (row) {
      var on = row.dataset.screening === current;
      var link = row.querySelector("a.queue-open");
      row.classList.toggle("selected", on);
      if (on) { link.setAttribute("aria-current", "true"); } else { link.removeAttribute("aria-current"); }
    });
  }

  function move(step) {
    var list = rows();
    if (!list.length) { return; }
    var current = pane() ? pane().dataset.screening : "";
    var index = list.findIndex(function (row) { return row.dataset.screening === current; });
    var next = list[index < 0 ? 0 : Math.max(0, Math.min(list.length - 1, index + step))];
    var link = next.querySelector("a.queue-open");
    link.focus();
    if (next.dataset.screening !== current) { link.click(); }
  }

  function decide(decision) {
    var f = form();
    if (!f) { return; }
    f.querySelector('input[name="decision"][value="' + decision + '"]').checked = true;
    var label = f.querySelector('select[name="clinical_label"]');
    if (decision === "confirm") {
      label.value = f.dataset.aiLabel;
      var signs = f.querySelector('input[name="radiological_signs"]:checked') ||
        f.querySelector('input[name="radiological_signs"]');
      signs.focus();
    } else {
      if (label.value === f.dataset.aiLabel) { label.value = ""; }
      label.focus();
    }
  }

  function press(figure, selector) {
    var control = figure && figure.querySelector(selector);
    if (control) { control.click(); }
  }

  function typing(target) {
    if (target.isContentEditable || target.closest("textarea, select")) { return true; }
    return target.tagName === "INPUT" && ["radio", "checkbox", "button", "submit"].indexOf(target.type) < 0;
  }

  document.addEventListener("keydown", function (event) {
    var f = form();
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && f && f.contains(event.target)) {
      event.preventDefault();
      f.requestSubmit();
      return;
    }
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var figure = document.querySelector("#reading-pane .cxr");
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "c": decide("confirm"); break;
      case "o": decide("override"); break;
      case "z": press(figure, ".cxr-zoom"); break;
      case "h": press(figure, ".heatmap-toggle"); break;
      default: return;
    }
    event.preventDefault();
  });

  document.addEventListener("htmx:afterSettle", mark);
})();
