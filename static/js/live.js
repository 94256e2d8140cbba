// Keeps parts of a page fresh: every element with data-live-url is replaced by
// what that URL returns, every data-live-interval seconds (default 5). The
// pages work without this; it only saves a reload. No inline script (CSP).
(function () {
  "use strict";
  function refresh(element) {
    var url = element.getAttribute("data-live-url");
    fetch(url, { headers: { "X-Requested-With": "live" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected || !response.ok) { throw new Error(response.status); }
        return response.text();
      })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html.trim();
        var fresh = template.content.firstElementChild;
        if (fresh) {
          // What the reader opened stays open (<details> with an id).
          element.querySelectorAll("details[open][id]").forEach(function (open) {
            var same = fresh.querySelector("details#" + CSS.escape(open.id));
            if (same) { same.open = true; }
          });
          element.replaceWith(fresh);
          fresh.dispatchEvent(new CustomEvent("live:replaced", { bubbles: true }));
          schedule(fresh);
        }
      })
      .catch(function () { schedule(element, 4); });
  }
  function schedule(element, factor) {
    var seconds = parseFloat(element.getAttribute("data-live-interval")) || 5;
    setTimeout(function () { refresh(element); }, seconds * 1000 * (factor || 1));
  }
  document.querySelectorAll("[data-live-url]").forEach(function (element) { schedule(element); });
})();

// Live validation: an input with data-check-url shows what the server thinks
// of its value (the same rules as the form) as the user types.
(function () {
  "use strict";
  document.querySelectorAll("input[data-check-url]").forEach(function (input) {
    var output = document.createElement("span");
    input.insertAdjacentElement("afterend", output);
    var timer = null;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        if (!input.value.trim()) { output.innerHTML = ""; return; }
        var url = input.getAttribute("data-check-url") + "?name=" + encodeURIComponent(input.value);
        fetch(url, { credentials: "same-origin" })
          .then(function (response) { return response.ok ? response.text() : ""; })
          .then(function (html) { output.innerHTML = html; });
      }, 300);
    });
  });
})();

// Narrow screens stack a table's rows (panel.css): each cell is labelled with its
// column's heading, also in parts a refresh has just put in (live:replaced).
(function () {
  "use strict";
  function label(root) {
    root.querySelectorAll("table.table").forEach(function (table) {
      var headings = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) { return th.textContent.trim(); });
      table.querySelectorAll("tbody tr").forEach(function (row) {
        Array.prototype.forEach.call(row.children, function (cell, index) {
          if (!cell.hasAttribute("data-label")) { cell.setAttribute("data-label", headings[index] || ""); }
        });
      });
    });
  }
  label(document);
  document.addEventListener("live:replaced", function (event) { label(event.target); });
})();

// A refused form shows why at the form: the page scrolls to its first error, wherever
// on the page the form is, and puts the cursor in that field.
(function () {
  "use strict";
  var error = document.querySelector(".field-invalid, .form-errors");
  if (!error) { return; }
  function show() { error.scrollIntoView({ block: "center" }); }
  show();
  window.addEventListener("load", show);  // again once what the page draws above it (a terminal) has its size
  var field = error.querySelector("input, select, textarea") || error.closest("form") && error.closest("form").querySelector("input:not([type=hidden]), select, textarea");
  if (field) { field.focus({ preventScroll: true }); }
})();

// Ages ("Up 25 seconds"): counted on by the page from what the server said when it
// drew them (data-seconds), so a browser's wrong clock does not matter.
(function () {
  "use strict";
  var units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
  function words(seconds) {
    for (var i = 0; i < units.length; i++) {
      var count = Math.floor(seconds / units[i][1]);
      if (count >= 1) { return count + " " + units[i][0] + (count === 1 ? "" : "s"); }
    }
    seconds = Math.floor(seconds);
    return seconds + " second" + (seconds === 1 ? "" : "s");
  }
  setInterval(function () {
    var now = performance.now();
    document.querySelectorAll("time.age[data-seconds]").forEach(function (time) {
      if (!time.countedFrom) { time.countedFrom = now - parseFloat(time.getAttribute("data-seconds")) * 1000; }
      time.textContent = words((now - time.countedFrom) / 1000);
    });
  }, 1000);
})();
