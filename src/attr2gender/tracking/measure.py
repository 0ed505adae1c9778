"""What a pipeline costs to run and to ship: inference latency, throughput, parameters, bundle size.

Latency is measured on ``pipeline.predict`` (preprocessing, forward pass, and for the two-stage route
the tabular model) over images decoded beforehand, so disk and JPEG decoding are left out and both
routes are timed on the same work. Each setting is timed ``repeats`` times after a warm-up call and the
median is kept. The image counts are small by default so the measurement stays bounded on a CPU.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from ..pipeline.bundle import disk_bytes


@dataclass(frozen=True)
class MeasureSpec:
    """Which batch sizes to time, on how many images each, how often."""

    images: dict[int, int] = field(default_factory=lambda: {1: 16, 64: 128})  # batch size -> images
    repeats: int = 3  # timed calls per batch size; the median is reported
    warmup: bool = True  # one untimed call first (allocations, lazy init, CUDA kernels)

    @classmethod
    def parse(cls, text: str, repeats: int = 3) -> MeasureSpec:
        """``"1:16,64:128"`` (batch:images pairs) into a spec; ``ValueError`` naming the format otherwise."""
        images = {}
        try:
            for part in text.split(","):
                batch, count = part.split(":")
                images[int(batch)] = int(count)
        except ValueError:
            raise ValueError(
                f"latency spec {text!r} must look like 1:16,64:128 (batch:images pairs)"
            ) from None
        if not images or any(b < 1 or n < 1 for b, n in images.items()):
            raise ValueError(f"latency spec {text!r}: batch sizes and image counts must be at least 1")
        if repeats < 1:
            raise ValueError(f"latency repeats must be at least 1, got {repeats}")
        return cls(images=images, repeats=repeats)


def _cycle(images: list, n: int) -> list:
    """``n`` images, repeating ``images`` when there are fewer, so every batch is full."""
    if not images:
        raise ValueError("no images to time inference on")
    return [images[i % len(images)] for i in range(n)]


def measure_latency(pipeline, images: list, spec: MeasureSpec | None = None) -> dict[str, float]:
    """Median wall time of ``pipeline.predict`` per image, per batch size in ``spec``.

    ``images``: decoded images (PIL) or paths, crops like the training images: timed with ``align="none"``,
    the model's own cost (face alignment's is measured in ``benchmarks/bench_inference.py``). Returns, for
    each batch size ``b``, ``inference_ms_per_image_b{b}`` and ``inference_images_per_s_b{b}``.
    """
    spec = spec or MeasureSpec()
    out: dict[str, float] = {}
    for batch, count in sorted(spec.images.items()):
        batch_images = _cycle(list(images), count)

        def call(batch_images=batch_images, batch=batch):
            pipeline.predict(batch_images, errors="raise", progress=False, batch_size=batch, align="none")

        if spec.warmup:
            call()
        seconds = []
        for _ in range(spec.repeats):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        out[f"inference_ms_per_image_b{batch}"] = 1000.0 * median / count
        out[f"inference_images_per_s_b{batch}"] = count / median if median > 0 else float("inf")
    return out


def parameter_count(module) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


def stage_two_parameter_count(stage_two) -> int:
    """Fitted numbers of a stage-two model: coefficients + intercept (logistic), nodes (LightGBM)."""
    estimator = getattr(stage_two, "estimator_", None)
    if estimator is None:
        return 0
    if hasattr(estimator, "coef_"):
        return int(np.size(estimator.coef_) + np.size(getattr(estimator, "intercept_", 0)))
    booster = getattr(stage_two, "booster_", None)
    if booster is not None:
        trees = booster.dump_model().get("tree_info", [])
        return int(sum(2 * t.get("num_leaves", 1) - 1 for t in trees))
    return 0


def cost_metrics(pipeline, bundle_dir: str | os.PathLike) -> dict[str, float]:
    """``param_count`` (image model + stage two), ``image_model_param_count``, ``bundle_bytes``."""
    image_params = parameter_count(pipeline.image_model)
    extra = (
        stage_two_parameter_count(pipeline.stage_two)
        if getattr(pipeline, "stage_two", None) is not None
        else 0
    )
    return {
        "param_count": float(image_params + extra),
        "image_model_param_count": float(image_params),
        "stage_two_param_count": float(extra),
        "bundle_bytes": float(disk_bytes(bundle_dir)),
    }


PAIRED_ROUNDS = 5  # rounds of interleaved timing: [min, max] of 5 covers their median with 94 % probability


def paired_latency(
    pipelines: dict[str, object], images: list, spec: MeasureSpec | None = None, rounds: int = PAIRED_ROUNDS
) -> dict[str, dict[int, list[float]]]:
    """ms/image of each pipeline, per batch size and round, timed in turn on the same decoded images: within a
    round every pipeline runs once, the order reversed each round (ABBA), so a slow spell of a shared machine
    falls on both. ``{name: {batch: [ms per round]}}`` (see :func:`ratio_interval`)."""
    spec = spec or MeasureSpec()
    names = list(pipelines)
    out = {name: {} for name in names}
    for batch, count in sorted(spec.images.items()):
        batch_images = _cycle(list(images), count)

        def call(name, batch_images=batch_images, batch=batch):
            pipelines[name].predict(
                batch_images, errors="raise", progress=False, batch_size=batch, align="none"
            )

        if spec.warmup:
            for name in names:
                call(name)
        for name in names:
            out[name][batch] = []
        for k in range(rounds):
            for name in names if k % 2 == 0 else reversed(names):
                start = time.perf_counter()
                call(name)
                out[name][batch].append(1000.0 * (time.perf_counter() - start) / count)
    return out


def ratio_interval(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """(median, low, high) of the per-round ratios ``a / b``: the median, and the range over the rounds,
    which covers the ratios' median with probability ``1 - 2 * 0.5**rounds`` (94 % for 5 rounds)."""
    ratios = [x / y for x, y in zip(a, b) if y > 0]
    if not ratios:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(ratios), min(ratios), max(ratios)
