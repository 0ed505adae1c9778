"""Training-speed benchmark: the engine against a bare PyTorch loop, the decode-once cache on CPU, and the
learning time of the two-stage route against the direct one.

Run::

    python benchmarks/bench_training.py                    # synthetic CelebA, efficientnet_lite0, 64 px
    python benchmarks/bench_training.py --data-root /path/to/celeba --repeats 5
    python benchmarks/bench_training.py --threads 1        # shared/busy machine (see below)
    python benchmarks/bench_training.py --quick            # CI smoke: proves the script works, judges nothing

What is measured (all in one process, on one machine, side by side)
-------------------------------------------------------------------
Every repeat runs every variant once. The order alternates (ABBA): forward in even repeats, reversed in
odd ones, and it is chosen so that every pair that is compared runs back to back (bare+cache | bare |
engine, attributes | engine, direct | bare, direct; then the two loader passes). Ratios are computed per
repeat from such adjacent pairs ("paired") and summarized by their median, min and max.

1. **Engine vs bare loop.** ``engine_*`` calls the project's own :func:`attr2gender.training.engine.train`
   (Lightning ``Trainer``, :class:`CelebADataModule`, ``ThroughputMonitor``, CSV logging every
   ``log_every_n_steps``, progress bar off, ``deterministic`` as configured) with one extra timing callback.
   ``bare_*`` is a plain loop: ``model(x)``, ``model.loss_of(logits, model.target_of(batch))``,
   ``zero_grad``/``backward``/``step``, with the same model class, the same initial weights (both seed with
   ``L.seed_everything(seed)`` right before :func:`build_module`; the JSON records whether checksums of both
   initial weights agree), the same optimizer (``model.configure_optimizers()``), the same batch size and
   the same DataLoader (the datamodule's ``train_dataloader()``: :class:`CelebADataset` +
   ``collate_skipping_corrupt``, same ``num_workers``, same seeded shuffle) and the same
   ``torch.use_deterministic_algorithms`` setting.

   *Timed window.* Both loops run ``warmup + steps`` optimizer steps and take a timestamp when each step
   has finished (Lightning: the callback's ``on_train_batch_end``; bare: after ``optimizer.step()``). The
   window runs from the end of step ``warmup - 1`` to the end of the last step, so it holds exactly
   ``steps`` optimizer steps and ``steps`` batch fetches in both loops (Lightning prefetches one batch
   ahead, which shifts but does not add fetches) and excludes Trainer construction, the first (slow)
   steps, validation, checkpointing and export. The training split is capped at
   ``(warmup + steps) * batch_size`` images so the window never crosses an epoch end (where validation
   and the per-epoch metrics run).

   *Two estimators.* ``images_per_s`` = images in the window / window seconds: everything included, but
   one burst of another process on the machine ruins it. ``images_per_s_median_step`` = batch size /
   median step time (a step = fetch + forward + backward + optimizer step + the loop's bookkeeping): robust
   to such bursts, but blind to costs paid only every k-th step (e.g. the CSV write every
   ``log_every_n_steps``). The headline ratios use the median-step estimator; the window-mean ratios are
   reported next to them, and on a quiet machine the two agree.

2. **Decode-once cache on CPU.** :class:`DecodedImageCache` is built once for the training split (its
   build time is reported separately); then ``loader_*`` iterates the training DataLoader (decode, train
   transforms, collate, nothing else) and ``bare_attributes_cached`` trains exactly like
   ``bare_attributes`` but reads :class:`CachedCelebADataset`. Same window and estimators as above; ratios
   are cached / plain images/s.

3. **Learning time, two-stage / direct.** ``steps`` x the median step time of ``engine_attributes``
   (stage one, 39 outputs) and of ``engine_direct`` (Male, 2 outputs): same backbone, batch, data and
   number of steps. Stage two's fit time (:class:`attr2gender.tabular.StageTwoClassifier`, logistic, 39
   features, as many rows as images in the window; features are the true attributes with noise, clipped
   to [0, 1]) is added to the two-stage side. A second ratio also adds stage one's inference over those
   rows (stage two is fitted on stage one's *predicted* probabilities, so the pipeline pays for that pass),
   and the JSON records stage two's fit time at full CelebA-train scale (162,770 rows) for context.

4. **CPU precision and memory format** (``--format-sizes``, default 64 and 128 px, batch ``--format-batch``).
   ``engine_direct`` (the project's ``train()``) with ``precision`` x ``memory_format``: fp32-contiguous
   (the engine before channels-last), fp32-channels-last, bf16-contiguous and bf16-channels-last
   (``bf16-mixed``: Lightning's CPU autocast), interleaved and rotated per repeat; ratios are paired
   img/s against fp32-contiguous. The data loader's share of a step at the new default is the loader-only
   time per batch (decode + train transforms, in-process) over the median step time.

Noise. On a small shared machine, OpenMP threads that spin-wait for each other stall badly when another job
takes a core: before ``attr2gender`` set ``OMP_WAIT_POLICY=PASSIVE`` on import (this script imports it
before torch), steps ran 10-30x slower in bursts with 2 threads on 2 busy cores. With passive waiting the
default thread count is usable; ``--threads 1`` is steadier still. The ratios, not the absolute images/s,
are what this benchmark is for. The JSON records the thread count, ``OMP_WAIT_POLICY`` and the load
average at the start and after every repeat.

The cache verdict also states the gain *expected* from the loader-only timings (median plain step time
divided by the same minus the decode time the cache saves per batch): a steadier figure than the measured
training ratio, which is a few-percent effect inside a few-percent noise band.

Results: ``<out>/bench_training.json`` (every number, per-step times, the config, the machine and its
load average) and ``<out>/bench_training.md``; ``--quick`` writes ``<out>/bench_training_quick.{json,md}``
so smoke runs never overwrite real results.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import attr2gender  # noqa: E402, F401  (before torch: sets OMP_WAIT_POLICY=PASSIVE for shared machines)
from common import (  # noqa: E402
    machine_info,
    md_table,
    paired_ratio,
    rotate,
    stopwatch,
    summarize,
    text_table,
    write_results,
)

CELEBA_TRAIN_ROWS = 162_770  # official CelebA training partition

# Adjacent entries are the pairs that get compared (see the module docstring).
ORDER = (
    "bare_attributes_cached",
    "bare_attributes",
    "engine_attributes",
    "engine_direct",
    "bare_direct",
    "loader_plain",
    "loader_cached",
)

DESCRIPTIONS = {
    "engine_attributes": "engine train(): stage-one AttributeModel (39 outputs)",
    "bare_attributes": "bare PyTorch loop: AttributeModel",
    "bare_attributes_cached": "bare loop: AttributeModel, decode-once cache",
    "engine_direct": "engine train(): DirectModel (Male)",
    "bare_direct": "bare PyTorch loop: DirectModel",
    "loader_plain": "DataLoader only (decode JPEG + train transforms)",
    "loader_cached": "DataLoader only, decode-once cache",
}
TABLE_ORDER = (
    "engine_attributes",
    "bare_attributes",
    "engine_direct",
    "bare_direct",
    "bare_attributes_cached",
    "loader_plain",
    "loader_cached",
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-root", default="", help="CelebA root; default: a synthetic CelebA in a temp dir")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument(
        "--weights",
        default="imagenet",
        help="none | imagenet | path (imagenet works offline for efficientnet_lite0)",
    )
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps per variant and repeat")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the window (>= 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0 = torch's default); 1 resists other jobs on a small box",
    )
    p.add_argument(
        "--synthetic-image-size",
        type=int,
        default=128,
        help="side of the synthetic JPEGs (CelebA's are 178x218)",
    )
    p.add_argument(
        "--format-sizes",
        default="64,128",
        help="image sizes for the precision x memory-format section ('' skips it)",
    )
    p.add_argument("--format-batch", type=int, default=64, help="batch size of that section")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke run: test_efficientnet (weights none), 32 px, batch 16, 1+3 steps, 1 repeat",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.backbone, args.weights, args.image_size = "test_efficientnet", "none", 32
        args.batch_size, args.steps, args.warmup, args.repeats = 16, 3, 1, 1
        args.synthetic_image_size = 48
        args.format_sizes, args.format_batch = "32", 16
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1 or args.batch_size < 1 or args.threads < 0:
        p.error("--warmup, --steps, --repeats and --batch-size must be >= 1, --threads >= 0")
    return args


# --------------------------------------------------------------------------------------------- timing


class Window:
    """Timestamps at the end of steps ``warmup - 1`` .. ``warmup + steps - 1`` (see the module docstring)."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps, self.last = warmup, steps, warmup + steps - 1
        self.stamps: list[float] = []
        self.sizes: list[int] = []

    def tick(self, index: int, images: int) -> bool:
        """Call when step/batch ``index`` has finished; True once the window is complete."""
        now = time.perf_counter()
        if index == self.warmup - 1:
            self.stamps, self.sizes = [now], []
        elif self.warmup <= index <= self.last and self.stamps:
            self.stamps.append(now)
            self.sizes.append(images)
        return index >= self.last

    def result(self) -> dict:
        if len(self.sizes) < self.steps:
            raise RuntimeError(
                f"the timed window did not complete ({len(self.sizes)} of {self.steps} steps); is "
                "the training split smaller than (warmup + steps) * batch_size?"
            )
        seconds = self.stamps[-1] - self.stamps[0]
        step_seconds = [b - a for a, b in zip(self.stamps, self.stamps[1:])]
        median_step = statistics.median(step_seconds)
        images = sum(self.sizes)
        return {
            "seconds": seconds,
            "images": images,
            "images_per_s": images / seconds,
            "median_step_seconds": median_step,
            "images_per_s_median_step": statistics.median(self.sizes) / median_step,
            "step_seconds": step_seconds,
        }


def _checksum(module) -> float:
    import torch

    with torch.no_grad():
        return float(sum(p.detach().double().sum().item() for p in module.parameters()))


def _window_callback(warmup: int, steps: int):
    from lightning.pytorch.callbacks import Callback

    class StepWindow(Callback):
        def __init__(self):
            self.window = Window(warmup, steps)
            self.init_checksum = float("nan")

        def on_train_start(self, trainer, pl_module):
            self.init_checksum = _checksum(pl_module)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.window.tick(batch_idx, len(batch["image"]))

    return StepWindow()


def run_engine(config, task: str, celeba, warmup: int, steps: int, run_dir: Path) -> dict:
    """The project's ``train()`` for ``warmup + steps`` steps; also times stage one's inference (attributes)."""
    import torch

    from attr2gender.training.datamodule import CelebADataModule
    from attr2gender.training.engine import train

    cfg = dataclasses.replace(config, task=task, output_dir=str(run_dir), run_name=f"{task}-{time.time_ns()}")
    callback = _window_callback(warmup, steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(
            cfg, callbacks=[callback], datamodule=CelebADataModule(cfg, celeba=celeba), evaluate_test=False
        )
    out = callback.window.result()
    out["fit_seconds"] = result.train_seconds  # the whole trainer.fit call: window + warmup + validation
    out["init_checksum"] = callback.init_checksum
    if task == "attributes" and result.model is not None:
        out["inference"] = run_inference(result.model, result.datamodule, warmup, steps)
    del result
    gc.collect()
    torch.set_grad_enabled(True)
    return out


def run_bare(config, task: str, dm, warmup: int, steps: int) -> dict:
    """A plain PyTorch loop over the same DataLoader, model class, initial weights and optimizer."""
    import lightning as L
    import torch

    from attr2gender.training.engine import build_module, resolve_engine

    cfg = dataclasses.replace(config, task=task)
    engine = resolve_engine(cfg)
    torch.use_deterministic_algorithms(bool(cfg.deterministic))  # what Trainer(deterministic=...) sets on CPU
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_module(cfg, float(cfg.lr), channels_last=engine["channels_last"])
    init_checksum = _checksum(model)
    optimizer = model.configure_optimizers()
    model.train()
    window = Window(warmup, steps)
    for i, batch in enumerate(dm.train_dataloader()):
        if len(batch["image"]):
            logits = model(batch["image"])
            loss = model.loss_of(logits, model.target_of(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if window.tick(i, len(batch["image"])):
            break
    out = window.result()
    out["init_checksum"] = init_checksum
    del model, optimizer
    gc.collect()
    return out


def run_loader(dm, warmup: int, steps: int) -> dict:
    """Iterate the training DataLoader only (decode + train transforms + collate), same window."""
    window = Window(warmup, steps)
    for i, batch in enumerate(dm.train_dataloader()):
        if window.tick(i, len(batch["image"])):
            break
    return window.result()


def run_inference(model, dm, warmup: int, steps: int) -> dict:
    """Stage one's ``predict_proba`` over the training loader (the pass stage two's features need)."""
    import torch

    model.eval()
    window = Window(warmup, steps)
    with torch.no_grad():
        for i, batch in enumerate(dm.train_dataloader()):
            if len(batch["image"]):
                model.predict_proba(batch["image"])
            if window.tick(i, len(batch["image"])):
                break
    return window.result()


def stage_two_fit_seconds(celeba, ids: list[str], rows: int, seed: int) -> dict:
    """Fit time of the logistic stage two on ``rows`` x 39 probability-like features."""
    import numpy as np

    from attr2gender.tabular import StageTwoClassifier

    rng = np.random.default_rng(seed)
    take = rng.choice(len(ids), size=rows, replace=rows > len(ids))
    labels = celeba.stage_one_targets(ids).astype(np.float64)[take]
    X = np.clip(0.15 + 0.7 * labels + rng.normal(0, 0.15, labels.shape), 0, 1)
    y = celeba.male(ids).astype(int)[take]
    if len(np.unique(y)) < 2:  # tiny quick runs: make sure both classes are present
        y[: max(1, rows // 2)] = 1 - y[0]
    with stopwatch() as t:
        StageTwoClassifier(model="logistic").fit(X, y)
    return {"seconds": t.seconds, "rows": int(rows)}


# (precision, memory_format) of the engine; the first is the engine before channels-last, the baseline.
FORMATS = (
    ("32-true", "contiguous"),
    ("32-true", "channels_last"),
    ("bf16-mixed", "contiguous"),
    ("bf16-mixed", "channels_last"),
)
FORMAT_LABELS = {
    "32-true|contiguous": "fp32-contiguous",
    "32-true|channels_last": "fp32-channels-last",
    "bf16-mixed|contiguous": "bf16",
    "bf16-mixed|channels_last": "bf16-channels-last",
}


def run_formats(args, config, celeba, tmp: Path) -> dict:
    """Section 4: the engine's direct model under each (precision, memory format), interleaved per size."""
    from attr2gender.training.datamodule import CelebADataModule
    from attr2gender.training.engine import resolve_engine

    sizes = [int(x) for x in str(args.format_sizes).split(",") if x.strip()]
    needed = (args.warmup + args.steps) * args.format_batch
    default = resolve_engine(
        dataclasses.replace(config, accelerator="cpu", precision="auto", memory_format="auto")
    )
    default_key = f"{default['precision']}|{default['memory_format']}"
    out = {
        "batch_size": args.format_batch,
        "sizes": sizes,
        "cpu_default": FORMAT_LABELS[default_key],
        "by_size": {},
    }
    for size in sizes:
        cfg = dataclasses.replace(
            config,
            image_size=size,
            batch_size=args.format_batch,
            max_train_images=needed,
            max_eval_images=args.format_batch,
            accelerator="cpu",
        )
        dm = CelebADataModule(cfg, celeba=celeba)
        dm.setup("fit")
        raw = {f"{p}|{m}": [] for p, m in FORMATS}
        loader = []
        for r in range(args.repeats):
            for precision, memory_format in rotate(FORMATS, r):
                variant = dataclasses.replace(cfg, precision=precision, memory_format=memory_format)
                res = run_engine(variant, "direct", celeba, args.warmup, args.steps, tmp / "runs")
                raw[f"{precision}|{memory_format}"].append(res)
                print(
                    f"  formats {size}px repeat {r + 1}/{args.repeats}  {FORMAT_LABELS[f'{precision}|{memory_format}']:<20}"
                    f" {res['images_per_s_median_step']:8.1f} images/s median step",
                    flush=True,
                )
            loader.append(run_loader(dm, args.warmup, args.steps))
        base = [x["images_per_s_median_step"] for x in raw["32-true|contiguous"]]
        rows = {}
        for key, results in raw.items():
            ips = [x["images_per_s_median_step"] for x in results]
            rows[FORMAT_LABELS[key]] = {
                "images_per_s_median_step": summarize(ips),
                "images_per_s": summarize([x["images_per_s"] for x in results]),
                "median_step_seconds": summarize([x["median_step_seconds"] for x in results]),
                "ratio_over_fp32_contiguous": paired_ratio(ips, base),
            }
        step = rows[FORMAT_LABELS[default_key]]["median_step_seconds"]["median"]
        loader_step = summarize([x["median_step_seconds"] for x in loader])
        out["by_size"][str(size)] = {
            "variants": rows,
            "loader_seconds_per_batch": loader_step,
            "loader_share_of_default_step": loader_step["median"] / step if step else float("nan"),
        }
    return out


def formats_rows(formats: dict) -> list[list]:
    rows = []
    for size, data in formats["by_size"].items():
        for label, r in data["variants"].items():
            mark = " (CPU default)" if label == formats["cpu_default"] else ""
            rows.append(
                [
                    f"{size} px",
                    label + mark,
                    r["images_per_s_median_step"]["median"],
                    r["ratio_over_fp32_contiguous"]["median"],
                    r["ratio_over_fp32_contiguous"]["min"],
                    r["ratio_over_fp32_contiguous"]["max"],
                ]
            )
    return rows


def formats_key_figure(formats: dict) -> str:
    parts = []
    for size, data in formats["by_size"].items():
        ratio = data["variants"][formats["cpu_default"]]["ratio_over_fp32_contiguous"]
        parts.append(
            f"{size} px {ratio['median']:.2f}x (range {ratio['min']:.2f}-{ratio['max']:.2f}; data loader "
            f"{data['loader_share_of_default_step']:.0%} of a step)"
        )
    return f"CPU default ({formats['cpu_default']}) / fp32-contiguous training images/s: " + ", ".join(parts)


# --------------------------------------------------------------------------------------------- main


def prepare_data(args, tmp: Path) -> tuple[Path, dict]:
    """The CelebA root: ``--data-root`` or a synthetic one big enough for one epoch of the window."""
    if args.data_root:
        return Path(args.data_root).expanduser().resolve(), {"source": "data-root", "root": args.data_root}
    from attr2gender.data.synth import make_synthetic_celeba

    # Identities (5 images each), not images, are split 0.8/0.1/0.1: leave a margin over what is needed.
    needed = (args.warmup + args.steps) * max(args.batch_size, args.format_batch if args.format_sizes else 0)
    n = int(math.ceil(needed / 0.8 * 1.3)) + 10 * 5
    root = tmp / "synthetic-celeba"
    with stopwatch() as t:
        make_synthetic_celeba(root, n=n, seed=args.seed, image_size=args.synthetic_image_size)
    info = {"source": "synthetic", "n": n, "image_size": args.synthetic_image_size, "seconds": t.seconds}
    return root, info


def main(argv=None) -> int:
    args = parse_args(argv)
    import lightning  # noqa: F401  (sets its loggers to INFO on import; quiet them afterwards)
    import torch

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    if args.threads:
        torch.set_num_threads(args.threads)

    from attr2gender.config import RunConfig
    from attr2gender.data import DecodedImageCache, load_celeba
    from attr2gender.training.datamodule import CelebADataModule

    started = time.perf_counter()
    machine_before = machine_info()
    tmp_ctx = tempfile.TemporaryDirectory(prefix="bench_training_")
    tmp = Path(tmp_ctx.name)
    try:
        root, data_info = prepare_data(args, tmp)
        needed = (args.warmup + args.steps) * args.batch_size
        config = RunConfig(
            data_root=str(root),
            backbone=args.backbone,
            weights=args.weights,
            image_size=args.image_size,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            max_train_images=needed,
            max_eval_images=args.batch_size,
            epochs=1,
            max_steps=args.warmup + args.steps,
            lr=1e-3,
            progress=False,
            tracking="none",
            seed=args.seed,
            accelerator="auto" if torch.cuda.is_available() else "cpu",
            cache_dir=str(tmp / "cache"),
            output_dir=str(tmp / "runs"),
        ).validate()
        celeba = load_celeba(root)

        plain_dm = CelebADataModule(config, celeba=celeba)
        plain_dm.setup("fit")
        train_ids = plain_dm.splits.train
        if len(train_ids) < needed:
            raise SystemExit(
                f"the training split of {root} has {len(train_ids)} images; the timed window needs "
                f"(warmup + steps) * batch_size = {needed}. Use fewer --steps or a smaller --batch-size."
            )
        data_info["train_images"] = len(train_ids)
        data_info["split"] = plain_dm.splits.strategy

        # Decode-once cache for the training split, timed on its own; val/test caches are built untimed.
        cached_config = dataclasses.replace(config, decode_cache=True)
        with stopwatch() as t:
            cache = DecodedImageCache(
                celeba, train_ids, config.image_size, Path(config.cache_dir) / "decoded", progress=False
            )
        cache_build = {
            "seconds": t.seconds,
            "images": len(train_ids),
            "images_per_s": len(train_ids) / t.seconds,
            "bytes": int(cache.path.stat().st_size),
        }
        del cache
        cached_dm = CelebADataModule(cached_config, celeba=celeba)
        cached_dm.setup("fit")

        load, cpus = machine_before.get("load_average_1_5_15"), machine_before.get("cpus_available") or 1
        if load and torch.get_num_threads() > 1 and load[0] + torch.get_num_threads() > cpus + 0.5:
            print(
                f"note: the machine is busy (load {load[0]} on {cpus} CPUs); {torch.get_num_threads()} torch "
                "threads may stall behind other jobs (OpenMP oversubscription); --threads 1 gives steadier numbers",
                flush=True,
            )
        print(
            f"bench_training: {args.backbone} (weights {args.weights}), {args.image_size}px, batch {args.batch_size}, "
            f"{args.warmup}+{args.steps} steps, {args.repeats} repeat(s), num_workers {args.num_workers}, "
            f"{torch.get_num_threads()} torch threads; data: {data_info['source']} ({len(train_ids)} train images)",
            flush=True,
        )

        runners = {
            "engine_attributes": lambda: run_engine(
                config, "attributes", celeba, args.warmup, args.steps, tmp / "runs"
            ),
            "engine_direct": lambda: run_engine(
                config, "direct", celeba, args.warmup, args.steps, tmp / "runs"
            ),
            "bare_attributes": lambda: run_bare(config, "attributes", plain_dm, args.warmup, args.steps),
            "bare_attributes_cached": lambda: run_bare(
                cached_config, "attributes", cached_dm, args.warmup, args.steps
            ),
            "bare_direct": lambda: run_bare(config, "direct", plain_dm, args.warmup, args.steps),
            "loader_plain": lambda: run_loader(plain_dm, args.warmup, args.steps),
            "loader_cached": lambda: run_loader(cached_dm, args.warmup, args.steps),
        }
        raw: dict[str, list[dict]] = {v: [] for v in ORDER}
        stage_two: list[dict] = []
        loads: list = []
        for r in range(args.repeats):
            for variant in ORDER if r % 2 == 0 else reversed(ORDER):
                res = runners[variant]()
                raw[variant].append(res)
                print(
                    f"  repeat {r + 1}/{args.repeats}  {variant:<24} {res['images_per_s_median_step']:8.1f} images/s "
                    f"median step, {res['images_per_s']:8.1f} window ({res['seconds']:.2f}s, {res['images']} images)",
                    flush=True,
                )
            rows = raw["engine_attributes"][-1]["images"]
            stage_two.append(stage_two_fit_seconds(celeba, train_ids, rows, args.seed + r))
            loads.append(machine_info()["load_average_1_5_15"])
        stage_two_full = stage_two_fit_seconds(celeba, train_ids, CELEBA_TRAIN_ROWS, args.seed)

        payload = analyse(args, config, raw, stage_two, stage_two_full, cache_build, data_info)
        if args.format_sizes:
            payload["formats"] = run_formats(args, config, celeba, tmp)
        payload["machine"] = machine_before
        payload["machine"]["load_average_after_each_repeat"] = loads
        payload["machine"]["torch_threads"] = torch.get_num_threads()
        payload["total_seconds"] = time.perf_counter() - started
        report(args, payload)
    finally:
        tmp_ctx.cleanup()
    return 0


def _two_stage_seconds(steps: int, attr: list[dict], extra: list[float], key: str) -> list[float]:
    """Learning time of stage one for ``steps`` steps (by estimator ``key``) plus stage-two costs."""
    if key == "median_step":
        return [steps * a["median_step_seconds"] + e for a, e in zip(attr, extra)]
    return [a["seconds"] + e for a, e in zip(attr, extra)]


def analyse(args, config, raw, stage_two, stage_two_full, cache_build, data_info) -> dict:
    steps = args.steps
    ips = {v: [x["images_per_s"] for x in raw[v]] for v in ORDER}
    ips_med = {v: [x["images_per_s_median_step"] for x in raw[v]] for v in ORDER}
    results = {}
    for v in TABLE_ORDER:
        results[v] = {
            "description": DESCRIPTIONS[v],
            "images_per_s_median_step": summarize(ips_med[v]),
            "images_per_s": summarize(ips[v]),
            "median_step_seconds": summarize([x["median_step_seconds"] for x in raw[v]]),
            "window_seconds": summarize([x["seconds"] for x in raw[v]]),
            "images_in_window": raw[v][0]["images"],
        }
    for task in ("attributes", "direct"):
        results[f"engine_{task}"]["fit_seconds"] = summarize(
            [x["fit_seconds"] for x in raw[f"engine_{task}"]]
        )
    inference = [x["inference"] for x in raw["engine_attributes"] if "inference" in x]

    s2 = [x["seconds"] for x in stage_two]
    learn = {}
    for key in ("median_step", "window"):
        direct = (
            [steps * x["median_step_seconds"] for x in raw["engine_direct"]]
            if key == "median_step"
            else [x["seconds"] for x in raw["engine_direct"]]
        )
        two = _two_stage_seconds(steps, raw["engine_attributes"], s2, key)
        # Stage one's inference over the stage-two rows (as many as images in the window), per repeat.
        if key == "median_step":
            inf_s = [steps * x["median_step_seconds"] for x in inference]
        else:
            inf_s = [x["seconds"] for x in inference]
        two_inf = [a + b for a, b in zip(two, inf_s)] if len(inf_s) == len(two) else [float("nan")] * len(two)
        learn[key] = {
            "two_stage_seconds": summarize(two),
            "direct_seconds": summarize(direct),
            "ratio": paired_ratio(two, direct),
            "ratio_incl_inference": paired_ratio(two_inf, direct),
        }

    def pair(a: str, b: str) -> dict:
        return {"median_step": paired_ratio(ips_med[a], ips_med[b]), "window": paired_ratio(ips[a], ips[b])}

    ratios = {
        "engine_over_bare_images_per_s": pair("engine_attributes", "bare_attributes"),
        "engine_over_bare_images_per_s_direct": pair("engine_direct", "bare_direct"),
        "cache_over_plain_loader_images_per_s": pair("loader_cached", "loader_plain"),
        "cache_over_plain_train_images_per_s": pair("bare_attributes_cached", "bare_attributes"),
        "two_stage_over_direct_learning_time": {k: learn[k]["ratio"] for k in learn},
        "two_stage_incl_inference_over_direct_learning_time": {
            k: learn[k]["ratio_incl_inference"] for k in learn
        },
        "attributes_over_direct_whole_fit_seconds": {
            "window": paired_ratio(
                [x["fit_seconds"] for x in raw["engine_attributes"]],
                [x["fit_seconds"] for x in raw["engine_direct"]],
            )
        },
    }

    same_init = {
        task: all(
            math.isclose(a["init_checksum"], b["init_checksum"], rel_tol=0, abs_tol=1e-9)
            for a, b in zip(raw[f"engine_{task}"], raw[f"bare_{task}"])
        )
        for task in ("attributes", "direct")
    }

    # Plain verdict on the cache, from the paired median-step training ratio (noise band +-5%).
    train_ratio = ratios["cache_over_plain_train_images_per_s"]["median_step"]
    loader_ratio = ratios["cache_over_plain_loader_images_per_s"]["median_step"]["median"]
    if train_ratio["median"] > 1.05 and train_ratio["min"] > 1.0:
        word = "HELPS"
    elif train_ratio["median"] < 0.95 and train_ratio["max"] < 1.0:
        word = "HURTS"
    else:
        word = "shows NO CLEAR gain for"  # paired ratios straddle 1.0 or stay within +-5%
    n = data_info["train_images"]
    # Seconds saved per epoch over the training split at the paired median gain.
    plain_epoch = n / results["bare_attributes"]["images_per_s_median_step"]["median"]
    saved = plain_epoch * (1 - 1 / train_ratio["median"])
    breakeven = cache_build["seconds"] / saved if saved > 0 else float("inf")
    # Expected training gain from the loader-only timings: the decode time saved per batch off a plain step.
    plain_step = results["bare_attributes"]["median_step_seconds"]["median"]
    saved_per_batch = (
        results["loader_plain"]["median_step_seconds"]["median"]
        - results["loader_cached"]["median_step_seconds"]["median"]
    )
    expected = plain_step / max(plain_step - saved_per_batch, 1e-9)
    cache_verdict = (
        f"decode-once cache on CPU {word} training: {train_ratio['median']:.2f}x images/s "
        f"(range {train_ratio['min']:.2f}-{train_ratio['max']:.2f}; expected from the loader timings "
        f"{expected:.2f}x; data loading alone {loader_ratio:.2f}x); building it took {cache_build['seconds']:.2f}s for {n} images"
        + (
            f", repaid after ~{breakeven:.2g} epoch(s) at the median gain"
            if math.isfinite(breakeven)
            else ", never repaid"
        )
    )

    lr = learn["median_step"]["ratio"]
    learning_verdict = (
        f"two-stage / direct learning time for the same {steps} steps: {lr['median']:.2f}x "
        f"(range {lr['min']:.2f}-{lr['max']:.2f}; the source study claimed ~2x); "
        f"with stage-one inference for stage two's rows {learn['median_step']['ratio_incl_inference']['median']:.2f}x; "
        f"stage two's logistic fit takes {summarize(s2)['median'] * 1000:.0f} ms on {stage_two[0]['rows']} rows, "
        f"{stage_two_full['seconds']:.1f}s at CelebA-train scale ({stage_two_full['rows']:,} rows)"
    )

    eng = ratios["engine_over_bare_images_per_s"]
    key = (
        f"engine/bare images/s ratio: {eng['median_step']['median']:.2f} (median of {eng['median_step']['n']} "
        f"paired repeat(s) of median-step images/s, range {eng['median_step']['min']:.2f}-"
        f"{eng['median_step']['max']:.2f}; window-mean estimator {eng['window']['median']:.2f})"
    )

    return {
        "benchmark": "bench_training",
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) if sys.argv else "",
        "config": {
            "backbone": args.backbone,
            "weights": args.weights,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "num_workers": args.num_workers,
            "threads": args.threads or "torch default",
            "seed": args.seed,
            "optimizer": config.optimizer,
            "lr": config.lr,
            "deterministic": config.deterministic,
            "precision": "auto" if config.accelerator == "auto" else "32-true (CPU)",
            "log_every_n_steps": config.log_every_n_steps,
            "variant_order": "ABBA: " + " | ".join(ORDER),
        },
        "data": data_info,
        "results": results,
        "stage_one_inference_images_per_s": summarize([x["images_per_s_median_step"] for x in inference]),
        "stage_two_fit": {
            "seconds": summarize(s2),
            "rows": stage_two[0]["rows"],
            "celeba_train_scale": stage_two_full,
        },
        "learning_time": learn,
        "cache_build": cache_build,
        "cache_expected_train_gain": expected,
        "ratios": ratios,
        "same_initial_weights": same_init,
        "verdicts": {"cache": cache_verdict, "learning_time": learning_verdict},
        "key_figure": key,
        "raw": raw,
    }


RATIO_LABELS = {
    "engine_over_bare_images_per_s": "engine / bare images/s (AttributeModel)",
    "engine_over_bare_images_per_s_direct": "engine / bare images/s (DirectModel)",
    "cache_over_plain_loader_images_per_s": "cache / plain images/s, data loading only",
    "cache_over_plain_train_images_per_s": "cache / plain images/s, training (bare loop)",
    "two_stage_over_direct_learning_time": "two-stage / direct learning time (stage one + stage-two fit)",
    "two_stage_incl_inference_over_direct_learning_time": "  ... plus stage-one inference for stage two's rows",
    "attributes_over_direct_whole_fit_seconds": "attributes / direct, whole trainer.fit call (incl. warm-up, val)",
}


def _n(summary: dict | None, key: str = "median") -> float:
    return summary[key] if summary else float("nan")


def report(args, payload: dict) -> None:
    results, ratios = payload["results"], payload["ratios"]
    headers = ["variant", "img/s (median step)", "min", "max", "img/s (window)", "step ms", "what"]
    rows = [
        [
            v,
            r["images_per_s_median_step"]["median"],
            r["images_per_s_median_step"]["min"],
            r["images_per_s_median_step"]["max"],
            r["images_per_s"]["median"],
            r["median_step_seconds"]["median"] * 1000,
            r["description"],
        ]
        for v, r in results.items()
    ]
    ratio_headers = ["ratio (paired per repeat)", "median-step: median", "min", "max", "window-mean: median"]
    ratio_rows = [
        [
            RATIO_LABELS[k],
            _n(v.get("median_step")),
            _n(v.get("median_step"), "min"),
            _n(v.get("median_step"), "max"),
            _n(v.get("window")),
        ]
        for k, v in ratios.items()
    ]
    cb, s2 = payload["cache_build"], payload["stage_two_fit"]
    extra_rows = [
        [
            "decode cache build (train split)",
            f"{cb['seconds']:.2f} s",
            f"{cb['images_per_s']:.0f} images/s, {cb['bytes'] / 2**20:.1f} MiB",
        ],
        ["stage-two logistic fit", f"{s2['seconds']['median'] * 1000:.1f} ms", f"{s2['rows']} rows x 39"],
        [
            "stage-two logistic fit, CelebA scale",
            f"{s2['celeba_train_scale']['seconds']:.2f} s",
            f"{s2['celeba_train_scale']['rows']:,} rows x 39",
        ],
        [
            "stage-one inference",
            f"{payload['stage_one_inference_images_per_s']['median']:.1f} images/s",
            "eval, no grad, median step",
        ],
        ["same initial weights, engine vs bare", str(payload["same_initial_weights"]), "parameter checksums"],
    ]
    print()
    print(text_table(headers, rows, digits=2))
    print()
    print(text_table(["", "value", "note"], extra_rows))
    print()
    print(text_table(ratio_headers, ratio_rows))
    print()
    cfg, m = payload["config"], payload["machine"]
    md = [
        "# bench_training"
        + (" (quick smoke run: proves the script works, judges nothing)" if args.quick else ""),
        "",
        f"`{payload['command']}` on {m['cpu_count']} CPU(s) ({m['cpu_model']}), {m.get('torch_threads')} torch "
        f"threads, torch {m.get('torch')}, lightning {m.get('lightning')}, {m['date']}; load average at start "
        f"{m['load_average_1_5_15']}, after each repeat {m['load_average_after_each_repeat']} (other jobs shared "
        f"the machine). Total {payload['total_seconds']:.0f} s.",
        "",
        f"{cfg['backbone']} (weights {cfg['weights']}), {cfg['image_size']} px, batch {cfg['batch_size']}, "
        f"{cfg['warmup']} warm-up + {cfg['steps']} timed steps per variant, {cfg['repeats']} interleaved (ABBA) "
        f"repeats, num_workers {cfg['num_workers']}, {cfg['optimizer']} lr {cfg['lr']}; data: "
        f"{payload['data']['source']} ({payload['data']['train_images']} training images). Method and the two "
        "estimators (median step vs window mean): see the docstring of `benchmarks/bench_training.py`.",
        "",
        "## Throughput",
        "",
        md_table(headers, rows, digits=2),
        "",
        "## Other timings",
        "",
        md_table(["", "value", "note"], extra_rows),
        "",
        "## Ratios",
        "",
        md_table(ratio_headers, ratio_rows),
        "",
        "## Verdicts",
        "",
        f"- {payload['verdicts']['cache']}",
        f"- {payload['verdicts']['learning_time']}",
        f"- **{payload['key_figure']}**",
    ]
    formats = payload.get("formats")
    format_headers = [
        "size",
        "engine variant",
        "img/s (median step)",
        "ratio vs fp32-contiguous: median",
        "min",
        "max",
    ]
    if formats:
        print(text_table(format_headers, formats_rows(formats), digits=2))
        print()
        md += [
            "",
            f"## CPU precision and memory format (engine, DirectModel, batch {formats['batch_size']})",
            "",
            "Interleaved in one run (order rotated per repeat); ratios are paired per repeat against "
            "fp32-contiguous, the engine's CPU path before channels-last. The data loader's share is the "
            "loader-only time per batch (decode + train transforms, in-process) over the CPU default's step.",
            "",
            md_table(format_headers, formats_rows(formats), digits=2),
            "",
            f"- **{formats_key_figure(formats)}**",
        ]
    name = "bench_training_quick" if args.quick else "bench_training"
    paths = write_results(args.out, name, payload, "\n".join(md))
    print(payload["verdicts"]["cache"])
    print(payload["verdicts"]["learning_time"])
    print(f"results: {paths['json']} and {paths['md']}")
    print(payload["key_figure"], flush=True)
    if formats:
        print(formats_key_figure(formats), flush=True)


if __name__ == "__main__":
    sys.exit(main())
