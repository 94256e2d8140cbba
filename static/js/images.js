// Loading a `docker save` archive into a server (the images page): the file goes to the
// gateway over a WebSocket in pieces, each sent once the last is taken (so a large file
// streams and the bar tells how far it got), into `docker load` in the server.
(function () {
  "use strict";
  var root = document.getElementById("image-load");
  var button = root && root.querySelector("[data-image-load]");
  if (!button) { return; }
  var input = root.querySelector("input[type=file]");
  var bar = root.querySelector("progress");
  var status = root.querySelector("[data-image-status]");
  var output = root.querySelector("[data-image-output]");
  var PIECE = 256 * 1024;
  var maxBytes = parseInt(root.getAttribute("data-max-bytes"), 10);

  function absolute(url) {
    if (/^wss?:\/\//.test(url)) { return url; }
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + url;
  }
  function megabytes(bytes) { return (bytes / 1048576).toFixed(1) + " MB"; }

  button.addEventListener("click", function () {
    var file = input.files[0];
    if (!file) { status.textContent = "Choose an archive first."; return; }
    if (file.size > maxBytes) { status.textContent = "This archive is " + megabytes(file.size) + ": at most " + megabytes(maxBytes) + " may be loaded."; return; }
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    output.hidden = true;
    output.textContent = "";
    status.textContent = "Sending " + file.name + "…";
    var sent = 0, finished = false;
    var ws = new WebSocket(absolute(root.getAttribute("data-load-url")));
    ws.binaryType = "arraybuffer";
    function next() {
      if (sent >= file.size) { ws.send(JSON.stringify({ type: "end" })); status.textContent = "Sent: Docker is loading it…"; return; }
      var piece = file.slice(sent, sent + PIECE);
      sent += piece.size;
      piece.arrayBuffer().then(function (buffer) { if (ws.readyState === WebSocket.OPEN) { ws.send(buffer); } });
    }
    ws.onopen = next;
    ws.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "received") {
        bar.value = file.size ? Math.round(100 * message.bytes / file.size) : 100;
        status.textContent = "Sent " + megabytes(message.bytes) + " of " + megabytes(file.size) + "…";
        next();
      } else if (message.type === "output") {
        output.hidden = false;
        output.textContent += message.text;
      } else if (message.type === "done") {
        finished = true;
        status.textContent = message.reason;
        status.className = "small " + (message.ok ? "" : "error-text");
        button.disabled = false;
      }
    };
    ws.onclose = function () {
      if (!finished) { status.textContent = "The connection to the gateway was lost: nothing more was sent."; button.disabled = false; }
    };
  });
})();
