// Live case entry: the assess-preview fragment sends the engine's field errors as JSON in
// #live-errors (out of band). Put each message beside its field and clear the fixed ones.
(function () {
  "use strict";

  function applyLiveErrors(holder) {
    var form = document.getElementById("case-form");
    var errors;
    try {
      errors = JSON.parse(holder.getAttribute("data-errors") || "{}");
    } catch (error) {
      return;
    }
    if (!form) {
      return;
    }
    form.querySelectorAll(".invalid-feedback[id], #case-errors").forEach(function (slot) {
      var messages = errors[slot.id] || null;
      slot.textContent = messages ? messages.join(" ") : "";
      if (slot.id === "case-errors") {
        slot.classList.toggle("d-none", !messages);
        return;
      }
      var input = document.getElementById(slot.id.replace(/-error$/, ""));
      if (input && input.matches("input, select, textarea")) {
        input.classList.toggle("is-invalid", Boolean(messages));
        if (messages) {
          input.setAttribute("aria-invalid", "true");
        } else {
          input.removeAttribute("aria-invalid");
        }
      }
    });
  }

  // The live preview posts the case form as one JSON object (name: value, or a list of values
  // for a name given more than once): the server reads it far faster than ~150 form fields.
  // Other requests from inside the form ("Add a result") keep the usual form encoding.
  function isCaseForm(element) {
    return Boolean(element) && element.id === "case-form";
  }

  htmx.defineExtension("case-json", {
    onEvent: function (name, event) {
      if (name === "htmx:configRequest" && isCaseForm(event.detail.elt)) {
        event.detail.headers["Content-Type"] = "application/json";
      }
      return true;
    },
    encodeParameters: function (xhr, parameters, element) {
      if (!isCaseForm(element)) {
        return null;
      }
      var posted = {};
      parameters.forEach(function (value, key) {
        if (Object.prototype.hasOwnProperty.call(posted, key)) {
          posted[key] = [].concat(posted[key], value);
        } else {
          posted[key] = value;
        }
      });
      return JSON.stringify(posted);
    },
  });

  // A live update replaces the whole panel: sections the reader opened ("Considered, not
  // advised", a card's sources) stay open across it.
  var keptOpen = [];

  function isPanel(event) {
    return Boolean(event.detail.target) && event.detail.target.id === "assessment";
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!isPanel(event)) {
      return;
    }
    keptOpen = Array.prototype.map.call(
      event.detail.target.querySelectorAll("details[data-keep-open][open]"),
      function (details) {
        return details.getAttribute("data-keep-open");
      }
    );
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (!isPanel(event)) {
      return;
    }
    event.detail.target.querySelectorAll("details[data-keep-open]").forEach(function (details) {
      if (keptOpen.indexOf(details.getAttribute("data-keep-open")) !== -1) {
        details.open = true;
      }
    });
  });

  document.addEventListener("htmx:load", function (event) {
    var element = event.target;
    if (element && element.id === "live-errors") {
      applyLiveErrors(element);
    }
  });
})();
