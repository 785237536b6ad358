// Patient page: an action on a card or a follow-up (acknowledge, override, snooze, undo, mark
// done) or an added result replaces the live panel in place. The focus stays where the user
// was, so that a keyboard or screen-reader user goes on from there, not from the top of the
// page: on a card or follow-up, the control that took the place of the one used (Undo after
// Acknowledge, Acknowledge after Undo), not the card's list of sources; in the "Add a result"
// form, its first field refused, or its first field for the next result.
(function () {
  "use strict";

  var kept = null;

  function keyOf(element) {
    var holder = element && element.closest && element.closest("[data-code], [data-follow-up]");
    if (holder) {
      var name = holder.hasAttribute("data-code") ? "data-code" : "data-follow-up";
      return { name: name, value: holder.getAttribute(name) };
    }
    var form = element && element.closest && element.closest("form[id]");
    return form ? { name: "id", value: form.id } : null;
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail.target;
    if (target && target.id === "patient-live") {
      kept = keyOf(event.detail.elt) || keyOf(document.activeElement);
    }
  });

  function controlIn(holder, isForm) {
    if (isForm) {
      return (
        holder.querySelector('[aria-invalid="true"]') ||
        holder.querySelector("input:not([type=hidden]), select, textarea")
      );
    }
    return (
      holder.querySelector(".card-actions button, .card-actions summary") ||
      holder.querySelector("button, summary, a[href], input, select")
    );
  }

  document.addEventListener("htmx:afterSettle", function () {
    if (!kept) {
      return;
    }
    var panel = document.getElementById("patient-live");
    var selector = "[" + kept.name + '="' + CSS.escape(kept.value) + '"]';
    var holder = panel && panel.querySelector(selector);
    var control = holder && controlIn(holder, kept.name === "id");
    kept = null;
    if (control) {
      control.focus();
    } else if (panel) {
      panel.setAttribute("tabindex", "-1");
      panel.focus();
    }
  });
})();
