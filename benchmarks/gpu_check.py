"""The CUDA path, measured once on a GPU: training and predict speed, memory, loader share, projections.

Prepared for a machine with one CUDA GPU (under 6 minutes there); run it whenever one is at hand and commit
``benchmarks/results/gpu.{json,md}``. Until then the README says the CUDA path is unmeasured.

    python benchmarks/gpu_check.py --data-root ../shared/celeba     # on the GPU machine
    python benchmarks/gpu_check.py --quick                          # CPU, synthetic, tiny: proves it runs

For ResNet-18 (``weights=none``: speed does not depend on the values) and EfficientNet-Lite0 (ImageNet), each
as stage one (39 attributes) and as the direct model, at 224 px with bf16 mixed precision and channels-last:

- training img/s over a window of optimizer steps after warm-up (bench_training.py's window), and the
  DataLoader's share of the step time (the loader alone over the same window: loader seconds per batch /
  training seconds per batch; near 1 means the GPU waits for JPEG decoding);
- the same with the decode-once cache (uint8 crops decoded once), and a projection of one full-CelebA
  training epoch (162,770 images) from each rate;
- peak CUDA memory of each training run;
- predict img/s at batch 256 through ``pipeline.predict`` on the test images, and the two-stage / direct
  inference ratio at that batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import CELEBA_TRAIN_ROWS, run_engine, run_loader  # noqa: E402
from common import REPO_ROOT, machine_info, md_table, text_table, write_results  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "celeba"
BACKBONES = (("resnet18", "none"), ("efficientnet_lite0", "imagenet"))
TASKS = ("attributes", "direct")


def _peak_memory_mb(device) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def train_rows(config, celeba, warmup: int, steps: int, tmp: Path, device) -> list[dict]:
    """Per backbone and task: training img/s with and without the decode cache, loader share, memory."""
    from attr2gender.training.datamodule import CelebADataModule

    rows = []
    for backbone, weights in BACKBONES:
        for task in TASKS:
            for cached in (False, True):
                cfg = dataclasses.replace(
                    config, backbone=backbone, weights=weights, task=task, decode_cache=cached
                )
                _reset_peak(device)
                start = time.perf_counter()
                trained = run_engine(cfg, task, celeba, warmup, steps, tmp / "runs")
                peak = _peak_memory_mb(device)
                dm = CelebADataModule(cfg, celeba=celeba)
                dm.setup("fit")
                loader = run_loader(dm, warmup, steps)
                share = loader["median_step_seconds"] / trained["median_step_seconds"]
                rate = trained["images_per_s_median_step"]
                rows.append(
                    {
                        "backbone": backbone,
                        "weights": weights,
                        "task": task,
                        "decode_cache": cached,
                        "train_images_per_s": rate,
                        "train_images_per_s_window": trained["images_per_s"],
                        "loader_images_per_s": loader["images_per_s_median_step"],
                        "loader_share_of_step": min(share, 1.0),
                        "peak_cuda_memory_mb": peak,
                        "full_celeba_epoch_minutes": CELEBA_TRAIN_ROWS / rate / 60,
                        "seconds": time.perf_counter() - start,
                    }
                )
                print(
                    f"  {backbone} {task} {'cached' if cached else 'jpeg'}: {rate:.0f} img/s, loader share "
                    f"{share:.2f}, peak {peak:.0f} MB",
                    flush=True,
                )
                del dm
                gc.collect()
    return rows


def predict_rows(config, celeba, test_ids: list[str], batch: int, device) -> list[dict]:
    """Predict img/s at ``batch`` for both routes (fitted for one short epoch), and their ratio."""
    from attr2gender.pipeline import Attr2GenderPipeline, DirectGenderClassifier

    paths = [celeba.image_path(i) for i in test_ids]
    rows = []
    for backbone, weights in BACKBONES:
        cfg = dataclasses.replace(config, backbone=backbone, weights=weights, decode_cache=False)
        rates = {}
        for name, cls in (("two_stage", Attr2GenderPipeline), ("direct", DirectGenderClassifier)):
            pipe = cls.fit(cfg)
            pipe.align = "none"  # the test images are crops already; detection is measured elsewhere
            pipe.batch_size = batch
            pipe.predict(paths[:batch], progress=False)  # warm-up: cuDNN autotuning, workers
            _reset_peak(device)
            start = time.perf_counter()
            pipe.predict(paths, progress=False)
            seconds = time.perf_counter() - start
            rates[name] = len(paths) / seconds
            rows.append(
                {
                    "backbone": backbone,
                    "pipeline": name,
                    "runtime": pipe.forward_runtime.describe(),
                    "batch": batch,
                    "images": len(paths),
                    "predict_images_per_s": rates[name],
                    "peak_cuda_memory_mb": _peak_memory_mb(device),
                }
            )
            del pipe
            gc.collect()
        # Time per image, two-stage over direct (above 1: the detour costs more), as compare.py reports it.
        rows[-1]["two_stage_over_direct_time"] = rates["direct"] / rates["two_stage"]
        rows[-2]["two_stage_over_direct_time"] = rates["direct"] / rates["two_stage"]
        print(
            f"  {backbone} predict b{batch}: two-stage / direct time {rates['direct'] / rates['two_stage']:.3f}"
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=SHARED)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128, help="training batch")
    parser.add_argument("--predict-batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--num-workers", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--quick", action="store_true", help="CPU, synthetic data, tiny: proves the script runs"
    )
    args = parser.parse_args(argv)

    import torch

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    from attr2gender.config import RunConfig
    from attr2gender.data import load_celeba
    from attr2gender.training.datamodule import CelebADataModule

    tmp_ctx = tempfile.TemporaryDirectory(prefix="gpu_check_")
    tmp = Path(tmp_ctx.name)
    if args.quick:
        from attr2gender.data.synth import make_synthetic_celeba

        args.data_root = make_synthetic_celeba(tmp / "celeba", n=300, seed=0, image_size=40)
        args.image_size, args.batch_size, args.predict_batch = 32, 16, 32
        args.steps, args.warmup, args.num_workers = 3, 1, 0
    elif not torch.cuda.is_available():
        print(
            "error: no CUDA device here; run this on a GPU machine, or pass --quick to prove it runs",
            file=sys.stderr,
        )
        return 2
    if not (Path(args.data_root) / "list_attr_celeba.txt").is_file():
        print(f"error: no CelebA at {args.data_root}; pass --data-root", file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    started = time.perf_counter()
    celeba = load_celeba(args.data_root, warn_missing=False)
    config = RunConfig(
        data_root=str(args.data_root),
        split="identity",
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        epochs=1,
        lr=1e-3,
        progress=False,
        tracking="none",
        accelerator="cpu" if device.type == "cpu" else "gpu",
        precision="bf16-mixed",
        memory_format="channels_last",
        face_template_images=0,
        cache_dir=str(tmp / "cache"),
        output_dir=str(tmp / "runs"),
    ).validate()
    dm = CelebADataModule(config, celeba=celeba)
    dm.setup("fit")
    needed = (args.warmup + args.steps) * args.batch_size
    if len(dm.splits.train) < needed:
        print(f"error: {len(dm.splits.train)} training images, the window needs {needed}", file=sys.stderr)
        return 2
    print(f"training speed ({device}, {args.image_size} px, batch {args.batch_size}, bf16, channels-last)")
    window_config = dataclasses.replace(config, max_train_images=needed, max_steps=args.warmup + args.steps)
    training = train_rows(window_config, celeba, args.warmup, args.steps, tmp, device)
    print(f"predict speed (batch {args.predict_batch})")
    # One short epoch per route so predict runs trained weights through the real pipeline classes.
    fit_config = dataclasses.replace(config, max_train_images=needed, max_steps=args.warmup + args.steps)
    predict = predict_rows(fit_config, celeba, list(dm.splits.test), args.predict_batch, device)

    payload = {
        "machine": machine_info(),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (--quick)",
        "quick": args.quick,
        "data_root": str(args.data_root),
        "settings": vars(args) | {"data_root": str(args.data_root), "out": str(args.out)},
        "training": training,
        "predict": predict,
        "seconds": time.perf_counter() - started,
    }
    train_headers = [
        "backbone",
        "task",
        "decode cache",
        "train img/s",
        "loader share",
        "peak MB",
        "full epoch (min)",
    ]
    train_table = [
        [
            r["backbone"],
            r["task"],
            "yes" if r["decode_cache"] else "no",
            r["train_images_per_s"],
            r["loader_share_of_step"],
            r["peak_cuda_memory_mb"],
            r["full_celeba_epoch_minutes"],
        ]
        for r in training
    ]
    predict_headers = [
        "backbone",
        "pipeline",
        "runtime",
        "predict img/s",
        "two-stage / direct time",
        "peak MB",
    ]
    predict_table = [
        [
            r["backbone"],
            r["pipeline"],
            r["runtime"],
            r["predict_images_per_s"],
            r["two_stage_over_direct_time"],
            r["peak_cuda_memory_mb"],
        ]
        for r in predict
    ]
    print(text_table(train_headers, train_table, digits=3))
    print(text_table(predict_headers, predict_table, digits=3))
    md = "\n\n".join(
        [
            f"GPU check, `python benchmarks/gpu_check.py`, {payload['machine']['date'][:10]}, {payload['device']}: "
            f"{args.image_size} px, bf16 mixed precision, channels-last, training batch {args.batch_size}, "
            f"{args.num_workers} loader workers, {len(dm.splits.train):,} training images of {args.data_root.name}.",
            "Training (median step over a window after warm-up); loader share = the DataLoader alone per batch / "
            "a training step; full epoch = 162,770 images at that rate:",
            md_table(train_headers, train_table, digits=3),
            f"Predict through `pipeline.predict` at batch {args.predict_batch} on {len(dm.splits.test):,} test "
            'images (aligned crops: `align="none"`):',
            md_table(predict_headers, predict_table, digits=3),
            f"Took {payload['seconds'] / 60:.1f} minutes.",
        ]
    )
    name = "gpu_quick" if args.quick else "gpu"
    written = write_results(args.out, name, payload, md)
    print(f"results: {written['json']}")
    tmp_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
