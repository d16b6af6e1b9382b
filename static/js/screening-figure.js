/* The chest film: a zoom button (and a click on the film) switches between the whole film
   and a 2.5x view that scrolls, with the arrow keys too once it has the focus. Delegated
   from the document, so films swapped in later (live updates, the worklist) work as well.
   Without JavaScript the button stays hidden and the film is shown whole. */
(function () {
  "use strict";
  document.documentElement.classList.add("cxr-zoom-ready");

  function setZoom(figure, on, point) {
    var frame = figure.querySelector(".cxr-frame");
    var button = figure.querySelector(".cxr-zoom");
    if (!frame || !button) { return; }
    frame.classList.toggle("zoomed", on);
    button.setAttribute("aria-pressed", on ? "true" : "false");
    if (on) {
      frame.tabIndex = 0;
      var x = point ? point.x : 0.5;
      var y = point ? point.y : 0.5;
      frame.scrollLeft = x * frame.scrollWidth - frame.clientWidth / 2;
      frame.scrollTop = y * frame.scrollHeight - frame.clientHeight / 2;
    } else {
      frame.removeAttribute("tabindex");
    }
  }

  function toggle(figure, point) {
    var frame = figure.querySelector(".cxr-frame");
    if (frame) { setZoom(figure, !frame.classList.contains("zoomed"), point); }
  }

  document.addEventListener("click", function (event) {
    var figure = event.target.closest(".cxr");
    if (!figure) { return; }
    if (event.target.closest(".cxr-zoom")) {
      toggle(figure, null);
    } else if (event.target.closest(".cxr-frame img")) {
      var box = event.target.getBoundingClientRect();
      toggle(figure, {x: (event.clientX - box.left) / box.width, y: (event.clientY - box.top) / box.height});
    }
  });
})();
