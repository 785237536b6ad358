// An in-page update that fails says so. htmx leaves the page as it was when the server refuses
// a request or does not answer, so a search, a live assessment or a click on "Acknowledge"
// could fail without a word (a session ended in another tab, a new CSRF token, a restart).
(function () {
  "use strict";

  function show(text) {
    var box = document.getElementById("update-error");
    if (box) {
      box.textContent = text;
      box.hidden = false;
    }
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var answer = xhr.status + (xhr.statusText ? " " + xhr.statusText : "");
    show(
      "This page could not be updated: the server answered " +
        answer +
        ". Reload the page and try again."
    );
  });

  document.addEventListener("htmx:sendError", function () {
    show("This page could not be updated: the server did not answer. Try again in a moment.");
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var box = document.getElementById("update-error");
    if (box && event.detail.successful) {
      box.hidden = true;
    }
  });
})();
