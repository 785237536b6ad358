// What every in-page update (htmx) needs, on every page.
(function () {
  "use strict";

  // An update that fails says so. htmx leaves the page as it was when the server refuses a
  // request or does not answer, so a search, a live assessment or a click on "Acknowledge"
  // could fail without a word (a session ended in another tab, a new CSRF token, a restart).
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

  // Paging keeps the focus: "Next" replaces the list it sits in, so the focus would fall back
  // to the top of the page. It goes to the same link in the new list ("Next" again), or to
  // the other one on the last or first page.
  var paging = null;

  document.addEventListener("htmx:beforeRequest", function (event) {
    var link = event.detail.elt;
    var target = event.detail.target;
    paging =
      link && link.closest && link.closest(".pagination") && target && target.id
        ? { region: target.id, text: link.textContent.trim() }
        : null;
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!paging) {
      return;
    }
    var region = document.getElementById(paging.region);
    var links = region ? region.querySelectorAll(".pagination a") : [];
    var same = Array.prototype.filter.call(links, function (link) {
      return link.textContent.trim() === paging.text;
    });
    paging = null;
    var control = same[0] || links[0];
    if (control) {
      control.focus();
    }
  });
})();
