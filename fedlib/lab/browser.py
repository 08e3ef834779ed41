"""Open a page in headless Chromium and measure it as a reader's browser lays it out: how wide
the document is against the window, where the header and the forest plot sit, whether every
image decoded, the text shown; and take a screenshot of the first screen. The lab record's page
is tested with it (tests/…/test_page_browser.py).

Chromium is driven over its DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages ending in a NUL byte, commands on fd 3, replies on fd 4), so nothing beyond the standard
library and the distribution's `chromium` package is needed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = "no Chromium: `apt-get install chromium` (Debian/Ubuntu) to render the lab record's page"

MEASURE = """(() => {
  const d = document.documentElement, box = s => { const e = document.querySelector(s);
    if (!e) return null; const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom}; };
  return {scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, innerHeight: innerHeight,
    images: [...document.images].map(i => ({alt: i.alt, naturalWidth: i.naturalWidth})),
    header: box('header'), forest: box('#forest img'),
    text: document.body.innerText, all: document.body.textContent};
})()"""


def find() -> str | None:
    """The Chromium executable on PATH (or $CHROMIUM), None when there is none."""
    given = os.environ.get("CHROMIUM")
    if given and shutil.which(given):
        return shutil.which(given)
    return next((p for n in NAMES if (p := shutil.which(n))), None)


class Chromium:
    """One headless Chromium and one page in it, `width` × `height` CSS pixels."""

    def __init__(self, exe: str, width: int = 1400, height: int = 900, timeout: float = 60.0) -> None:
        self.timeout, self._id, self._buf = timeout, 0, b""
        self.events: list[dict] = []  # replies and events read but not yet asked for
        # Chromium's helper processes may still write its profile as the browser exits: a file
        # left in /tmp is no reason to fail the page check
        self._profile = tempfile.TemporaryDirectory(prefix="fedlib-chromium-", ignore_cleanup_errors=True)
        to_chrome, self._w = os.pipe()
        self._r, from_chrome = os.pipe()

        def fds() -> None:  # in the child: its fd 3 reads our commands, fd 4 writes its replies
            a = fcntl.fcntl(to_chrome, fcntl.F_DUPFD_CLOEXEC, 10)
            b = fcntl.fcntl(from_chrome, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
             "--no-first-run", "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=fds)  # noqa: PLW1509 - a fork with no threads to race
        os.close(to_chrome)
        os.close(from_chrome)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.call("Page.enable", session=True)

    def call(self, method: str, session: bool = False, **params: Any) -> dict:
        """Send one command and return its result (an error reply raises, naming the method)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == self._id)
        if "error" in reply:
            raise RuntimeError(f"Chromium {method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def _wait(self, want: Any) -> dict:
        end = time.monotonic() + self.timeout
        while True:
            for i, m in enumerate(self.events):
                if want(m):
                    return self.events.pop(i)
            left = end - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer within {self.timeout:g} s")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            *done, self._buf = (self._buf + chunk).split(b"\0")
            self.events += [json.loads(d) for d in done if d]

    def open(self, path: Path) -> None:
        """Load a file and wait for its load event (every image decoded or failed by then)."""
        self.call("Page.navigate", session=True, url=path.resolve().as_uri())
        self._wait(lambda m: m.get("method") == "Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def screenshot(self, to: Path) -> Path:
        """The first screen (the window, not the whole page) as PNG."""
        shot = self.call("Page.captureScreenshot", session=True, format="png")
        to.write_bytes(base64.b64decode(shot["data"]))
        return to

    def close(self) -> None:
        try:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure(page: Path, width: int = 1400, height: int = 900, screenshot: Path | None = None,
            exe: str | None = None) -> dict:
    """`MEASURE` of `page` at `width` × `height`, and its first screen saved to `screenshot`."""
    exe = exe or find()
    if exe is None:
        raise FileNotFoundError(INSTALL)
    with Chromium(exe, width, height) as c:
        c.open(page)
        found = c.evaluate(MEASURE)
        if screenshot is not None:
            c.screenshot(screenshot)
    return found


ABSOLUTE = re.compile(r"(?<![\w.:/~%)-])/(?:[\w.~-]+/)+[\w.~-]*")  # /a/b…; not 2/96, GB/s, URLs, "(x)/y"


def problems(m: dict) -> list[str]:
    """What a reader would trip over, from `browser.measure`."""
    out = []
    if m["scrollWidth"] > m["clientWidth"]:
        out.append(f"overflows sideways: {m['scrollWidth']} px wide in a {m['clientWidth']} px window")
    out += [f"image not loaded: {i['alt']!r}" for i in m["images"] if not i["naturalWidth"]]
    h = m["innerHeight"]
    if m["header"] is None or m["header"]["bottom"] > h:
        out.append("the header is not on the first screen")
    f = m["forest"]
    if f is None or min(f["bottom"], h) - f["top"] < min(f["bottom"] - f["top"], h / 2):
        out.append("the forest plot is not on the first screen")
    out += [f"absolute path in the text: {p}" for p in sorted(set(ABSOLUTE.findall(m["all"])))]
    if "PosixPath(" in m["all"]:
        out.append("a PosixPath repr in the text")
    return out
