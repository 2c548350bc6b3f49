"""A headless Chromium driven over the DevTools protocol, standard library only.

Chromium (Debian's `chromium`, installed by scripts/bootstrap) is started with
--remote-debugging-pipe: it reads protocol commands from its fd 3 and writes answers and
events to its fd 4, each message one JSON object ended by a NUL byte. No websocket, no
extra package. One page (a target attached with flatten=True); every call is bounded in
time; console errors and uncaught exceptions are collected for the test to assert on.

Flags keep the browser on loopback (no background networking, no host name resolves but
127.0.0.1) and fit a container (--no-sandbox as root, --disable-dev-shm-usage,
--disable-gpu)."""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import harness

CHROMIUM = shutil.which("chromium")


class CdpError(Exception):
    pass


class Browser:
    def __init__(self, width=1280, height=900):
        if not CHROMIUM:
            raise harness.Skip("chromium is not installed (scripts/bootstrap installs it)")
        self.profile = tempfile.mkdtemp(prefix="sluice-chromium-")
        cmd_r, cmd_w = os.pipe()  # we write commands, chromium reads them on fd 3
        ev_r, ev_w = os.pipe()    # chromium writes on fd 4, we read
        # Out of the way of fds 3 and 4 in the child before they are put there.
        hi_cmd = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 20)
        hi_ev = fcntl.fcntl(ev_w, fcntl.F_DUPFD, 20)

        def child():
            os.dup2(hi_cmd, 3)
            os.dup2(hi_ev, 4)
            harness.die_with_parent()

        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=%d,%d" % (width, height), "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=child, pass_fds=(3, 4),
                                     close_fds=True)
        for fd in (cmd_r, ev_w, hi_cmd, hi_ev):
            os.close(fd)
        self._out = cmd_w
        self._in = ev_r
        self._next = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._answers = {}
        self.events = []
        self.console_errors = []
        self._closed = False
        self._stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        harness.register_cleanup(self.close)
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(domain + ".enable")

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace"))

    def _read(self):
        buf = b""
        while True:
            try:
                data = os.read(self._in, 1 << 16)
            except OSError:
                data = b""
            if not data:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += data
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self._event(msg)
                    self._cond.notify_all()

    def _event(self, msg):
        self.events.append(msg)
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.console_errors.append("exception: %s" % (d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.console_errors.append("console.error: %s" % " ".join(str(a.get("value", a.get("description")))
                                                                      for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.console_errors.append("%s: %s %s" % (e.get("source"), e.get("text"), e.get("url", "")))

    def call(self, method, params=None, timeout=30, session=True):
        with self._cond:
            self._next += 1
            mid = self._next
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise CdpError("%s: no answer within %.0f s%s" % (
                        method, timeout, " (chromium exited: %s)" % "".join(self._stderr[-5:]) if self._closed else ""))
                self._cond.wait(left)
            answer = self._answers.pop(mid)
        if "error" in answer:
            raise CdpError("%s: %s" % (method, answer["error"]))
        return answer.get("result", {})

    def evaluate(self, expression, timeout=30):
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in r:
            raise CdpError("evaluate %r: %s" % (expression[:80], r["exceptionDetails"]))
        return r["result"].get("value")

    def navigate(self, url, timeout=30):
        self.call("Page.navigate", {"url": url}, timeout=timeout)
        harness.wait_until(lambda: self.evaluate("document.readyState") == "complete", timeout)

    def viewport(self, width, height, mobile=False, scale=1):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})

    def color_scheme(self, scheme):
        self.call("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", session=False, timeout=5)
            except (CdpError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
        harness.unregister_cleanup(self.close)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_page(browser, expression, what, timeout=30.0):
    """Waits until the page's `expression` is truthy; returns its value (fails the check with
    the last value otherwise)."""
    value = [None]

    def ok():
        value[0] = browser.evaluate(expression)
        return bool(value[0])

    if not harness.wait_until(ok, timeout, 0.1):
        raise harness.CheckFailed_with(what, "last value: %r" % (value[0],))
    return value[0]
