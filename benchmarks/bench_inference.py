"""Inference speed and memory: two-stage vs direct, predict() overhead, the source's "500 images" figure.

Method (this machine is noisy, so everything compared is measured in one run, interleaved):
1. Latency (batch 1) and throughput (batch 64) of ``Attr2GenderPipeline.predict`` and
   ``DirectGenderClassifier.predict`` with the same backbone and image size, on pre-decoded PIL images.
   The two alternate within each repeat (order rotated per repeat); medians and paired ratios.
   The source study claims the two-stage route is about twice as slow; the target here is <= 1.05,
   because stage two is a tabular model on 39 numbers and there is no second image pass.
2. Overhead of ``predict()`` over a bare ``model(x)`` forward on the same batch of 64: predict's time
   minus preprocessing (resize/crop/normalise, timed alone) minus the bare forward, over the bare forward.
   JPEG decoding and preprocessing are reported separately. Target <= 10 %.
3. The source's "inference time for 500 images" for each preset backbone (direct route, batch 64).
4. Peak memory (RSS; CUDA max allocated on GPU) of ``predict`` over a folder at batch 64, for 1,000 and
   10,000 images, each in a fresh subprocess; streaming means it should not grow with the image count.

    python benchmarks/bench_inference.py            # a few minutes on 2 CPU cores
    python benchmarks/bench_inference.py --quick    # CI: proves the script works, judges nothing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES  # noqa: E402
from attr2gender.data.images import load_image  # noqa: E402
from attr2gender.data.synth import make_synthetic_celeba  # noqa: E402
from attr2gender.pipeline import Attr2GenderPipeline, DirectGenderClassifier  # noqa: E402
from attr2gender.tabular import StageTwoClassifier  # noqa: E402
from attr2gender.training import AttributeModel, DirectModel  # noqa: E402
from common import machine_info, markdown_table, paired_ratio, rotate, summarize, text_table, write_results  # noqa: E402


def build_pipelines(backbone: str, weights: str, image_size: int, device: str):
    """Both routes on the same backbone; stage two fitted on CelebA-like rates (speed does not depend on it)."""
    from attr2gender.data.attributes import CONDITIONAL_RATES, MALE_RATE

    rng = np.random.default_rng(0)
    male = rng.random(2000) < MALE_RATE
    rates = np.array([CONDITIONAL_RATES[a] for a in STAGE_ONE_ATTRIBUTES])  # (39, 2)
    X = (rng.random((2000, 39)) < np.where(male[:, None], rates[:, 1], rates[:, 0])).astype(float)
    stage_two = StageTwoClassifier(input_kind="binary").fit(X, male.astype(int))
    torch.manual_seed(0)
    two = Attr2GenderPipeline(AttributeModel(backbone=backbone, weights=weights), stage_two, image_size,
                              device=device, num_workers=0)  # fmt: skip
    direct = DirectGenderClassifier(DirectModel(backbone=backbone, weights=weights), image_size, device=device,
                                    num_workers=0)  # fmt: skip
    return two, direct


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def route_comparison(two, direct, images, batch: int, repeats: int, device: str) -> dict:
    """Seconds per image for each route, interleaved; returns summaries and the paired ratio."""
    chunk = images[:batch]
    for p in (two, direct):  # warm-up: allocator, kernels, lazy imports
        p.predict(chunk, progress=False, batch_size=batch)
    times = {"two_stage": [], "direct": []}
    for r in range(repeats):
        for name in rotate(["two_stage", "direct"], r):
            p = two if name == "two_stage" else direct
            if batch == 1:  # latency: one image per call, several calls
                calls = images[: max(4, min(16, len(images)))]
                t = timed(lambda p=p, calls=calls: [p.predict(im, progress=False, batch_size=1) for im in calls], device)
                times[name].append(t / len(calls))
            else:
                t = timed(lambda p=p: p.predict(chunk, progress=False, batch_size=batch), device)
                times[name].append(t / len(chunk))
    return {
        "two_stage_ms_per_image": summarize([t * 1e3 for t in times["two_stage"]]),
        "direct_ms_per_image": summarize([t * 1e3 for t in times["direct"]]),
        "ratio_two_stage_over_direct": paired_ratio(times["two_stage"], times["direct"]),
    }


def predict_overhead(pipeline, paths, batch: int, repeats: int, device: str) -> dict:
    """predict(PIL batch) against decode, preprocessing and a bare forward of the same batch."""
    paths = paths[:batch]
    images = [load_image(p) for p in paths]
    x = torch.stack([pipeline._transform(im) for im in images])
    model = pipeline.image_model.to(device).eval()
    with torch.no_grad():
        model.predict_proba(x.to(device))  # warm-up
    decode, preprocess, bare, predict = [], [], [], []
    for r in range(repeats):
        for step in rotate(["decode", "preprocess", "bare", "predict"], r):
            if step == "decode":
                decode.append(timed(lambda: [load_image(p) for p in paths], device))
            elif step == "preprocess":
                preprocess.append(timed(lambda: torch.stack([pipeline._transform(im) for im in images]), device))
            elif step == "bare":
                with torch.no_grad():
                    bare.append(timed(lambda: model.predict_proba(x.to(device)), device))
            else:
                predict.append(timed(lambda: pipeline.predict(images, progress=False, batch_size=batch), device))
    overhead = [(p - pre - b) / b for p, pre, b in zip(predict, preprocess, bare)]
    n = len(paths)
    return {
        "batch": n,
        "decode_ms_per_image": summarize([t / n * 1e3 for t in decode]),
        "preprocess_ms_per_image": summarize([t / n * 1e3 for t in preprocess]),
        "bare_forward_ms_per_image": summarize([t / n * 1e3 for t in bare]),
        "predict_ms_per_image": summarize([t / n * 1e3 for t in predict]),
        "predict_overhead_over_bare_forward": summarize(overhead),
    }


def five_hundred_images(backbones, n: int, image_size: int, batch: int, device: str, images) -> list[dict]:
    """The source's figure: seconds to predict ``n`` images with each backbone (direct route)."""
    pool = (images * (n // len(images) + 1))[:n]
    rows = []
    for name in backbones:
        torch.manual_seed(0)
        pipeline = DirectGenderClassifier(DirectModel(backbone=name, weights="none"), image_size, device=device,
                                          num_workers=0)  # fmt: skip
        pipeline.predict(pool[:batch], progress=False, batch_size=batch)  # warm-up
        seconds = timed(lambda p=pipeline: p.predict(pool, progress=False, batch_size=batch), device)
        params = sum(p.numel() for p in pipeline.image_model.parameters())
        rows.append({"backbone": name, "images": n, "seconds": seconds, "images_per_s": n / seconds,
                     "params_millions": params / 1e6})  # fmt: skip
        del pipeline
    return rows


MEMORY_CHILD = r"""
import json, resource, sys, threading, time, torch
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench_inference import build_pipelines
backbone, image_size, folder, n, device = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), sys.argv[6]

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

two, _ = build_pipelines(backbone, "none", image_size, device)
two.num_workers = 2
paths = sorted(folder.glob("*.jpg"))
paths = (paths * (n // len(paths) + 1))[:n]
two.predict(paths[:64], progress=False, batch_size=64)  # warm-up: allocator and kernels, not growth
baseline, peak, running = rss_mb(), [0.0], [True]
def sample():
    while running[0]:
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.02)
thread = threading.Thread(target=sample, daemon=True)
thread.start()
frame = two.predict(paths, progress=False, batch_size=64)
running[0] = False
thread.join()
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
print(json.dumps({"images": n, "rows": len(frame), "rss_mb_before_predict": baseline, "peak_rss_mb": peak[0],
                  "growth_mb": peak[0] - baseline, "peak_worker_rss_mb": children / 1024,
                  "cuda_max_allocated_mb": cuda}))
"""


def memory_growth(backbone: str, image_size: int, folder: Path, counts, device: str) -> list[dict]:
    rows = []
    for n in counts:
        proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(Path(__file__).parent), backbone,
                               str(image_size), str(folder), str(n), device],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"memory child failed for {n} images:\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default="none", help="speed does not depend on the weights' values")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-500", type=int, default=500, help="images for the source's '500 images' figure")
    parser.add_argument("--size-500", type=int, default=128, help="image size for that figure (source: 224)")
    parser.add_argument("--presets", default="resnet18,resnet50,vgg16,googlenet,efficientnet_lite0")
    parser.add_argument("--memory-counts", default="1000,10000")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--quick", action="store_true", help="tiny and fast, for CI: proves the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.backbone, args.image_size, args.repeats = "test_efficientnet", 32, 1
        args.n_500, args.size_500, args.presets, args.memory_counts = 64, 32, "test_efficientnet", "100,300"
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)

    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_celeba(Path(tmp) / "celeba", n=64 if args.quick else 256, seed=0,
                                     image_size=max(64, args.image_size))  # fmt: skip
        paths = sorted((root / "img_align_celeba").glob("*.jpg"))
        images = [load_image(p) for p in paths]
        two, direct = build_pipelines(args.backbone, args.weights, args.image_size, device)
        print(f"device {device}, backbone {args.backbone}, {args.image_size} px", flush=True)
        latency = route_comparison(two, direct, images, 1, args.repeats, device)
        throughput = route_comparison(two, direct, images, 64, args.repeats, device)
        overhead = predict_overhead(two, paths, 64, args.repeats, device)
        presets = five_hundred_images(args.presets.split(","), args.n_500, args.size_500, 64, device, images)
        memory = memory_growth("test_efficientnet" if args.quick else args.backbone, args.image_size,
                               root / "img_align_celeba", [int(c) for c in args.memory_counts.split(",")], device)  # fmt: skip

    ratio_b1 = latency["ratio_two_stage_over_direct"]["median"]
    ratio_b64 = throughput["ratio_two_stage_over_direct"]["median"]
    rows = [
        ["latency, batch 1 (ms/image)", latency["two_stage_ms_per_image"]["median"],
         latency["direct_ms_per_image"]["median"], ratio_b1],
        ["throughput, batch 64 (ms/image)", throughput["two_stage_ms_per_image"]["median"],
         throughput["direct_ms_per_image"]["median"], ratio_b64],
    ]  # fmt: skip
    print(text_table(["measure", "two-stage", "direct", "two-stage / direct"], rows))
    o = overhead
    print(text_table(["batch 64, ms/image", "median"], [
        ["JPEG decode", o["decode_ms_per_image"]["median"]],
        ["preprocess (resize, crop, normalise)", o["preprocess_ms_per_image"]["median"]],
        ["bare model(x)", o["bare_forward_ms_per_image"]["median"]],
        ["predict(PIL images)", o["predict_ms_per_image"]["median"]],
    ]))  # fmt: skip
    print(text_table(["backbone", "images", "seconds", "images/s", "params (M)"],
                     [[r["backbone"], r["images"], r["seconds"], r["images_per_s"], r["params_millions"]]
                      for r in presets]))  # fmt: skip
    print(text_table(["images", "RSS before (MB)", "peak RSS during predict (MB)", "growth (MB)", "peak worker RSS (MB)"],
                     [[m["images"], m["rss_mb_before_predict"], m["peak_rss_mb"], m["growth_mb"],
                       m["peak_worker_rss_mb"]] for m in memory]))  # fmt: skip
    growth = memory[-1]["peak_rss_mb"] / memory[0]["peak_rss_mb"]
    payload = {
        "machine": machine_info(), "quick": args.quick, "device": device, "backbone": args.backbone,
        "image_size": args.image_size, "repeats": args.repeats, "latency_batch_1": latency,
        "throughput_batch_64": throughput, "predict_overhead_batch_64": overhead, "five_hundred_images": presets,
        "five_hundred_images_size": args.size_500, "memory": memory, "memory_growth_ratio": growth,
    }  # fmt: skip
    md = "\n\n".join([
        f"Inference, {device}, `{args.backbone}` at {args.image_size} px, {args.repeats} interleaved repeats "
        f"(medians), {payload['machine']['date']}.",
        markdown_table(["measure", "two-stage", "direct", "two-stage / direct"], rows),
        markdown_table(["batch 64, ms/image", "median"], [
            ["JPEG decode", o["decode_ms_per_image"]["median"]],
            ["preprocess", o["preprocess_ms_per_image"]["median"]],
            ["bare model(x)", o["bare_forward_ms_per_image"]["median"]],
            ["predict()", o["predict_ms_per_image"]["median"]],
            ["predict() overhead over bare forward", o["predict_overhead_over_bare_forward"]["median"]],
        ]),
        f"Inference time for {args.n_500} images at {args.size_500} px, batch 64 (the source's figure):",
        markdown_table(["backbone", "seconds", "images/s", "params (M)"],
                       [[r["backbone"], r["seconds"], r["images_per_s"], r["params_millions"]] for r in presets]),
        "Memory of `predict` over a folder at batch 64 (main process RSS sampled every 20 ms; workers' peak):",
        markdown_table(["images predicted", "RSS before (MB)", "peak RSS during predict (MB)", "growth (MB)",
                        "peak worker RSS (MB)"],
                       [[m["images"], m["rss_mb_before_predict"], m["peak_rss_mb"], m["growth_mb"],
                         m["peak_worker_rss_mb"]] for m in memory]),
    ])  # fmt: skip
    name = "bench_inference_quick" if args.quick else "bench_inference"
    paths_written = write_results(args.out, name, payload, md)
    print(f"results: {paths_written['json']}")
    print(f"predict() overhead over bare forward at batch 64: {o['predict_overhead_over_bare_forward']['median']:+.1%}")
    print(f"peak RSS during predict, {memory[0]['images']:,} -> {memory[-1]['images']:,} images: x{growth:.2f} "
          f"(growth {memory[0]['growth_mb']:.0f} MB -> {memory[-1]['growth_mb']:.0f} MB)")
    print(f"two-stage / direct inference time: batch 1 x{ratio_b1:.3f}, batch 64 x{ratio_b64:.3f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
