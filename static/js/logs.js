// A container's log (the container page): its last lines, then what it prints,
// from the gateway's WebSocket (hosting/consumers.py, LogConsumer). Lines are
// put in with textContent (never as markup), drawn at most once a frame, and
// no more than MAX_LINES are kept: a flood neither freezes the tab nor fills it.
(function () {
  "use strict";
  var root = document.querySelector("[data-logs-url]");
  if (!root) { return; }
  var box = root.querySelector("[data-logs-lines]");
  var status = root.querySelector("[data-logs-status]");
  var tail = root.querySelector("[data-logs-tail]");
  var follow = root.querySelector("[data-logs-follow]");
  var times = root.querySelector("[data-logs-times]");
  var MAX_LINES = 5000;
  var pending = [], drawing = false, ws = null, shown = 0, skipped = 0;

  function absolute(url) {
    if (/^wss?:\/\//.test(url)) { return url; }
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + url;
  }
  function say(text) { status.textContent = text; }

  function line(stream, time, text) {
    var row = document.createElement("div");
    row.className = "log-line log-" + (stream === "err" || stream === "skip" ? stream : "out");
    if (time) {
      var stamp = document.createElement("span");
      stamp.className = "log-time";
      stamp.textContent = time + " ";
      row.appendChild(stamp);
    }
    row.appendChild(document.createTextNode(text));
    return row;
  }

  function draw() {
    drawing = false;
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    var fragment = document.createDocumentFragment();
    var skip = box.lastElementChild && box.lastElementChild.classList.contains("log-skip") ? box.lastElementChild : null;
    pending.splice(0).forEach(function (batch) {
      if (batch.skipped) {
        skipped += batch.skipped;
        if (!skip) { skip = line("skip", "", ""); skip.count = 0; fragment.appendChild(skip); }
        skip.count += batch.skipped;  // one note for a run of skips, however many batches
        skip.textContent = "… " + skip.count + " lines came too fast to show";
      }
      if (batch.lines.length) { skip = null; }
      batch.lines.slice(-MAX_LINES).forEach(function (l) { fragment.appendChild(line(l[0], l[1], l[2])); shown++; });
    });
    box.appendChild(fragment);
    var excess = box.childElementCount - MAX_LINES;
    if (excess > 0) {
      var range = document.createRange();
      range.setStartBefore(box.firstElementChild);
      range.setEndAfter(box.children[excess - 1]);
      range.deleteContents();
    }
    if (follow.checked && atBottom) { box.scrollTop = box.scrollHeight; }
    say(shown + " lines" + (skipped ? ", " + skipped + " skipped" : "") + (ws && ws.readyState === WebSocket.OPEN ? ", following" : ""));
  }

  function connect() {
    if (ws) { ws.onclose = null; ws.close(); }
    box.textContent = "";
    pending = []; shown = 0; skipped = 0;
    say("Connecting…");
    ws = new WebSocket(absolute(root.getAttribute("data-logs-url")) + "?tail=" + encodeURIComponent(tail.value));
    ws.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "lines") {
        pending.push(message);
        if (!drawing) { drawing = true; requestAnimationFrame(draw); }
      } else if (message.type === "ended") {
        ws.onclose = null;
        requestAnimationFrame(function () { draw(); say(message.reason + " (" + shown + " lines)"); });
      }
    };
    ws.onclose = function () { say("The connection to the gateway was lost. Change a setting above, or reload, to try again."); };
  }

  tail.addEventListener("change", connect);
  follow.addEventListener("change", function () { if (follow.checked) { box.scrollTop = box.scrollHeight; } });
  times.addEventListener("change", function () { root.classList.toggle("log-no-times", !times.checked); });
  connect();
})();
