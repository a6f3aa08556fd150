// Feedback where the eye is (issue 18): on a page that comes back with errors, move the focus to
// the error summary (marked data-focus) so a keyboard or screen-reader user lands on it and the
// page scrolls there; after an action the redirect's #action-done fragment does the same for the
// notice. A static file: the CSP allows no inline scripts.
(function () {
  "use strict";
  function focus() {
    var target = document.querySelector("[data-focus]");
    if (!target && window.location.hash === "#action-done") {
      target = document.getElementById("action-done");
    }
    if (!target) return;
    if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    target.focus();
    if (target.scrollIntoView) target.scrollIntoView({ block: "center" });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", focus);
  } else {
    focus();
  }
})();
