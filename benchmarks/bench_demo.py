"""The demo page (``attr2gender demo``), measured as a person meets it: time from the command to the first
page, seconds per photo on the page, and the server's memory over 200 uploads.

* **Start:** ``python -m attr2gender demo`` (the shipped two-stage model) in a fresh process, timed from the
  start of the process to the first answer of ``GET /`` (imports, the model, Gradio), ``--starts`` times.
* **Per photo:** one upload through the page's own event (``gradio_client``, as the browser sends it: the file
  uploaded, the faces found and read, the bars and the waterfall drawn), cycling over real photos
  (``../shared/wild_dev``, UTKFace and LFW, when there; else the bundled synthetic examples). The time is what
  the caller waits, so it includes the upload and the answer's transfer.
* **Memory:** the server's RSS after every 20 uploads; flat means the least-squares slope over uploads 40 to
  200 (after warm-up) is near 0, reported with its 95 % interval.

    python benchmarks/bench_demo.py                  # about 5 minutes on 2 CPU cores
    python benchmarks/bench_demo.py --uploads 40     # shorter

Results: ``benchmarks/results/bench_demo.{json,md}``.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, machine_info, md_table, write_results  # noqa: E402

WILD = REPO_ROOT.parent / "shared" / "wild_dev"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int, timeout: float = 180.0) -> tuple[subprocess.Popen, float]:
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False"}
    began = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "attr2gender", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while time.perf_counter() - began < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                if reply.status == 200:
                    return server, time.perf_counter() - began
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"attr2gender demo did not answer within {timeout:.0f} s")


def photos() -> list[Path]:
    found = []
    for source in ("utkface", "lfw"):
        found += sorted((WILD / source).glob("*.jpg"))[:50]
    if found:
        return found
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from attr2gender.demo.session import example_photos

    return [Path(p) for p in example_photos()]


def slope_interval(x, y) -> tuple[float, float, float]:
    """Least-squares slope and its 95 % t interval."""
    import numpy as np
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    fit = stats.linregress(x, y)
    t = stats.t.ppf(0.975, len(x) - 2)
    return fit.slope, fit.slope - t * fit.stderr, fit.slope + t * fit.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    import psutil
    from gradio_client import Client, handle_file

    starts = []
    for _ in range(args.starts - 1):
        server, seconds = start(_free_port())
        starts.append(seconds)
        server.terminate()
        server.wait(30)
    port = _free_port()
    server, seconds = start(port)
    starts.append(seconds)
    process = psutil.Process(server.pid)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        pool = photos()
        waits, memory, failed = [], [(0, process.memory_info().rss / 2**20)], 0
        for i in range(args.uploads):
            began = time.perf_counter()
            answer = client.predict(handle_file(str(pool[i % len(pool)])), api_name="/on_upload")
            waits.append(time.perf_counter() - began)
            failed += bool(answer[0]) and "faces found" not in str(answer[0])  # the page's message, if any
            if (i + 1) % 20 == 0:
                memory.append((i + 1, process.memory_info().rss / 2**20))
                print(
                    f"{i + 1} uploads: {statistics.median(waits):.2f} s per photo, RSS {memory[-1][1]:.0f} MB"
                )
    finally:
        server.terminate()
        server.wait(30)
    later = [(n, mb) for n, mb in memory if n >= 40]
    slope, low, high = slope_interval(*zip(*later)) if len(later) >= 3 else (math.nan,) * 3
    waits_sorted = sorted(waits)
    quartiles = statistics.quantiles(waits, n=4) if len(waits) >= 4 else [math.nan] * 3
    result = {
        "machine": machine_info(),
        "photos": f"{len(pool)} photos from {'wild_dev (UTKFace, LFW)' if WILD.is_dir() else 'the examples'}",
        "start_seconds": starts,
        "per_photo_seconds": {
            "median": statistics.median(waits),
            "q1": quartiles[0],
            "q3": quartiles[2],
            "min": waits_sorted[0],
            "max": waits_sorted[-1],
            "n": len(waits),
        },
        "photos_with_a_message": failed,
        "rss_mb": memory,
        "rss_slope_mb_per_100_uploads": {"slope": 100 * slope, "ci95": [100 * low, 100 * high]},
    }
    rows = [
        [
            "start to first page (s)",
            f"{statistics.median(starts):.1f}",
            f"{min(starts):.1f} to {max(starts):.1f}",
            len(starts),
        ],
        [
            "seconds per photo on the page",
            f"{statistics.median(waits):.2f}",
            f"IQR {quartiles[0]:.2f} to {quartiles[2]:.2f}",
            len(waits),
        ],
        [
            "RSS growth per 100 uploads after 40 (MB)",
            f"{100 * slope:+.1f}",
            f"95 % CI {100 * low:+.1f} to {100 * high:+.1f}",
            len(later),
        ],
    ]
    markdown = "\n".join(
        [
            "# The demo page (`python benchmarks/bench_demo.py`)",
            "",
            f"{time.strftime('%Y-%m-%d')}, {result['machine'].get('cpu_count', '?')} CPU cores; "
            f"{result['photos']}; the shipped two-stage model.",
            "",
            md_table(["what", "median", "spread", "n"], rows),
            "",
            "RSS after N uploads (MB): " + ", ".join(f"{n}: {mb:.0f}" for n, mb in memory),
            "",
            f"Photos answered with a message instead of a decision: {failed} of {len(waits)}.",
        ]
    )
    write_results(args.out, "bench_demo", result, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
