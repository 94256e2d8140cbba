// Terminals in the browser (xterm.js): the owner's shells on the server page,
// an admin's read-only view on the watch page. Each talks to the gateway over
// a WebSocket: binary frames are the terminal's bytes, text frames JSON
// (see hosting/consumers.py). A reload or a lost connection reattaches to the
// same shell (its id is kept for this tab in sessionStorage); a dead
// connection is noticed by pings, not by a frozen screen.
(function () {
  "use strict";
  var root = document.querySelector("[data-terminal-url]");
  if (!root || !window.Terminal || !window.FitAddon) { return; }
  var readOnly = root.hasAttribute("data-terminal-watch");
  var storeKey = "controlpanel.terminals." + root.getAttribute("data-terminal-key");
  var tabs = root.querySelector("[data-terminal-tabs]");
  var screens = root.querySelector("[data-terminal-screens]");
  var encoder = new TextEncoder();
  var sessions = [];
  var PING_EVERY = 15000, DEAD_AFTER = 40000, GIVE_UP_AFTER = 5 * 60 * 1000;

  function saved() {
    try { return JSON.parse(sessionStorage.getItem(storeKey)) || []; } catch (e) { return []; }
  }
  function save() {
    if (readOnly) { return; }
    sessionStorage.setItem(storeKey, JSON.stringify(sessions.filter(function (s) { return s.id && !s.ended; }).map(function (s) { return s.id; })));
  }
  function absolute(url) {
    if (/^wss?:\/\//.test(url)) { return url; }
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + url;
  }

  function Session(id) {
    var self = this;
    this.id = id || "";
    this.ended = false;
    this.tab = document.createElement("button");
    this.tab.type = "button";
    this.tab.className = "terminal-tab";
    this.tab.addEventListener("click", function () { self.show(); });
    this.status = document.createElement("p");
    this.status.className = "terminal-status muted small";
    this.status.setAttribute("role", "status");
    this.screen = document.createElement("div");
    this.screen.className = "terminal-screen";
    this.box = document.createElement("div");
    this.box.className = "terminal-box";
    this.box.appendChild(this.status);
    this.box.appendChild(this.screen);
    tabs.appendChild(this.tab);
    screens.appendChild(this.box);
    this.term = new window.Terminal({
      cursorBlink: !readOnly, disableStdin: readOnly, scrollback: 5000, convertEol: false,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace", fontSize: 14,
      theme: { background: "#0f172a", foreground: "#e2e8f0" }
    });
    this.fit = new window.FitAddon.FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(this.screen);
    this.term.onData(function (data) { self.sendBytes(encoder.encode(data)); });
    this.term.onBinary(function (data) {
      var bytes = new Uint8Array(data.length);
      for (var i = 0; i < data.length; i++) { bytes[i] = data.charCodeAt(i) & 255; }
      self.sendBytes(bytes);
    });
    new ResizeObserver(function () { self.resize(); }).observe(this.screen);
    this.label(sessions.length + 1);
    sessions.push(this);
    this.show();
    this.lostSince = null;
    this.connect();
    setInterval(function () { self.heartbeat(); }, PING_EVERY);
  }

  Session.prototype.label = function (n) { this.tab.textContent = (readOnly ? "Watching" : "Terminal " + n); };
  Session.prototype.say = function (text) { this.status.textContent = text; };
  Session.prototype.show = function () {
    sessions.forEach(function (s) { s.box.hidden = true; s.tab.removeAttribute("aria-current"); });
    this.box.hidden = false;
    this.tab.setAttribute("aria-current", "true");
    this.resize();
    this.term.focus();
  };
  Session.prototype.dimensions = function () {
    var size = this.fit.proposeDimensions();
    // Never a terminal of zero rows, whatever the layout says.
    return size ? { rows: Math.max(size.rows || 0, 5), cols: Math.max(size.cols || 0, 20) } : { rows: 24, cols: 80 };
  };
  Session.prototype.resize = function () {
    if (this.box.hidden) { return; }
    var size = this.dimensions();
    if (size.rows !== this.term.rows || size.cols !== this.term.cols) { this.term.resize(size.cols, size.rows); }
    this.sendJSON({ type: "resize", rows: size.rows, cols: size.cols });
  };
  Session.prototype.url = function () {
    var size = this.dimensions();
    var query = "?rows=" + size.rows + "&cols=" + size.cols + (this.id ? "&terminal=" + encodeURIComponent(this.id) : "");
    return absolute(root.getAttribute("data-terminal-url")) + query;
  };
  Session.prototype.connect = function () {
    var self = this;
    this.say(readOnly ? "Connecting…" : this.id ? "Reattaching…" : "Opening a shell…");
    var ws = this.ws = new WebSocket(this.url());
    ws.binaryType = "arraybuffer";
    this.lastPong = Date.now();
    ws.onmessage = function (event) {
      self.lastPong = Date.now();
      if (typeof event.data !== "string") { self.term.write(new Uint8Array(event.data)); return; }
      var message = JSON.parse(event.data);
      if (message.type === "hello") {
        var before = self.id;
        self.id = message.terminal;
        self.lostSince = null;
        self.greeting = readOnly ? "Watching, read-only: its user sees that you are." : !before ? "Connected."
          : before === self.id ? "Reattached to the same shell." : "The earlier shell had ended: this is a new one.";
        self.say(self.greeting);
        save();
        self.resize();
      } else if (message.type === "status") {
        self.say(message.watchers ? "An administrator is watching this terminal (read-only)." : self.greeting);
      } else if (message.type === "closed") {
        self.end(message.reason, message.sessions_page);
      }
    };
    ws.onclose = function (event) {
      if (self.ended) { return; }
      if (event.code === 4000) { self.end("The terminal has ended."); return; }
      self.lostSince = self.lostSince || Date.now();
      if (Date.now() - self.lostSince > GIVE_UP_AFTER) { self.end("The terminal gateway is not answering. Reload the page to try again."); return; }
      var wait = Math.min(30, Math.pow(2, Math.floor((Date.now() - self.lostSince) / 10000))) * 1000;
      self.say("The connection to the terminal gateway was lost: trying again…");
      setTimeout(function () { if (!self.ended) { self.connect(); } }, wait);
    };
  };
  Session.prototype.heartbeat = function () {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) { return; }
    if (Date.now() - this.lastPong > DEAD_AFTER) { this.ws.close(); return; }  // dead: onclose reconnects
    this.sendJSON({ type: "ping" });
  };
  // The gateway takes at most 64 KiB a message (terminals.MAX_INPUT): a larger paste goes in pieces, in order.
  var PIECE = 32 * 1024;
  Session.prototype.sendBytes = function (bytes) {
    if (readOnly || !this.ws || this.ws.readyState !== WebSocket.OPEN) { return; }
    for (var start = 0; start < bytes.length; start += PIECE) {
      this.ws.send(bytes.subarray(start, start + PIECE));
    }
  };
  Session.prototype.sendJSON = function (message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(JSON.stringify(message)); }
  };
  Session.prototype.end = function (reason, sessionsPage) {
    this.ended = true;
    this.say(reason);
    var sessionsUrl = root.getAttribute("data-sessions-url");
    if (sessionsPage && sessionsUrl) {
      var link = document.createElement("a");
      link.href = sessionsUrl;
      link.textContent = "See and end your open sessions";
      this.status.appendChild(document.createTextNode(" "));
      this.status.appendChild(link);
    }
    this.tab.classList.add("terminal-tab-ended");
    this.term.write("\r\n\x1b[2m[" + reason.replace(/[\x00-\x1f]/g, " ") + "]\x1b[0m\r\n");
    this.term.options.disableStdin = true;
    save();
    if (this.ws) { this.ws.close(); }
  };

  var opener = root.querySelector("[data-terminal-new]");
  if (opener) { opener.addEventListener("click", function () { new Session(""); }); }
  var ids = readOnly ? [""] : saved();
  ids.forEach(function (id) { new Session(id); });
  if (readOnly && !sessions.length) { new Session(""); }
})();
