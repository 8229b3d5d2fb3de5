// Sizes and positions the server computed (timeline segments, due-date markers)
// arrive as data- attributes and are applied here through the CSSOM: the
// Content-Security-Policy forbids style attributes in the markup.
(function () {
  "use strict";

  function apply(root) {
    var elements = Array.prototype.slice.call(
      root.querySelectorAll("[data-flex], [data-left]")
    );
    if (root.matches && root.matches("[data-flex], [data-left]")) {
      elements.push(root);
    }
    elements.forEach(function (element) {
      if (element.dataset.flex !== undefined) {
        element.style.flex = element.dataset.flex + " 1 0";
      }
      if (element.dataset.left !== undefined) {
        element.style.left = element.dataset.left + "%";
      }
    });
  }

  // Called for the page once loaded and again for each fragment htmx swaps in.
  htmx.onLoad(apply);
})();
