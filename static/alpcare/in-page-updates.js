// What every in-page update (htmx) needs, on every page; and the time a printout was printed.
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

  // The focus survives an update that replaces the element holding it, so that a keyboard or
  // screen-reader user goes on from where they were, not from the top of the page. What had
  // it is remembered by a key that the new content has too:
  // - a card or a follow-up (patient page): the control that took the place of the one used
  //   (Undo after Acknowledge, Acknowledge after Undo), not the card's list of sources;
  // - a form ("Add a result"): its first field refused, or its first field for the next one;
  // - a page link ("Next"): the same link in the new list, or the other one on the last page.
  var kept = null;

  function keyOf(element) {
    if (!element || !element.closest) {
      return null;
    }
    var holder = element.closest("[data-code], [data-follow-up]");
    if (holder) {
      var name = holder.hasAttribute("data-code") ? "data-code" : "data-follow-up";
      return { selector: "[" + name + '="' + CSS.escape(holder.getAttribute(name)) + '"]' };
    }
    if (element.closest(".pagination")) {
      return { selector: ".pagination", text: element.textContent.trim() };
    }
    var form = element.closest("form[id]");
    return form ? { selector: "#" + CSS.escape(form.id), form: true } : null;
  }

  function controlIn(holder, key) {
    if (key.text !== undefined) {
      var links = holder.querySelectorAll("a");
      var same = Array.prototype.filter.call(links, function (link) {
        return link.textContent.trim() === key.text;
      });
      return same[0] || links[0];
    }
    if (key.form) {
      return (
        holder.querySelector('[aria-invalid="true"]') ||
        holder.querySelector("input:not([type=hidden]), select, textarea")
      );
    }
    return (
      holder.querySelector(".card-actions button, .card-actions summary") ||
      holder.querySelector("button, summary, a[href], input:not([type=hidden]), select")
    );
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail.target;
    var elt = event.detail.elt;
    // Only when the update replaces what holds the focus (not a search box above a list).
    var replaced = target && target.id && target.contains(elt) ? elt : null;
    var key = replaced && (keyOf(replaced) || keyOf(document.activeElement));
    kept = key ? { region: target.id, key: key } : null;
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!kept) {
      return;
    }
    var region = document.getElementById(kept.region);
    var holder = region && region.querySelector(kept.key.selector);
    var control = holder && controlIn(holder, kept.key);
    kept = null;
    if (control) {
      control.focus();
    } else if (region) {
      region.setAttribute("tabindex", "-1");
      region.focus();
    }
  });

  // The printed summary says when it was printed, not when the page was served: a page kept
  // open since the morning printed the morning's time. In the site's time zone, written as
  // the server writes it; a browser that does not know the zone leaves the served time.
  function siteTime(date, zone) {
    var parts = {};
    new Intl.DateTimeFormat("en-GB", {
      timeZone: zone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    })
      .formatToParts(date)
      .forEach(function (part) {
        parts[part.type] = part.value;
      });
    var day = parts.year + "-" + parts.month + "-" + parts.day;
    return day + " " + parts.hour + ":" + parts.minute;
  }

  window.addEventListener("beforeprint", function () {
    var line = document.getElementById("printed-by");
    var zone = line && line.getAttribute("data-time-zone");
    if (!zone) {
      return;
    }
    var now;
    try {
      now = siteTime(new Date(), zone);
    } catch (error) {
      return; // RangeError: a time zone this browser does not know
    }
    // The line's last date and time is the printing's (the name before it may hold anything).
    var stamp = /^([\s\S]*)\d{4}-\d\d-\d\d \d\d:\d\d/;
    line.textContent = line.textContent.replace(stamp, "$1" + now);
  });
})();
