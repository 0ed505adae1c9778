"""Remake the README's screenshots: the MLflow UI on a comparison, and the comparison's cost-ratio plot.

    python docs/screenshots.py                               # runs a smoke comparison in a temp folder first
    python docs/screenshots.py --tracking-uri sqlite:///$PWD/mlflow.db   # the latest comparison of a store

Needs headless Chromium (Debian/Ubuntu: ``apt-get install chromium``; or pass ``--chromium PATH``). It starts
``mlflow ui`` on 127.0.0.1 and drives Chromium over its DevTools pipe (the standard library only): it opens the
link the commands print (the runs table in the saved view, sorted by accuracy) and the comparison parent
run's page, waits until each has drawn its rows, and saves ``docs/mlflow_runs.png``,
``docs/mlflow_parent_run.png`` and ``docs/costs.png`` (the parent's ``comparison/costs.png`` artifact).

The browser profile is fresh and the screen 1440 x 900, as a first visit on a laptop sees them: MLflow 3.17
opens its assistant panel over a third of the page then, and the saved view puts the columns a person reads
first (accuracy, the difference, the concepts' verdict, the cost) where it leaves room.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
# Without the background-networking flags Chromium keeps trying to reach Google's hosts, which a closed
# network refuses many times a second; a fresh profile keeps earlier sessions out of the picture.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--remote-debugging-pipe",
)
SCREEN = (1440, 900)  # a laptop's screen: what the first screen of each page must hold


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smoke_comparison(work: Path) -> str:
    """A smoke comparison (synthetic data, a few minutes on 2 cores) into ``work``; returns its store URI."""
    uri = f"sqlite:///{work}/mlflow.db"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri}
    subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "compare.py"), "--bootstrap", "200"],
        cwd=work,
        env=env,
        check=True,
    )
    return uri


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: {url} did not answer within {seconds:.0f} s")


class Chromium:
    """Headless Chromium driven over ``--remote-debugging-pipe`` (DevTools messages, NUL-separated, on fds 3
    and 4): one page, navigated, asked questions in JavaScript and photographed."""

    def __init__(self, binary: str, width: int, height: int):
        self.profile = tempfile.mkdtemp(prefix="chromium_")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds():  # the browser reads commands on fd 3 and writes answers on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"],
            preexec_fn=fds,
            pass_fds=(3, 4),  # kept open across exec (subprocess closes the other fds after preexec_fn)
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._next = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise SystemExit("error: Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise SystemExit(f"error: Chromium refused {method}: {answer['error']}")
                return answer.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, ready: str, seconds: float) -> bool:
        """Navigate and wait until the JavaScript ``ready`` is true (False after ``seconds``), then a moment
        for the last layout."""
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if self.evaluate(ready):
                time.sleep(2.0)
                return True
        return False

    def screenshot(self, out: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        out.write_bytes(base64.b64decode(data))
        print(f"wrote {out}")

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (SystemExit, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def shoot(chromium: str, url: str, ready: str, out: Path, size: tuple[int, int], base: str, wait_s: float):
    """``url`` as a first visit sees it (a fresh profile: MLflow's panels as it opens them) at ``size``."""
    browser = Chromium(chromium, *size)
    try:
        if not browser.open(url, ready, wait_s):
            print(
                f"warning: {url} was not drawn within {wait_s:.0f} s; saving what it shows", file=sys.stderr
            )
        browser.screenshot(out)
    finally:
        browser.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tracking-uri", default="", help="an MLflow store holding a comparison (default: make one)"
    )
    parser.add_argument("--experiment", default="attr2gender")
    parser.add_argument(
        "--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or ""
    )
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--wait-s", type=float, default=60, help="the longest a page gets to draw")
    args = parser.parse_args(argv)
    if not args.chromium:
        print(
            "error: no Chromium found; install it (apt-get install chromium) or pass --chromium PATH",
            file=sys.stderr,
        )
        return 2
    import mlflow

    from attr2gender.tracking.mlflow_tracking import MlflowTracker

    work = Path(tempfile.mkdtemp(prefix="screenshots_"))
    uri = args.tracking_uri or smoke_comparison(work)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"error: no experiment {args.experiment!r} in {uri}; pass --experiment", file=sys.stderr)
        return 2
    parents = client.search_runs(
        [experiment.experiment_id],
        "tags.comparison = 'two_stage_vs_direct'",
        order_by=["attributes.start_time DESC"],
    )
    if not parents:
        print(f"error: no comparison run in {uri}; run python pipelines/compare.py first", file=sys.stderr)
        return 2
    parent = parents[0]
    # The link the commands print (this also puts the saved view on a store made before it existed).
    page = MlflowTracker(args.experiment, uri, announce=lambda line: None).ui_page()
    args.out.mkdir(parents=True, exist_ok=True)
    costs = client.download_artifacts(parent.info.run_id, "comparison/costs.png", str(work))
    shutil.copy(costs, args.out / "costs.png")
    print(f"wrote {args.out / 'costs.png'}")

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/health", 120)
        shoot(
            args.chromium,
            base + page,
            "document.querySelectorAll('.ag-row').length >= 3 && "
            "document.body.innerText.includes('headline_accuracy')",
            args.out / "mlflow_runs.png",
            SCREEN,
            base,
            args.wait_s,
        )
        shoot(
            args.chromium,
            f"{base}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}?workflowType=machine_learning",
            "document.body.innerText.includes('two_stage_minus_direct')",
            args.out / "mlflow_parent_run.png",
            SCREEN,
            base,
            args.wait_s,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)  # the smoke comparison's runs and store: 258 MB otherwise
    return 0


if __name__ == "__main__":
    sys.exit(main())
