"""Helpers of the UI tests: a free loopback port, `mlflow ui` in the background, headless Chromium driven
over the DevTools protocol on a pipe (``--remote-debugging-pipe``: real time, no virtual clock, so a page
and the sandboxed iframes MLflow renders HTML artifacts in are seen as a person sees them)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str | None:
    """Debian's chromium, or None (the UI tests then skip; ``.ci/run`` installs it and says so)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class MlflowUi:
    """``mlflow ui`` on a free loopback port; stopped (its whole process group) on exit."""

    def __init__(self, db: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}",
                                      "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                     # no GenAI job runner (a pool of huey consumers): the UI alone
                                     env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))

    def __enter__(self) -> "MlflowUi":
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
            if self.proc.poll() is not None:
                break
        self.__exit__()
        raise RuntimeError("mlflow ui did not start")

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Browser:
    """Headless Chromium driven over the DevTools protocol on fds 3/4; one per test module, closed on exit."""

    def __init__(self, binary: str, profile: Path, size: tuple[int, int] = (1600, 1000)):
        ours_in, theirs_out = os.pipe()  # chromium writes fd 4 -> we read
        theirs_in, ours_out = os.pipe()  # we write -> chromium reads fd 3
        # above 4, so that the dup2 onto 3 and 4 in the child never clobbers the other end
        high_in, high_out = fcntl.fcntl(theirs_in, fcntl.F_DUPFD, 10), fcntl.fcntl(theirs_out, fcntl.F_DUPFD, 10)
        for fd in (theirs_in, theirs_out):
            os.close(fd)

        def child_fds() -> None:
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.size, self.pending, self.next_id, self.buffer, self.tabs = size, [], 0, b"", []
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                      f"--window-size={size[0]},{size[1]}", "about:blank"],
                                     preexec_fn=child_fds, close_fds=False, start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (high_in, high_out):
            os.close(fd)
        self.reader, self.writer = ours_in, ours_out

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for fd in (self.reader, self.writer):
            os.close(fd)

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            if not select.select([self.reader], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}, **({"sessionId": session} if session else {})}
        os.write(self.writer, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.pending.append(reply)  # an event: kept for whoever waits on it

    def open(self, url: str) -> "Page":
        """A new tab on ``url``, in place of the last one (its iframes attach as their own sessions: :meth:`Page.frames`)."""
        for old in self.tabs:
            self.call("Target.closeTarget", {"targetId": old})
        self.tabs = [self.call("Target.createTarget", {"url": "about:blank"})["targetId"]]
        target = self.tabs[0]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.size[0], "height": self.size[1],
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        self.call("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True},
                  session)
        self.call("Page.navigate", {"url": url}, session)
        return Page(self, session)


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def goto(self, url: str) -> None:
        self.browser.call("Page.navigate", {"url": url}, self.session)

    def eval(self, expression: str, session: str | None = None):
        out = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                session or self.session)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression[:80]}: {out['exceptionDetails'].get('text')}")
        return out["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 90, session: str | None = None):
        """Poll ``expression`` until it is truthy; its value. The page's text is in the failure."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.eval(expression, session)
            except RuntimeError:
                value = None  # the page is still loading (a navigation swapped the context)
            if value:
                return value
            if time.monotonic() > deadline:
                text = self.eval("document.body ? document.body.innerText : ''") or ""
                raise AssertionError(f"never true: {expression}\npage text: {text[:1500]}")
            time.sleep(0.25)

    def frames(self) -> list[str]:
        """Sessions of this page's iframes that run in their own process (sandboxed ones), latest first."""
        self.browser.call("Runtime.evaluate", {"expression": "1"}, self.session)  # drains queued events
        events = self.browser.pending
        gone = {e["params"]["sessionId"] for e in events if e["method"] == "Target.detachedFromTarget"}
        return [e["params"]["sessionId"] for e in reversed(events)
                if e["method"] == "Target.attachedToTarget" and e.get("sessionId") == self.session
                and e["params"]["targetInfo"]["type"] == "iframe" and e["params"]["sessionId"] not in gone]
