"""Inference speed and memory: runtimes, two-stage vs direct, predict() overhead, the source's "500 images".

Method (this machine is noisy, so everything compared is measured in one run, interleaved):
0. Runtimes of the forward pass (the direct model's :class:`ProbabilityModel`, preprocessed batches) at
   ``--runtime-sizes`` (128 and 224 px), batch 1 and 64: eager (fp32, contiguous: the path before this
   benchmark's issue), channels-last, bf16 (channels-last + CPU autocast), ``torch.compile`` (channels-last;
   reported as failed if it does not work here) and ONNX Runtime. Achieved GFLOP/s (FLOPs counted by
   ``torch.utils.flop_counter``, one multiply-add = 2) against a peak estimate: cores x clock x FLOPs per
   cycle (32 for fp32 on AMD Zen 4: two 256-bit FMA pipes, AVX-512 double-pumped; 64 on Zen 5 / Intel
   with two 512-bit FMA units). Then ``predict()`` of both routes on each runtime (two-stage / direct per
   runtime) and the CPU default's ``predict()`` throughput against eager's.
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
5. Face alignment's cost: ``predict(align="auto")`` over ``align="none"`` on the same 250x250 photos (crops
   pasted into larger canvases: CelebA's with ``--faces-root``, else synthetic faces) at batch 64, both
   routes, interleaved. Target <= 1.5x.

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
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES  # noqa: E402
from attr2gender.data.images import load_image  # noqa: E402
from attr2gender.data.synth import make_synthetic_celeba  # noqa: E402
from attr2gender.models import TorchRuntime  # noqa: E402
from attr2gender.pipeline import Attr2GenderPipeline, DirectGenderClassifier, load_pipeline  # noqa: E402
from attr2gender.pipeline.runtime import OnnxRuntime, onnx_export_available, onnx_runtime_available  # noqa: E402
from attr2gender.tabular import StageTwoClassifier  # noqa: E402
from attr2gender.training import AttributeModel, DirectModel  # noqa: E402
from common import machine_info, md_table, paired_ratio, rotate, summarize, text_table, write_results  # noqa: E402


def build_pipelines(backbone: str, weights: str, image_size: int, device: str):
    """Both routes on the same backbone; stage two fitted on CelebA-like rates (speed does not depend on it)."""
    from attr2gender.data.attributes import CONDITIONAL_RATES, MALE_RATE

    rng = np.random.default_rng(0)
    male = rng.random(2000) < MALE_RATE
    rates = np.array([CONDITIONAL_RATES[a] for a in STAGE_ONE_ATTRIBUTES])  # (39, 2)
    X = (rng.random((2000, 39)) < np.where(male[:, None], rates[:, 1], rates[:, 0])).astype(float)
    stage_two = StageTwoClassifier(input_kind="binary").fit(X, male.astype(int))
    torch.manual_seed(0)
    # align="none": these sections time the models on crops; alignment's cost has its own section.
    two = Attr2GenderPipeline(
        AttributeModel(backbone=backbone, weights=weights),
        stage_two,
        image_size,
        device=device,
        num_workers=0,
        align="none",
    )
    direct = DirectGenderClassifier(
        DirectModel(backbone=backbone, weights=weights),
        image_size,
        device=device,
        num_workers=0,
        align="none",
    )
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
                t = timed(
                    lambda p=p, calls=calls: [p.predict(im, progress=False, batch_size=1) for im in calls],
                    device,
                )
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
    preprocessing = pipeline._transform  # predict's own path: per-image crop to uint8, one batched normalise
    x = preprocessing.batch([preprocessing.image(im) for im in images])
    forward = pipeline.forward_runtime  # the runtime predict() uses (ONNX Runtime on CPU by default)
    forward(x)  # warm-up
    decode, preprocess, bare, predict = [], [], [], []
    for r in range(repeats):
        for step in rotate(["decode", "preprocess", "bare", "predict"], r):
            if step == "decode":
                decode.append(timed(lambda: [load_image(p) for p in paths], device))
            elif step == "preprocess":
                preprocess.append(
                    timed(lambda: preprocessing.batch([preprocessing.image(im) for im in images]), device)
                )
            elif step == "bare":
                bare.append(timed(lambda: forward(x), device))
            else:
                predict.append(
                    timed(lambda: pipeline.predict(images, progress=False, batch_size=batch), device)
                )
    overhead = [(p - pre - b) / b for p, pre, b in zip(predict, preprocess, bare)]
    n = len(paths)
    return {
        "batch": n,
        "runtime": forward.describe(),
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
        pipeline = DirectGenderClassifier(
            DirectModel(backbone=name, weights="none"), image_size, device=device, num_workers=0, align="none"
        )
        pipeline.predict(pool[:batch], progress=False, batch_size=batch)  # warm-up
        seconds = timed(lambda p=pipeline: p.predict(pool, progress=False, batch_size=batch), device)
        params = sum(p.numel() for p in pipeline.image_model.parameters())
        rows.append(
            {
                "backbone": name,
                "images": n,
                "seconds": seconds,
                "images_per_s": n / seconds,
                "params_millions": params / 1e6,
            }
        )
        del pipeline
    return rows


# ----------------------------------------------------------------------------------------------- runtimes

RUNTIMES = ("eager", "channels_last", "bf16", "compile", "onnx")
SINGLES = 8  # batch-1 calls per timed repeat
RUNTIME_LABELS = {
    "eager": "eager (fp32, contiguous)",
    "channels_last": "channels-last (fp32)",
    "bf16": "bf16 (channels-last, autocast)",
    "compile": "torch.compile (channels-last)",
    "onnx": "ONNX Runtime (fp32)",
}


def peak_gflops() -> dict:
    """cores x clock x fp32 FLOPs per cycle: an estimate, stated with its parts."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ghz, family = float("nan"), None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz") and not np.isfinite(ghz):
                ghz = float(line.split(":")[1]) / 1000
            elif line.startswith("cpu family") and family is None:
                family = int(line.split(":")[1])
    except (OSError, ValueError):
        pass
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    # AMD family 25 (Zen 3/4) executes AVX-512 on 256-bit pipes: 2 FMA x 8 fp32 lanes x 2 FLOPs = 32.
    per_cycle = 32 if family == 25 or "avx512f" not in flags else 64
    return {"cores": cores, "ghz": ghz, "flops_per_cycle": per_cycle, "gflops": cores * ghz * per_cycle}


def flops_per_image(module, image_size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(1, 3, image_size, image_size))
    return float(counter.get_total_flops())


def make_runtimes(pipeline, onnx_path: Path | None, names=RUNTIMES) -> tuple[dict, dict]:
    """One runtime object per name, each on its own copy of the weights; failures are reported, not raised."""
    import copy

    made, failed = {}, {}
    module = pipeline.image_model
    for name in names:
        try:
            if name == "eager":
                made[name] = TorchRuntime(copy.deepcopy(module), "cpu", "fp32", channels_last=False)
            elif name == "channels_last":
                made[name] = TorchRuntime(copy.deepcopy(module), "cpu", "fp32")
            elif name == "bf16":
                made[name] = TorchRuntime(copy.deepcopy(module), "cpu", "bf16")
            elif name == "compile":
                rt = TorchRuntime(copy.deepcopy(module), "cpu", "fp32")
                rt.module = torch.compile(rt.module, dynamic=True)
                rt.name = "compile"
                made[name] = rt
            elif name == "onnx":
                if onnx_path is None or not onnx_runtime_available():
                    raise RuntimeError("the [onnx] extra is not installed")
                made[name] = OnnxRuntime(onnx_path)
        except Exception as exc:  # a runtime that cannot run here is a result, not a crash
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return made, failed


def warm(runtimes: dict, x: torch.Tensor, failed: dict) -> None:
    """First calls (compilation for torch.compile); a runtime that fails here is dropped and reported."""
    for name in list(runtimes):
        try:
            start = time.perf_counter()
            runtimes[name](x[:1])
            runtimes[name](x)
            if name == "compile":
                failed.setdefault("compile_seconds", f"{time.perf_counter() - start:.1f}")
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            del runtimes[name]


def forward_speeds(backbone: str, sizes, repeats: int, tmp: Path) -> dict:
    """ms/image of each runtime's forward pass at batch 1 and 64, interleaved; GFLOP/s at batch 64."""
    out = {"peak": peak_gflops(), "by_size": {}}
    for size in sizes:
        torch.manual_seed(0)
        pipe = DirectGenderClassifier(DirectModel(backbone=backbone, weights="none"), size, num_workers=0)
        onnx_path = pipe.export_onnx(tmp / f"forward_{size}.onnx") if onnx_export_available() else None
        runtimes, failed = make_runtimes(pipe, onnx_path)
        x = torch.randn(64, 3, size, size)
        warm(runtimes, x, failed)
        flops = flops_per_image(pipe.image_model, size)
        times = {(name, b): [] for name in runtimes for b in (1, 64)}
        for r in range(repeats):
            for name in rotate(list(runtimes), r):
                rt = runtimes[name]
                times[(name, 64)].append(timed(lambda rt=rt, x=x: rt(x), "cpu") / 64)
                times[(name, 1)].append(
                    timed(lambda rt=rt, x=x: [rt(x[i : i + 1]) for i in range(SINGLES)], "cpu") / SINGLES
                )
        rows = {}
        eager64 = times.get(("eager", 64))
        for name in runtimes:
            ms64 = summarize([t * 1e3 for t in times[(name, 64)]])
            rows[name] = {
                "label": RUNTIME_LABELS[name],
                "ms_per_image_b1": summarize([t * 1e3 for t in times[(name, 1)]]),
                "ms_per_image_b64": ms64,
                "gflops_b64": flops / 1e9 / (ms64["median"] / 1e3),
                "speedup_over_eager_b64": paired_ratio(eager64, times[(name, 64)]) if eager64 else None,
            }
        out["by_size"][str(size)] = {"flops_per_image": flops, "runtimes": rows, "failed": failed}
        print(
            f"forward {size}px: "
            + ", ".join(f"{n} {v['ms_per_image_b64']['median']:.2f} ms/img" for n, v in rows.items()),
            flush=True,
        )
    return out


def routes_per_runtime(two, direct, images, size: int, repeats: int, names, tmp: Path) -> dict:
    """predict() of both routes on each runtime: two-stage / direct, and throughput against eager."""
    two_onnx = two.export_onnx(tmp / "two.onnx") if onnx_export_available() else None
    direct_onnx = direct.export_onnx(tmp / "direct.onnx") if onnx_export_available() else None
    two_rt, failed = make_runtimes(two, two_onnx, names)
    direct_rt, failed_d = make_runtimes(direct, direct_onnx, names)
    failed |= failed_d
    out = {"image_size": size, "by_runtime": {}, "failed": failed}
    for name in [n for n in names if n in two_rt and n in direct_rt]:
        two.set_runtime(two_rt[name])
        direct.set_runtime(direct_rt[name])
        out["by_runtime"][name] = {
            "label": RUNTIME_LABELS[name],
            "batch_1": route_comparison(two, direct, images, 1, repeats, "cpu"),
            "batch_64": route_comparison(two, direct, images, 64, repeats, "cpu"),
        }
    two.set_runtime("auto")
    direct.set_runtime("auto")
    return out


def alignment_cost(
    pipelines: dict, photos: list, batch: int, repeats: int, device: str, workers: int = 0
) -> dict:
    """``predict(align="auto")`` over ``predict(align="none")`` on the same photos, per pipeline, interleaved
    (mode order rotated per repeat); paired ratios of ms per image. ``photos``: pre-decoded PIL images (one
    batch of them, decoded and aligned in this process) or file paths (all of them, read by ``workers``
    decoding workers as ``predict`` does for a folder: aligned in threads ahead of the forward pass)."""
    chunk = photos[:batch] if not isinstance(photos[0], Path) else photos
    out = {}
    for name, pipe in pipelines.items():
        pipe.num_workers = workers
        frame = pipe.predict(chunk, progress=False, batch_size=batch, align="auto")  # warm-up (+ detector)
        pipe.predict(chunk, progress=False, batch_size=batch, align="none")
        times = {"auto": [], "none": []}
        for r in range(repeats):
            for mode in rotate(["auto", "none"], r):
                t = timed(
                    lambda m=mode, p=pipe: p.predict(chunk, progress=False, batch_size=batch, align=m), device
                )
                times[mode].append(t / len(chunk))
        out[name] = {
            "auto_ms_per_image": summarize([t * 1e3 for t in times["auto"]]),
            "none_ms_per_image": summarize([t * 1e3 for t in times["none"]]),
            "ratio_auto_over_none": paired_ratio(times["auto"], times["none"]),
            "faces_found": float(frame["male_probability"].notna().mean()),
        }
        pipe.num_workers = 0
    return out


def alignment_photos(crops: list, n: int, side: int = 250) -> list:
    """``n`` photo-like test images at ``side`` x ``side`` px, framed like LFW's 250 x 250 photos (the crop
    takes about half the side: eyes ~30-45 px apart): crops pasted into canvases 1.4-2.2 times their size at
    a random position, scale and rotation (see attr2gender.data.composites)."""
    from attr2gender.data.composites import make_composites

    made = make_composites(crops, n, seed=0, canvas_factor=(1.4, 2.2))
    return [c.image.resize((side, side), Image.BILINEAR) for c in made]


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
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMORY_CHILD,
                str(Path(__file__).parent),
                backbone,
                str(image_size),
                str(folder),
                str(n),
                device,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
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
    parser.add_argument("--runtime-sizes", default="128,224", help="image sizes of the runtime section")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--faces-root",
        type=Path,
        default=None,
        help="CelebA root whose crops make the alignment section's 250x250 photos (default: synthetic faces)",
    )
    parser.add_argument("--align-photos", type=int, default=128, help="photos in the alignment section")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--quick", action="store_true", help="tiny and fast, for CI: proves the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.backbone, args.image_size, args.repeats = "test_efficientnet", 32, 1
        args.n_500, args.size_500, args.presets, args.memory_counts = 64, 32, "test_efficientnet", "100,300"
        args.runtime_sizes, args.align_photos = "32", 16
    device = (
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_celeba(
            Path(tmp) / "celeba", n=64 if args.quick else 256, seed=0, image_size=max(64, args.image_size)
        )
        paths = sorted((root / "img_align_celeba").glob("*.jpg"))
        images = [load_image(p) for p in paths]
        two, direct = build_pipelines(args.backbone, args.weights, args.image_size, device)
        # As users get them: saved and loaded, so runtime="auto" picks what a loaded bundle runs on
        # (ONNX Runtime on CPU when the [onnx] extra is installed).
        two = load_pipeline(two.save(Path(tmp) / "two"), device=device, num_workers=0, align="none")
        direct = load_pipeline(direct.save(Path(tmp) / "direct"), device=device, num_workers=0, align="none")
        default_runtime = direct.forward_runtime.describe()
        default_key = (
            "onnx"
            if direct.forward_runtime.name == "onnx"
            else ("bf16" if direct.forward_runtime.precision == "bf16" else "channels_last")
        )
        print(
            f"device {device}, backbone {args.backbone}, {args.image_size} px, default runtime {default_runtime}",
            flush=True,
        )
        forward, routes = None, None
        if device == "cpu":
            sizes = [int(x) for x in args.runtime_sizes.split(",") if x.strip()]
            forward = forward_speeds(args.backbone, sizes, args.repeats, Path(tmp))
            worked = [n for n in RUNTIMES if all(n in v["runtimes"] for v in forward["by_size"].values())]
            routes = routes_per_runtime(two, direct, images, args.image_size, args.repeats, worked, Path(tmp))
        latency = route_comparison(two, direct, images, 1, args.repeats, device)
        throughput = route_comparison(two, direct, images, 64, args.repeats, device)
        overhead = predict_overhead(two, paths, 64, args.repeats, device)
        crops = (
            sorted((args.faces_root / "img_align_celeba").glob("*.jpg"))[: max(64, args.align_photos)]
            if args.faces_root is not None
            else paths
        )
        photos = alignment_photos(crops, args.align_photos)
        batch = min(64, len(photos))
        routes_both = {"two_stage": two, "direct": direct}
        photo_dir = Path(tmp) / "photos"
        photo_dir.mkdir()
        photo_files = []
        for i, photo in enumerate(photos * max(1, 256 // len(photos))):  # several batches: the folder case
            photo_files.append(photo_dir / f"{i:04d}.jpg")
            photo.save(photo_files[-1], quality=95)
        alignment = {
            "memory": alignment_cost(routes_both, photos, batch, args.repeats, device),
            "files": alignment_cost(routes_both, photo_files, batch, args.repeats, device, workers=2),
        }
        presets = five_hundred_images(args.presets.split(","), args.n_500, args.size_500, 64, device, images)
        memory = memory_growth(
            "test_efficientnet" if args.quick else args.backbone,
            args.image_size,
            root / "img_align_celeba",
            [int(c) for c in args.memory_counts.split(",")],
            device,
        )

    ratio_b1 = latency["ratio_two_stage_over_direct"]["median"]
    ratio_b64 = throughput["ratio_two_stage_over_direct"]["median"]
    rows = [
        [
            "latency, batch 1 (ms/image)",
            latency["two_stage_ms_per_image"]["median"],
            latency["direct_ms_per_image"]["median"],
            ratio_b1,
        ],
        [
            "throughput, batch 64 (ms/image)",
            throughput["two_stage_ms_per_image"]["median"],
            throughput["direct_ms_per_image"]["median"],
            ratio_b64,
        ],
    ]
    print(text_table(["measure", "two-stage", "direct", "two-stage / direct"], rows))
    o = overhead
    print(
        text_table(
            ["batch 64, ms/image", "median"],
            [
                ["JPEG decode", o["decode_ms_per_image"]["median"]],
                ["preprocess (resize, crop, normalise)", o["preprocess_ms_per_image"]["median"]],
                ["bare model(x)", o["bare_forward_ms_per_image"]["median"]],
                ["predict(PIL images)", o["predict_ms_per_image"]["median"]],
            ],
        )
    )
    print(
        text_table(
            ["backbone", "images", "seconds", "images/s", "params (M)"],
            [
                [r["backbone"], r["images"], r["seconds"], r["images_per_s"], r["params_millions"]]
                for r in presets
            ],
        )
    )
    print(
        text_table(
            [
                "images",
                "RSS before (MB)",
                "peak RSS during predict (MB)",
                "growth (MB)",
                "peak worker RSS (MB)",
            ],
            [
                [
                    m["images"],
                    m["rss_mb_before_predict"],
                    m["peak_rss_mb"],
                    m["growth_mb"],
                    m["peak_worker_rss_mb"],
                ]
                for m in memory
            ],
        )
    )
    growth = memory[-1]["peak_rss_mb"] / memory[0]["peak_rss_mb"]
    forward_rows, route_rows, default_speedup = runtime_tables(forward, routes, default_key)
    forward_headers = [
        "size",
        "runtime",
        "ms/image b1",
        "ms/image b64",
        "speedup vs eager b64",
        "GFLOP/s b64",
        "share of peak",
    ]
    route_headers = [
        "runtime",
        "two-stage ms/image b64",
        "direct ms/image b64",
        "two-stage / direct b1",
        "two-stage / direct b64",
        "direct predict() vs eager b64",
    ]
    if forward:
        print(text_table(forward_headers, forward_rows))
        print(text_table(route_headers, route_rows))
    align_headers = [
        "photos",
        "pipeline",
        "align=none ms/image",
        "align=auto ms/image",
        "auto / none",
        "faces found",
    ]
    sources = {
        "memory": f"{len(photos)} in memory, one batch, this process",
        "files": f"{len(photo_files)} JPEG files, 2 workers (as for a folder)",
    }
    align_rows = [
        [
            sources[source],
            name,
            a["none_ms_per_image"]["median"],
            a["auto_ms_per_image"]["median"],
            a["ratio_auto_over_none"]["median"],
            a["faces_found"],
        ]
        for source, by_route in alignment.items()
        for name, a in by_route.items()
    ]
    print(text_table(align_headers, align_rows))
    payload = {
        "default_runtime": default_runtime,
        "forward_runtimes": forward,
        "routes_per_runtime": routes,
        "default_predict_speedup_over_eager_b64": default_speedup,
        "machine": machine_info(),
        "quick": args.quick,
        "device": device,
        "backbone": args.backbone,
        "image_size": args.image_size,
        "repeats": args.repeats,
        "latency_batch_1": latency,
        "throughput_batch_64": throughput,
        "predict_overhead_batch_64": overhead,
        "five_hundred_images": presets,
        "five_hundred_images_size": args.size_500,
        "memory": memory,
        "memory_growth_ratio": growth,
        "alignment": alignment,
        "alignment_photos": {
            "n": len(photos),
            "side": 250,
            "crops": "CelebA (--faces-root)" if args.faces_root is not None else "synthetic faces",
        },
    }
    peak = forward["peak"] if forward else {}
    runtime_md = (
        [
            f"Forward pass by runtime (direct model, preprocessed batches), ms/image; GFLOP/s against a peak estimate "
            f"of {peak.get('gflops', float('nan')):.0f} GFLOP/s ({peak.get('cores')} cores x {peak.get('ghz', 0):.2f} GHz "
            f"x {peak.get('flops_per_cycle')} fp32 FLOPs/cycle):",
            md_table(forward_headers, forward_rows),
            f"`predict()` of both routes per runtime at {args.image_size} px (pre-decoded images):",
            md_table(route_headers, route_rows),
        ]
        if forward
        else []
    )
    md = "\n\n".join(
        [
            f"Inference, {device}, `{args.backbone}` at {args.image_size} px, {args.repeats} interleaved repeats "
            f"(medians), {payload['machine']['date']}. Default runtime of a loaded bundle: {default_runtime}.",
            *runtime_md,
            "Default runtime, both routes:",
            md_table(["measure", "two-stage", "direct", "two-stage / direct"], rows),
            md_table(
                ["batch 64, ms/image", "median"],
                [
                    ["JPEG decode", o["decode_ms_per_image"]["median"]],
                    ["preprocess", o["preprocess_ms_per_image"]["median"]],
                    ["bare model(x)", o["bare_forward_ms_per_image"]["median"]],
                    ["predict()", o["predict_ms_per_image"]["median"]],
                    [
                        "predict() overhead over bare forward",
                        o["predict_overhead_over_bare_forward"]["median"],
                    ],
                ],
            ),
            f'Face alignment (`predict(align="auto")`: detect, pick, warp) against `align="none"` on the same '
            f"photos of 250x250 px ({payload['alignment_photos']['crops']} pasted into larger canvases), batch "
            f"{min(64, len(photos))}: pre-decoded in memory (detection in line with the forward pass), and as JPEG "
            "files read by 2 workers as `predict` reads a folder (aligned in threads ahead of the forward pass); "
            "the target is at most x1.5:",
            md_table(align_headers, align_rows),
            f"Inference time for {args.n_500} images at {args.size_500} px, batch 64 (the source's figure):",
            md_table(
                ["backbone", "seconds", "images/s", "params (M)"],
                [[r["backbone"], r["seconds"], r["images_per_s"], r["params_millions"]] for r in presets],
            ),
            "Memory of `predict` over a folder at batch 64 (main process RSS sampled every 20 ms; workers' peak):",
            md_table(
                [
                    "images predicted",
                    "RSS before (MB)",
                    "peak RSS during predict (MB)",
                    "growth (MB)",
                    "peak worker RSS (MB)",
                ],
                [
                    [
                        m["images"],
                        m["rss_mb_before_predict"],
                        m["peak_rss_mb"],
                        m["growth_mb"],
                        m["peak_worker_rss_mb"],
                    ]
                    for m in memory
                ],
            ),
        ]
    )
    name = "bench_inference_quick" if args.quick else "bench_inference"
    paths_written = write_results(args.out, name, payload, md)
    print(f"results: {paths_written['json']}")
    print(
        f"predict() overhead over bare forward at batch 64: {o['predict_overhead_over_bare_forward']['median']:+.1%}"
    )
    print(
        f"peak RSS during predict, {memory[0]['images']:,} -> {memory[-1]['images']:,} images: x{growth:.2f} "
        f"(growth {memory[0]['growth_mb']:.0f} MB -> {memory[-1]['growth_mb']:.0f} MB)"
    )
    print(f"two-stage / direct inference time: batch 1 x{ratio_b1:.3f}, batch 64 x{ratio_b64:.3f}")
    if default_speedup is not None:
        print(
            f"CPU default ({default_runtime}) predict() throughput at batch 64: x{default_speedup:.2f} eager's"
        )
    return 0


def runtime_tables(forward: dict | None, routes: dict | None, default_name: str):
    """Rows of the two runtime tables, and the default runtime's predict() speed-up over eager at batch 64."""
    if not forward:
        return [], [], None
    forward_rows = []
    for size, data in forward["by_size"].items():
        for r in data["runtimes"].values():
            speedup = r["speedup_over_eager_b64"]["median"] if r["speedup_over_eager_b64"] else float("nan")
            forward_rows.append(
                [
                    f"{size} px",
                    r["label"],
                    r["ms_per_image_b1"]["median"],
                    r["ms_per_image_b64"]["median"],
                    speedup,
                    r["gflops_b64"],
                    r["gflops_b64"] / forward["peak"]["gflops"],
                ]
            )
        for name, why in data["failed"].items():
            if name in RUNTIME_LABELS:
                forward_rows.append([f"{size} px", RUNTIME_LABELS[name], "failed", why, "", "", ""])
    route_rows, default_speedup = [], None
    eager = routes["by_runtime"].get("eager") if routes else None
    for name, r in (routes or {}).get("by_runtime", {}).items():
        b1, b64 = r["batch_1"], r["batch_64"]
        direct_ms = b64["direct_ms_per_image"]["median"]
        vs_eager = eager["batch_64"]["direct_ms_per_image"]["median"] / direct_ms if eager else float("nan")
        if name == default_name:
            default_speedup = vs_eager
        route_rows.append(
            [
                r["label"] + (" (default)" if name == default_name else ""),
                b64["two_stage_ms_per_image"]["median"],
                direct_ms,
                b1["ratio_two_stage_over_direct"]["median"],
                b64["ratio_two_stage_over_direct"]["median"],
                vs_eager,
            ]
        )
    return forward_rows, route_rows, default_speedup


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
