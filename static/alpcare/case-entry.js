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

  // A failed save: the summary of what needs attention takes the focus (its links lead on).
  document.addEventListener("DOMContentLoaded", function () {
    var summary = document.getElementById("error-summary");
    if (summary) {
      summary.focus();
    }
    setUpAge();
    setUpCounters();
    document.querySelectorAll(TEST_SELECTS).forEach(followTest);
  });

  // A result's unit list follows its test (CrCl: mL/min only): the units of other tests are
  // hidden, and a unit the test does not take is replaced by the test's own first unit. The
  // units per test are the page's #lab-units (json_script). This page's result rows, and the
  // patient pages' single-result forms ("Add a result", "Correct a result"), which load this
  // script for it and are marked data-unit-follows-test.
  var TEST_SELECTS =
    '#case-form select[name$="-test"], form[data-unit-follows-test] select[name="test"]';
  var labUnits = null;

  function followTest(testSelect) {
    if (labUnits === null) {
      var holder = document.getElementById("lab-units");
      labUnits = holder ? JSON.parse(holder.textContent) : {};
    }
    // The unit of the same row, in the same form (a page may hold more than one result form).
    var unitName = testSelect.name.replace(/test$/, "unit");
    var unitSelect = testSelect.form ? testSelect.form.elements.namedItem(unitName) : null;
    var units = labUnits[testSelect.value];
    if (!unitSelect || !unitSelect.options || !units) {
      return;
    }
    Array.prototype.forEach.call(unitSelect.options, function (option) {
      var allowed = units.indexOf(option.value) !== -1;
      option.hidden = !allowed;
      option.disabled = !allowed;
    });
    if (units.indexOf(unitSelect.value) === -1) {
      unitSelect.value = units[0];
    }
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches(TEST_SELECTS)) {
      followTest(target);
    }
  });

  // A form swapped in by htmx (the patient page's "Add a result", refused or sent): its unit
  // list follows its test from the start, as on a page load.
  document.addEventListener("htmx:load", function (event) {
    var element = event.target;
    if (element && element.querySelectorAll) {
      element.querySelectorAll(TEST_SELECTS).forEach(followTest);
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && (target.id === "lab-rows")) {
      target.querySelectorAll('select[name$="-test"]').forEach(followTest);
    }
  });

  // A row added in place ("Add a result", "Add a therapy"): the focus moves into it.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target || (target.id !== "lab-rows" && target.id !== "therapy-rows")) {
      return;
    }
    var rows = target.querySelectorAll("fieldset.lab-row, fieldset.therapy-row");
    var added = rows[rows.length - 1];
    var first = added && added.querySelector("select, input:not([type=hidden]), textarea");
    if (first) {
      first.focus();
    }
  });

  // The age beside the birth date, in whole years, as the birth date is typed.
  function setUpAge() {
    var birth = document.getElementById("id_birth_date");
    if (!birth) {
      return;
    }
    var hint = document.createElement("span");
    hint.id = "age-hint";
    hint.className = "form-text d-block";
    hint.setAttribute("aria-live", "polite");
    birth.insertAdjacentElement("afterend", hint);
    function update() {
      var parts = /^(\d{4})-(\d{2})-(\d{2})$/.exec(birth.value);
      if (!parts) {
        hint.textContent = "";
        return;
      }
      var today = new Date();
      var years = today.getFullYear() - Number(parts[1]);
      var month = today.getMonth() + 1;
      var birthMonth = Number(parts[2]);
      // As the engine counts (dates.age_in_years): a 29 February birthday falls on 28 February
      // in a year without one. new Date(y, m, 0) is the last day of month m (1-based).
      var birthday = Math.min(Number(parts[3]), new Date(today.getFullYear(), birthMonth, 0).getDate());
      if (month < birthMonth || (month === birthMonth && today.getDate() < birthday)) {
        years -= 1;
      }
      hint.textContent = years >= 0 ? "Age " + years + " y" : "";
    }
    birth.addEventListener("input", update);
    update();
  }

  // Fields with a length cap show how much is left, so that nothing is cut silently.
  function setUpCounters() {
    document.querySelectorAll("#case-form input[maxlength][name=name], #case-form input[maxlength][name=mrn]").forEach(function (input) {
      var counter = document.createElement("span");
      counter.className = "form-text d-block char-counter";
      counter.id = input.id + "-counter";
      input.insertAdjacentElement("afterend", counter);
      function update() {
        counter.textContent = input.value.length + " / " + input.maxLength + " characters";
      }
      input.addEventListener("input", update);
      update();
    });
  }

  document.addEventListener("htmx:load", function (event) {
    var element = event.target;
    if (element && element.id === "live-errors") {
      applyLiveErrors(element);
    }
  });
})();
