"""Remake the README's screenshots: the MLflow UI on a comparison, and the comparison's cost-ratio plot.

    python docs/screenshots.py                               # runs a smoke comparison in a temp folder first
    python docs/screenshots.py --tracking-uri sqlite:///$PWD/mlflow.db   # the latest comparison of a store

Needs headless Chromium (Debian/Ubuntu: ``apt-get install chromium``; or pass ``--chromium PATH``). It starts
``mlflow ui`` on 127.0.0.1, opens the experiment's runs table and the comparison parent run's page, and saves
``docs/mlflow_runs.png``, ``docs/mlflow_parent_run.png`` and ``docs/costs.png`` (the parent's
``comparison/costs.png`` artifact).
"""

from __future__ import annotations

import argparse
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
)


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


def screenshot(chromium: str, url: str, out: Path, size: str, wait_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium_") as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                f"--virtual-time-budget={wait_ms}",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(f"wrote {out}")


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
    parser.add_argument("--wait-ms", type=int, default=20000, help="time the page gets to render")
    args = parser.parse_args(argv)
    if not args.chromium:
        print(
            "error: no Chromium found; install it (apt-get install chromium) or pass --chromium PATH",
            file=sys.stderr,
        )
        return 2
    import mlflow

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
        exp = experiment.experiment_id
        screenshot(
            args.chromium,
            f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning",
            args.out / "mlflow_runs.png",
            "1600,900",
            args.wait_ms,
        )
        screenshot(
            args.chromium,
            f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}?workflowType=machine_learning",
            args.out / "mlflow_parent_run.png",
            "1600,1100",
            args.wait_ms,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
