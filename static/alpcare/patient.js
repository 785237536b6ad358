// Patient page: an action on a card or a follow-up (acknowledge, override, snooze, undo, mark
// done) replaces the live panel in place. The focus stays with that card or follow-up, on the
// control that took the place of the one used (Undo after Acknowledge, Acknowledge after Undo),
// so that a keyboard or screen-reader user goes on from where they were, not from the top of
// the page nor from the card's list of sources.
(function () {
  "use strict";

  var kept = null;

  function keyOf(element) {
    var holder = element && element.closest && element.closest("[data-code], [data-follow-up]");
    if (!holder) {
      return null;
    }
    var name = holder.hasAttribute("data-code") ? "data-code" : "data-follow-up";
    return { name: name, value: holder.getAttribute(name) };
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail.target;
    if (target && target.id === "patient-live") {
      kept = keyOf(event.detail.elt) || keyOf(document.activeElement);
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!kept) {
      return;
    }
    var panel = document.getElementById("patient-live");
    var selector = "[" + kept.name + '="' + CSS.escape(kept.value) + '"]';
    var holder = panel && panel.querySelector(selector);
    var control =
      holder &&
      (holder.querySelector(".card-actions button, .card-actions summary") ||
        holder.querySelector("button, summary, a[href], input, select"));
    kept = null;
    if (control) {
      control.focus();
    } else if (panel) {
      panel.setAttribute("tabindex", "-1");
      panel.focus();
    }
  });
})();
