"""Peak memory of one served-model request of a few large base64 JPEGs (``predict_frame``).

The request the attack sent: 6 rows, each an 88-Mpx JPEG (11,480 x 7,665 px) sent as base64, scored
with ``align="none"`` by a tiny untrained pipeline (the forward pass reads 32-px crops; what is measured
is decoding). Each scenario runs in a fresh subprocess; the peak is VmHWM (peak RSS, reset through
``/proc/self/clear_refs`` just before the request) minus VmRSS just before it, so the request's
own bytes (the DataFrame of base64 text) are not counted.

Scenarios: ``default`` (the served model's default params) and, where the code accepts them,
``raised caps`` (``max_pixels`` and ``max_request_pixels`` raised so that every image is decoded: the
memory of per-batch decoding itself).

    python benchmarks/bench_serve_memory.py            # about a minute on 2 CPU cores
    python benchmarks/bench_serve_memory.py --rows 2   # smaller
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, machine_info, md_table, text_table, write_results  # noqa: E402

SIZE = (11_480, 7_665)  # 88.0 Mpx, just under Pillow's own 89.5-Mpx warning


def make_jpeg(path: Path) -> None:
    """A smooth gradient with some texture: about 10 MB as a quality-85 JPEG."""
    import numpy as np
    from PIL import Image

    w, h = SIZE
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    rows = []
    for y0 in range(0, h, 1024):  # in strips: the benchmark itself should not need gigabytes
        y = np.linspace(0, 255, h, dtype=np.float32)[y0 : y0 + 1024, None]
        noise = rng.normal(0, 4, (len(y), w)).astype(np.float32)
        band = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1) + noise[..., None]
        rows.append(np.clip(band, 0, 255).astype(np.uint8))
    Image.fromarray(np.concatenate(rows)).save(path, quality=85)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(jpeg: Path, rows: int, params: dict | None) -> dict:
    import numpy as np
    import pandas as pd
    import torch
    from PIL import Image

    from attr2gender.pipeline import Attr2GenderPipeline
    from attr2gender.tabular import StageTwoClassifier
    from attr2gender.tracking.pyfunc_model import predict_frame
    from attr2gender.training import AttributeModel

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stage_two = StageTwoClassifier().fit(rng.random((40, 39)), rng.integers(0, 2, 40))
    pipeline = Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        32,
        num_workers=0,
        align="none",
    )
    text = base64.b64encode(jpeg.read_bytes()).decode("ascii")
    request = pd.DataFrame({"image_base64": [text] * rows})
    small = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(small, format="PNG")
    warm = pd.DataFrame({"image_base64": [base64.b64encode(small.getvalue()).decode("ascii")]})
    predict_frame(pipeline, warm, {"align": "none"})  # torch's first forward pass is not the request's
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    before = _status("VmRSS")
    out = predict_frame(pipeline, request, {"align": "none", **(params or {})})
    peak = _status("VmHWM")
    return {
        "rss_before_mb": before / 2**20,
        "peak_rss_mb": peak / 2**20,
        "request_peak_mb": (peak - before) / 2**20,
        "predicted": int(out["male_probability"].notna().sum()),
        "errors": sorted({e.split(": ", 1)[-1][:160] for e in out["error"] if e}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    parser.add_argument("--label", default="", help="a note for the result file (e.g. 'before the fix')")
    parser.add_argument("--child", nargs=3, metavar=("JPEG", "ROWS", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        jpeg, rows, params = args.child
        print(json.dumps(child(Path(jpeg), int(rows), json.loads(params))))
        return
    scenarios = {
        "default": {},
        "raised caps": {"max_pixels": 100_000_000, "max_request_pixels": 1_000_000_000},
    }
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = Path(tmp) / "big.jpg"
        make_jpeg(jpeg)
        size_mb = jpeg.stat().st_size / 1e6
        results = {}
        for name, params in scenarios.items():
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(jpeg), str(args.rows), json.dumps(params)],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                results[name] = {"failed": last}
                continue
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    headers = ["scenario", "request peak (MB)", "peak RSS (MB)", "predicted", "errors"]
    table = [
        [
            name,
            r.get("request_peak_mb", float("nan")),
            r.get("peak_rss_mb", float("nan")),
            r.get("predicted", "-"),
            "; ".join(r.get("errors", [])) or r.get("failed", ""),
        ]
        for name, r in results.items()
    ]
    print(f"{args.rows} rows of a {SIZE[0]}x{SIZE[1]} JPEG ({size_mb:.1f} MB) {args.label}")
    print(text_table(headers, table, digits=1))
    payload = {
        "label": args.label,
        "rows": args.rows,
        "image_px": list(SIZE),
        "jpeg_mb": size_mb,
        "results": results,
        "machine": machine_info(),
    }
    title = f"# Served-model request memory {args.label}\n\n{args.rows} base64 rows of a {SIZE[0]}x{SIZE[1]} JPEG "
    markdown = title + f"({size_mb:.1f} MB), align=none.\n\n" + md_table(headers, table, digits=1) + "\n"
    name = "bench_serve_memory" + ("_" + args.label.replace(" ", "_") if args.label else "")
    write_results(args.out, name, payload, markdown)


if __name__ == "__main__":
    main()
