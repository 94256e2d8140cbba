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
        if (fresh) { element.replaceWith(fresh); schedule(fresh); }
      })
      .catch(function () { schedule(element, 4); });
  }
  function schedule(element, factor) {
    var seconds = parseFloat(element.getAttribute("data-live-interval")) || 5;
    setTimeout(function () { refresh(element); }, seconds * 1000 * (factor || 1));
  }
  document.querySelectorAll("[data-live-url]").forEach(function (element) { schedule(element); });
})();
