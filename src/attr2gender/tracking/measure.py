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
from pathlib import Path

import numpy as np


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


def directory_size(path: str | os.PathLike) -> int:
    """Total bytes of the files under ``path``."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return int(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))


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
        "bundle_bytes": float(directory_size(bundle_dir)),
    }
