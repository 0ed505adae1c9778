"""Training-speed benchmark: the engine against a bare PyTorch loop, the decode-once cache on CPU, and the
learning time of the two-stage route against the direct one.

Run::

    python benchmarks/bench_training.py                    # synthetic CelebA, efficientnet_lite0, 64 px
    python benchmarks/bench_training.py --data-root /path/to/celeba --repeats 5
    python benchmarks/bench_training.py --quick            # CI smoke: proves the script works, judges nothing

What is measured (all in one process, on one machine, side by side)
-----------------------------------------------------------------
Every repeat runs every variant once, in a rotated order (repeat r starts at variant r), so slow drift of a
shared machine (other jobs, heat) hits all variants alike. Tables report medians over repeats; ratios are
the median of per-repeat ("paired") ratios, with their min and max, because back-to-back runs share the
machine's state and the ratio is steadier than either number alone.

1. **Engine vs bare loop.** ``engine_*`` calls the project's own :func:`attr2gender.training.engine.train`
   (Lightning ``Trainer``, :class:`CelebADataModule`, ``ThroughputMonitor``, CSV logging, progress bar
   off, ``deterministic`` as configured) with one extra timing callback. ``bare_*`` is a plain loop:
   ``model(x)``, ``model.loss_of(logits, model.target_of(batch))``, ``zero_grad``/``backward``/``step``,
   with the same model class, the same initial weights (both seed with ``L.seed_everything(seed)`` right
   before :func:`build_model`; the JSON records a checksum of both initial weights), the same optimizer
   (``model.configure_optimizers()``), the same batch size and the same DataLoader (the datamodule's
   ``train_dataloader()``: :class:`CelebADataset` + ``collate_skipping_corrupt``, same ``num_workers``,
   same seeded shuffle) and the same ``torch.use_deterministic_algorithms`` setting.

   *Timed window.* Both loops run ``warmup + steps`` optimizer steps; the clock starts when step
   ``warmup - 1`` has finished (Lightning: ``on_train_batch_end`` of that batch) and stops when the last
   step has finished. The window therefore holds exactly ``steps`` optimizer steps and ``steps`` batch
   fetches in both loops (Lightning prefetches one batch ahead, which shifts but does not add fetches),
   and excludes Trainer construction, the first (slow) steps, validation, checkpointing and export. The
   training split is capped at ``(warmup + steps) * batch_size`` images so the window never crosses an
   epoch end (where validation and the per-epoch metrics run). Images/s = images in the window / seconds.

2. **Decode-once cache on CPU.** :class:`DecodedImageCache` is built once for the training split (its
   build time is reported separately); then ``loader_*`` iterates the training DataLoader (train
   transforms, nothing else) and ``bare_attributes_cached`` trains exactly like ``bare_attributes`` but
   reads :class:`CachedCelebADataset`. Same window as above. Ratios are cached / plain images/s.

3. **Learning time, two-stage / direct.** The timed windows of ``engine_attributes`` (stage one, 39
   outputs) and ``engine_direct`` (Male, 2 outputs): same backbone, batch, data and number of steps.
   Stage two's fit time (:class:`attr2gender.tabular.StageTwoClassifier`, logistic, 39 features, as many
   rows as images in the window; features are the true attributes with noise, clipped to [0, 1]) is
   added to the two-stage side. A second ratio also adds stage one's inference over those rows (stage two
   is fitted on stage one's *predicted* probabilities, so the pipeline pays for that pass), and the JSON
   records stage two's fit time at full CelebA-train scale (162,770 rows) for context.

Results: ``<out>/bench_training.json`` (every number, the config, the machine) and ``<out>/bench_training.md``;
``--quick`` writes ``<out>/bench_training_quick.{json,md}`` so smoke runs never overwrite real results.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    machine_info,
    markdown_table,
    paired_ratio,
    rotate,
    stopwatch,
    summarize,
    text_table,
    write_results,
)

CELEBA_TRAIN_ROWS = 162_770  # official CelebA training partition

VARIANTS = ("engine_attributes", "bare_attributes", "bare_attributes_cached", "engine_direct", "bare_direct",
            "loader_plain", "loader_cached")  # fmt: skip

DESCRIPTIONS = {
    "engine_attributes": "engine train(): stage-one AttributeModel (39 outputs)",
    "bare_attributes": "bare PyTorch loop: AttributeModel",
    "bare_attributes_cached": "bare loop: AttributeModel, decode-once cache",
    "engine_direct": "engine train(): DirectModel (Male)",
    "bare_direct": "bare PyTorch loop: DirectModel",
    "loader_plain": "DataLoader only (decode JPEG + train transforms)",
    "loader_cached": "DataLoader only, decode-once cache",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data-root", default="", help="CelebA root; default: a synthetic CelebA in a temp dir")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", default="imagenet", help="none | imagenet | path (imagenet works offline for "
                   "efficientnet_lite0)")  # fmt: skip
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps per variant and repeat")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the window (>= 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--synthetic-image-size", type=int, default=128,
                   help="side of the synthetic JPEGs (CelebA's are 178x218)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: test_efficientnet (weights none), 32 px, batch 16, 3 steps, 1 repeat")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.backbone, args.weights, args.image_size = "test_efficientnet", "none", 32
        args.batch_size, args.steps, args.warmup, args.repeats = 16, 3, 1, 1
        args.synthetic_image_size = 48
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1 or args.batch_size < 1:
        p.error("--warmup, --steps, --repeats and --batch-size must be >= 1")
    return args


# --------------------------------------------------------------------------------------------- timing


def _checksum(module) -> float:
    import torch

    with torch.no_grad():
        return float(sum(p.detach().double().sum().item() for p in module.parameters()))


def _window_callback(warmup: int, steps: int):
    """Lightning callback recording the timed window of :func:`train` (see the module docstring)."""
    from lightning.pytorch.callbacks import Callback

    class StepWindow(Callback):
        def __init__(self):
            self.last = warmup + steps - 1
            self.t0 = self.t1 = None
            self.images = self.done = 0
            self.init_checksum = float("nan")

        def on_train_start(self, trainer, pl_module):
            self.init_checksum = _checksum(pl_module)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.perf_counter()
            if batch_idx == warmup - 1:
                self.t0 = now
            elif warmup <= batch_idx <= self.last:
                self.images += len(batch["image"])
                self.done += 1
            if batch_idx == self.last:
                self.t1 = now

    return StepWindow()


def _window_result(t0, t1, images: int, steps_done: int, steps: int) -> dict:
    if t0 is None or t1 is None or steps_done < steps:
        raise RuntimeError(f"the timed window did not complete ({steps_done} of {steps} steps); "
                           "is the training split smaller than (warmup + steps) * batch_size?")  # fmt: skip
    seconds = t1 - t0
    return {"seconds": seconds, "images": images, "images_per_s": images / seconds}


def run_engine(config, task: str, celeba, warmup: int, steps: int, run_dir: Path) -> dict:
    """The project's ``train()`` for ``warmup + steps`` steps; also times stage one's inference (attributes)."""
    import dataclasses

    import torch

    from attr2gender.training.datamodule import CelebADataModule
    from attr2gender.training.engine import train

    cfg = dataclasses.replace(config, task=task, output_dir=str(run_dir), run_name=f"{task}-{time.time_ns()}")
    window = _window_callback(warmup, steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(cfg, callbacks=[window], datamodule=CelebADataModule(cfg, celeba=celeba),
                       evaluate_test=False)  # fmt: skip
    out = _window_result(window.t0, window.t1, window.images, window.done, steps)
    out["fit_seconds"] = result.train_seconds  # the whole trainer.fit call: window + warmup + validation
    out["init_checksum"] = window.init_checksum
    if task == "attributes" and result.model is not None:
        out["inference"] = run_inference(result.model, result.datamodule, warmup, steps)
    del result
    gc.collect()
    torch.set_grad_enabled(True)
    return out


def run_bare(config, task: str, dm, warmup: int, steps: int) -> dict:
    """A plain PyTorch loop over the same DataLoader, model class, initial weights and optimizer."""
    import dataclasses

    import lightning as L
    import torch

    from attr2gender.training.engine import build_model, resolve_engine

    cfg = dataclasses.replace(config, task=task)
    engine = resolve_engine(cfg)
    torch.use_deterministic_algorithms(bool(cfg.deterministic))  # what Trainer(deterministic=...) sets on CPU
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg, float(cfg.lr), channels_last=engine["channels_last"])
    init_checksum = _checksum(model)
    optimizer = model.configure_optimizers()
    model.train()
    last = warmup + steps - 1
    t0 = t1 = None
    images = done = 0
    for i, batch in enumerate(dm.train_dataloader()):
        if len(batch["image"]):
            logits = model(batch["image"])
            loss = model.loss_of(logits, model.target_of(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        now = time.perf_counter()
        if i == warmup - 1:
            t0 = now
        elif warmup <= i <= last:
            images += len(batch["image"])
            done += 1
        if i == last:
            t1 = now
            break
    out = _window_result(t0, t1, images, done, steps)
    out["init_checksum"] = init_checksum
    del model, optimizer
    gc.collect()
    return out


def run_loader(dm, warmup: int, steps: int) -> dict:
    """Iterate the training DataLoader only (decode + train transforms + collate), same window."""
    last = warmup + steps - 1
    t0 = t1 = None
    images = done = 0
    for i, batch in enumerate(dm.train_dataloader()):
        now = time.perf_counter()
        if i == warmup - 1:
            t0 = now
        elif warmup <= i <= last:
            images += len(batch["image"])
            done += 1
        if i == last:
            t1 = now
            break
    return _window_result(t0, t1, images, done, steps)


def run_inference(model, dm, warmup: int, steps: int) -> dict:
    """Stage one's ``predict_proba`` over the training loader (the pass stage two's features need)."""
    import torch

    model.eval()
    last = warmup + steps - 1
    t0 = t1 = None
    images = done = 0
    with torch.no_grad():
        for i, batch in enumerate(dm.train_dataloader()):
            if len(batch["image"]):
                model.predict_proba(batch["image"])
            now = time.perf_counter()
            if i == warmup - 1:
                t0 = now
            elif warmup <= i <= last:
                images += len(batch["image"])
                done += 1
            if i == last:
                t1 = now
                break
    return _window_result(t0, t1, images, done, steps)


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


# --------------------------------------------------------------------------------------------- main


def prepare_data(args, tmp: Path) -> tuple[Path, dict]:
    """The CelebA root: ``--data-root`` or a synthetic one big enough for one epoch of the window."""
    needed = (args.warmup + args.steps) * args.batch_size
    if args.data_root:
        return Path(args.data_root).expanduser().resolve(), {"source": "data-root", "root": args.data_root}
    from attr2gender.data.synth import make_synthetic_celeba

    # Identities (5 images each), not images, are split 0.8/0.1/0.1, so leave a margin over `needed`.
    n = int(math.ceil(needed / 0.8 * 1.3)) + 10 * 5
    root = tmp / "synthetic-celeba"
    with stopwatch() as t:
        make_synthetic_celeba(root, n=n, seed=args.seed, image_size=args.synthetic_image_size)
    return root, {
        "source": "synthetic",
        "n": n,
        "image_size": args.synthetic_image_size,
        "seconds": t.seconds,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import lightning  # noqa: F401  (sets its loggers to INFO on import; quiet them afterwards)
    import torch

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")

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
            data_root=str(root), backbone=args.backbone, weights=args.weights, image_size=args.image_size,
            batch_size=args.batch_size, num_workers=args.num_workers, max_train_images=needed,
            max_eval_images=args.batch_size, epochs=1, max_steps=args.warmup + args.steps, lr=1e-3,
            progress=False, tracking="none", seed=args.seed, accelerator="cpu" if not torch.cuda.is_available()
            else "auto", cache_dir=str(tmp / "cache"), output_dir=str(tmp / "runs"),
        ).validate()  # fmt: skip
        celeba = load_celeba(root)

        plain_dm = CelebADataModule(config, celeba=celeba)
        plain_dm.setup("fit")
        train_ids = plain_dm.splits.train
        if len(train_ids) < needed:
            raise SystemExit(f"the training split of {root} has {len(train_ids)} images; the timed window needs "
                             f"(warmup + steps) * batch_size = {needed}. Use fewer --steps or a smaller --batch-size.")  # fmt: skip
        data_info["train_images"] = len(train_ids)
        data_info["split"] = plain_dm.splits.strategy

        # Decode-once cache for the training split, timed on its own; val/test caches are built untimed.
        cached_config = RunConfig(**{**config.to_dict(), "decode_cache": True})
        with stopwatch() as t:
            cache = DecodedImageCache(celeba, train_ids, config.image_size, Path(config.cache_dir) / "decoded",
                                      progress=False)  # fmt: skip
        cache_build = {"seconds": t.seconds, "images": len(train_ids), "images_per_s": len(train_ids) / t.seconds,
                       "bytes": int(cache.path.stat().st_size)}  # fmt: skip
        del cache
        cached_dm = CelebADataModule(cached_config, celeba=celeba)
        cached_dm.setup("fit")

        print(f"bench_training: {args.backbone} (weights {args.weights}), {args.image_size}px, batch {args.batch_size}, "
              f"{args.warmup}+{args.steps} steps, {args.repeats} repeat(s), num_workers {args.num_workers}, "
              f"{torch.get_num_threads()} torch threads; data: {data_info['source']} ({len(train_ids)} train images)",
              flush=True)  # fmt: skip

        raw: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        stage_two: list[dict] = []
        for r in range(args.repeats):
            for variant in rotate(VARIANTS, r):
                if variant == "engine_attributes":
                    res = run_engine(config, "attributes", celeba, args.warmup, args.steps, tmp / "runs")
                elif variant == "engine_direct":
                    res = run_engine(config, "direct", celeba, args.warmup, args.steps, tmp / "runs")
                elif variant == "bare_attributes":
                    res = run_bare(config, "attributes", plain_dm, args.warmup, args.steps)
                elif variant == "bare_attributes_cached":
                    res = run_bare(cached_config, "attributes", cached_dm, args.warmup, args.steps)
                elif variant == "bare_direct":
                    res = run_bare(config, "direct", plain_dm, args.warmup, args.steps)
                elif variant == "loader_plain":
                    res = run_loader(plain_dm, args.warmup, args.steps)
                else:
                    res = run_loader(cached_dm, args.warmup, args.steps)
                raw[variant].append(res)
                print(f"  repeat {r + 1}/{args.repeats}  {variant:<24} {res['images_per_s']:9.1f} images/s "
                      f"({res['seconds']:.2f}s for {res['images']} images)", flush=True)  # fmt: skip
            stage_two.append(stage_two_fit_seconds(celeba, train_ids, raw["engine_attributes"][-1]["images"],
                                                   args.seed + r))  # fmt: skip
        stage_two_full = stage_two_fit_seconds(celeba, train_ids, CELEBA_TRAIN_ROWS, args.seed)

        payload = analyse(args, config, raw, stage_two, stage_two_full, cache_build, data_info)
        payload["machine"] = machine_before
        payload["machine"]["load_average_at_end"] = machine_info()["load_average_1_5_15"]
        payload["total_seconds"] = time.perf_counter() - started
        report(args, payload)
    finally:
        tmp_ctx.cleanup()
    return 0


def analyse(args, config, raw, stage_two, stage_two_full, cache_build, data_info) -> dict:
    ips = {v: [x["images_per_s"] for x in raw[v]] for v in VARIANTS}
    secs = {v: [x["seconds"] for x in raw[v]] for v in VARIANTS}
    results = {v: {"description": DESCRIPTIONS[v], "images_per_s": summarize(ips[v]),
                   "window_seconds": summarize(secs[v]), "images_in_window": raw[v][0]["images"]}
               for v in VARIANTS}  # fmt: skip
    for task in ("attributes", "direct"):
        results[f"engine_{task}"]["fit_seconds"] = summarize(
            [x["fit_seconds"] for x in raw[f"engine_{task}"]]
        )
    inference = [x["inference"] for x in raw["engine_attributes"] if "inference" in x]
    inference_ips = summarize([x["images_per_s"] for x in inference])

    s2 = [x["seconds"] for x in stage_two]
    two_stage = [a + b for a, b in zip(secs["engine_attributes"], s2)]
    # Stage one's inference over the stage-two rows (as many as images in the window), per repeat.
    infer_s = [x["seconds"] for x in inference]
    two_stage_infer = [a + b for a, b in zip(two_stage, infer_s)] if len(infer_s) == len(two_stage) else []

    ratios = {
        "engine_over_bare_images_per_s": paired_ratio(ips["engine_attributes"], ips["bare_attributes"]),
        "engine_over_bare_images_per_s_direct": paired_ratio(ips["engine_direct"], ips["bare_direct"]),
        "cache_over_plain_loader_images_per_s": paired_ratio(ips["loader_cached"], ips["loader_plain"]),
        "cache_over_plain_train_images_per_s": paired_ratio(ips["bare_attributes_cached"], ips["bare_attributes"]),
        "two_stage_over_direct_learning_time": paired_ratio(two_stage, secs["engine_direct"]),
        "two_stage_incl_inference_over_direct_learning_time": paired_ratio(two_stage_infer, secs["engine_direct"]),
        "attributes_over_direct_fit_seconds": paired_ratio(
            [x["fit_seconds"] for x in raw["engine_attributes"]], [x["fit_seconds"] for x in raw["engine_direct"]]),
    }  # fmt: skip

    same_init = {
        task: all(math.isclose(a["init_checksum"], b["init_checksum"], rel_tol=0, abs_tol=1e-9)
                  for a, b in zip(raw[f"engine_{task}"], raw[f"bare_{task}"]))
        for task in ("attributes", "direct")
    }  # fmt: skip

    # Plain verdict on the cache, from the paired training ratio (noise band +-5%).
    train_ratio = ratios["cache_over_plain_train_images_per_s"]
    loader_ratio = ratios["cache_over_plain_loader_images_per_s"]["median"]
    if train_ratio["median"] > 1.05 and train_ratio["min"] > 1.0:
        word = "HELPS"
    elif train_ratio["median"] < 0.95 and train_ratio["max"] < 1.0:
        word = "HURTS"
    else:
        word = "does NOT measurably help"
    n = data_info["train_images"]
    plain_epoch = n / results["bare_attributes"]["images_per_s"]["median"]
    cached_epoch = n / results["bare_attributes_cached"]["images_per_s"]["median"]
    saved = plain_epoch - cached_epoch
    breakeven = cache_build["seconds"] / saved if saved > 0 else float("inf")
    cache_verdict = (
        f"decode-once cache on CPU {word} training: {train_ratio['median']:.2f}x images/s "
        f"(data loading alone {loader_ratio:.2f}x); building it took {cache_build['seconds']:.1f}s for {n} images"
        + (f", repaid after ~{breakeven:.1f} epoch(s)" if math.isfinite(breakeven) else ", never repaid")
    )

    learn = ratios["two_stage_over_direct_learning_time"]["median"]
    learning_verdict = (
        f"two-stage / direct learning time for the same steps: {learn:.2f}x "
        f"(the source study claimed ~2x); stage two's logistic fit adds "
        f"{summarize(s2)['median'] * 1000:.0f} ms on {stage_two[0]['rows']} rows, "
        f"{stage_two_full['seconds']:.1f}s at CelebA-train scale ({stage_two_full['rows']:,} rows)"
    )

    eng = ratios["engine_over_bare_images_per_s"]
    key = f"engine/bare images/s ratio: {eng['median']:.2f} (median of {eng['n']} paired repeat(s), " \
          f"range {eng['min']:.2f}-{eng['max']:.2f})"  # fmt: skip

    return {
        "benchmark": "bench_training",
        "mode": "quick" if args.quick else "full",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) if sys.argv else "",
        "config": {
            "backbone": args.backbone,
            "weights": args.weights,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "num_workers": args.num_workers,
            "seed": args.seed,
            "optimizer": config.optimizer,
            "lr": config.lr,
            "deterministic": config.deterministic,
            "precision": "32-true (CPU)" if not _cuda() else "auto",
            "log_every_n_steps": config.log_every_n_steps,
            "variant_order": "rotated by repeat",
        },  # fmt: skip
        "data": data_info,
        "results": results,
        "stage_one_inference_images_per_s": inference_ips,
        "stage_two_fit": {
            "seconds": summarize(s2),
            "rows": stage_two[0]["rows"],
            "celeba_train_scale": stage_two_full,
        },  # fmt: skip
        "cache_build": cache_build,
        "ratios": ratios,
        "same_initial_weights": same_init,
        "verdicts": {"cache": cache_verdict, "learning_time": learning_verdict},
        "key_figure": key,
        "raw": raw,
    }


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


RATIO_LABELS = {
    "engine_over_bare_images_per_s": "engine / bare images/s (AttributeModel)",
    "engine_over_bare_images_per_s_direct": "engine / bare images/s (DirectModel)",
    "cache_over_plain_loader_images_per_s": "cache / plain images/s, data loading only",
    "cache_over_plain_train_images_per_s": "cache / plain images/s, training (bare loop)",
    "two_stage_over_direct_learning_time": "two-stage / direct learning time (stage one + stage-two fit)",
    "two_stage_incl_inference_over_direct_learning_time": "  ... plus stage-one inference for stage two's rows",
    "attributes_over_direct_fit_seconds": "attributes / direct whole trainer.fit seconds",
}


def report(args, payload: dict) -> None:
    results, ratios = payload["results"], payload["ratios"]
    rows = [[v, r["images_per_s"]["median"], r["images_per_s"]["min"], r["images_per_s"]["max"],
             r["window_seconds"]["median"], r["description"]] for v, r in results.items()]  # fmt: skip
    headers = ["variant", "images/s median", "min", "max", "window s", "what"]
    ratio_rows = [[RATIO_LABELS[k], v["median"], v["min"], v["max"]] for k, v in ratios.items()]
    ratio_headers = ["ratio (paired per repeat)", "median", "min", "max"]
    cb = payload["cache_build"]
    extra_rows = [
        ["decode cache build (train split)", f"{cb['seconds']:.2f} s", f"{cb['images_per_s']:.0f} images/s"],
        ["stage-two logistic fit", f"{payload['stage_two_fit']['seconds']['median'] * 1000:.1f} ms",
         f"{payload['stage_two_fit']['rows']} rows x 39"],
        ["stage-two logistic fit, CelebA scale", f"{payload['stage_two_fit']['celeba_train_scale']['seconds']:.2f} s",
         f"{payload['stage_two_fit']['celeba_train_scale']['rows']:,} rows x 39"],
        ["stage-one inference", f"{payload['stage_one_inference_images_per_s']['median']:.1f} images/s", "eval, no grad"],
        ["same initial weights engine vs bare", str(payload["same_initial_weights"]), ""],
    ]  # fmt: skip
    print()
    print(text_table(headers, rows, digits=2))
    print()
    print(text_table(["", "value", "note"], extra_rows))
    print()
    print(text_table(ratio_headers, ratio_rows))
    print()
    cfg = payload["config"]
    md = [
        "# bench_training" + (" (quick smoke run: proves the script works, judges nothing)" if args.quick else ""),
        "",
        f"`{payload['command']}` on {payload['machine']['cpu_count']} CPU(s) ({payload['machine']['cpu_model']}), "
        f"torch {payload['machine'].get('torch')}, {payload['machine']['date']}; load average before/after "
        f"{payload['machine']['load_average_1_5_15']} / {payload['machine']['load_average_at_end']}.",
        "",
        f"{cfg['backbone']} (weights {cfg['weights']}), {cfg['image_size']} px, batch {cfg['batch_size']}, "
        f"{cfg['warmup']} warm-up + {cfg['steps']} timed steps per variant, {cfg['repeats']} interleaved repeats, "
        f"num_workers {cfg['num_workers']}, {cfg['optimizer']} lr {cfg['lr']}; data: {payload['data']['source']} "
        f"({payload['data']['train_images']} training images). Method: see the docstring of "
        "`benchmarks/bench_training.py`.",
        "",
        "## Throughput (images/s in the timed window)",
        "",
        markdown_table(headers, rows, digits=2),
        "",
        "## Other timings",
        "",
        markdown_table(["", "value", "note"], extra_rows),
        "",
        "## Ratios",
        "",
        markdown_table(ratio_headers, ratio_rows),
        "",
        "## Verdicts",
        "",
        f"- {payload['verdicts']['cache']}",
        f"- {payload['verdicts']['learning_time']}",
        f"- **{payload['key_figure']}**",
    ]  # fmt: skip
    name = "bench_training_quick" if args.quick else "bench_training"
    paths = write_results(args.out, name, payload, "\n".join(md))
    print(payload["verdicts"]["cache"])
    print(payload["verdicts"]["learning_time"])
    print(f"results: {paths['json']} and {paths['md']}")
    print(payload["key_figure"], flush=True)


if __name__ == "__main__":
    sys.exit(main())
