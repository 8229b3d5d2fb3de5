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

// Live pages say when they stop being live. A page refreshed by htmx polling
// shows "connection lost · last updated N s ago" (counting up) as soon as one
// refresh fails, and hides it again when a refresh succeeds. The time counts from
// the last successful refresh (or the page load).
(function () {
  "use strict";

  var lastUpdated = Date.now();
  var timer = null;

  function banner() {
    return document.getElementById("connection-lost");
  }

  function render() {
    var element = banner();
    if (!element) {
      return;
    }
    var age = element.querySelector("[data-connection-age]");
    if (age) {
      age.textContent = String(Math.max(0, Math.round((Date.now() - lastUpdated) / 1000)));
    }
  }

  function lost() {
    var element = banner();
    if (!element) {
      return;
    }
    render();
    element.hidden = false;
    document.body.classList.add("connection-lost-stale");
    if (timer === null) {
      timer = window.setInterval(render, 1000);
    }
  }

  function restored() {
    lastUpdated = Date.now();
    var element = banner();
    if (element) {
      element.hidden = true;
    }
    document.body.classList.remove("connection-lost-stale");
    if (timer !== null) {
      window.clearInterval(timer);
      timer = null;
    }
  }

  // A network failure (server down) or an error answer (5xx, a proxy's 502).
  document.body.addEventListener("htmx:sendError", lost);
  document.body.addEventListener("htmx:responseError", lost);
  document.body.addEventListener("htmx:timeout", lost);
  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail && event.detail.successful) {
      restored();
    }
  });
})();

// The deploy form: the ref box's placeholder follows the environment chosen (its
// default ref, which an empty ref deploys), read from the runner preview htmx swaps in.
(function () {
  "use strict";
  document.body.addEventListener("htmx:afterSwap", function () {
    var preview = document.getElementById("runner-preview");
    var ref = document.getElementById("id_ref");
    if (preview && ref) {
      ref.placeholder =
        preview.getAttribute("data-default-ref") || "the environment's default ref";
    }
  });
})();
