"""Smoke tests of the benchmark scripts in ``--quick`` mode: they run and write sane result files.

They prove the scripts work; they never judge speed (no wall-clock assertions).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def _run_quick(script: str, out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_bench_training_quick(tmp_path):
    proc = _run_quick("bench_training.py", tmp_path)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    last = proc.stdout.strip().splitlines()[-2:]  # the key figures are printed last
    assert "engine/bare images/s ratio:" in last[0]
    assert last[1].startswith("CPU default (fp32-channels-last) / fp32-contiguous training images/s: 32 px")

    path = tmp_path / "bench_training_quick.json"
    assert path.is_file() and (tmp_path / "bench_training_quick.md").is_file()
    assert not (tmp_path / "bench_training.json").exists()  # quick runs never overwrite real results
    data = json.loads(path.read_text())
    for key in (
        "benchmark",
        "mode",
        "config",
        "machine",
        "data",
        "results",
        "ratios",
        "cache_build",
        "stage_two_fit",
        "verdicts",
        "key_figure",
        "same_initial_weights",
    ):
        assert key in data, key
    assert data["mode"] == "quick"
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["torch"]

    for variant in (
        "engine_attributes",
        "bare_attributes",
        "bare_attributes_cached",
        "engine_direct",
        "bare_direct",
        "loader_plain",
        "loader_cached",
    ):
        stats = data["results"][variant]
        assert _positive(stats["images_per_s"]["median"]), (variant, stats)
        assert _positive(stats["images_per_s_median_step"]["median"]), (variant, stats)
        assert _positive(stats["window_seconds"]["median"]), (variant, stats)
    for name in (
        "engine_over_bare_images_per_s",
        "cache_over_plain_loader_images_per_s",
        "cache_over_plain_train_images_per_s",
        "two_stage_over_direct_learning_time",
    ):
        for estimator in ("median_step", "window"):
            assert _positive(data["ratios"][name][estimator]["median"]), (name, data["ratios"][name])
    assert _positive(data["cache_build"]["seconds"])
    assert _positive(data["stage_two_fit"]["seconds"]["median"])
    # The fairness premise of the engine/bare comparison: both start from the same weights.
    assert data["same_initial_weights"] == {"attributes": True, "direct": True}
    variants = data["formats"]["by_size"]["32"]["variants"]
    assert set(variants) == {"fp32-contiguous", "fp32-channels-last", "bf16", "bf16-channels-last"}
    assert variants["fp32-contiguous"]["ratio_over_fp32_contiguous"]["median"] == 1.0
    assert all(_positive(v["images_per_s_median_step"]["median"]) for v in variants.values())
    assert 0 < data["formats"]["by_size"]["32"]["loader_share_of_default_step"]


def test_bench_inference_quick(tmp_path):
    proc = _run_quick("bench_inference.py", tmp_path)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    last = proc.stdout.strip().splitlines()[-2:]
    assert last[0].startswith("two-stage / direct inference time:")
    assert last[1].startswith("CPU default (onnxruntime")  # the [onnx] extra is part of the install
    data = json.loads((tmp_path / "bench_inference_quick.json").read_text())
    runtimes = data["forward_runtimes"]["by_size"]["32"]["runtimes"]
    assert {"eager", "channels_last", "bf16", "onnx"} <= set(runtimes)  # torch.compile may fail on a machine
    for r in runtimes.values():
        assert _positive(r["ms_per_image_b1"]["median"]) and _positive(r["gflops_b64"])
    assert _positive(data["forward_runtimes"]["peak"]["gflops"])
    for r in data["routes_per_runtime"]["by_runtime"].values():
        assert _positive(r["batch_64"]["ratio_two_stage_over_direct"]["median"])
    assert _positive(data["default_predict_speedup_over_eager_b64"])
    assert not (tmp_path / "bench_inference.json").exists()
    for section in ("latency_batch_1", "throughput_batch_64"):
        assert _positive(data[section]["ratio_two_stage_over_direct"]["median"])
        assert _positive(data[section]["direct_ms_per_image"]["median"])
    overhead = data["predict_overhead_batch_64"]
    for key in (
        "decode_ms_per_image",
        "preprocess_ms_per_image",
        "bare_forward_ms_per_image",
        "predict_ms_per_image",
    ):
        assert _positive(overhead[key]["median"]), key
    assert [m["images"] for m in data["memory"]] == [100, 300]
    assert all(m["rows"] == m["images"] and _positive(m["peak_rss_mb"]) for m in data["memory"])
    assert all(m["peak_rss_mb"] >= m["rss_mb_before_predict"] for m in data["memory"])
    assert all(_positive(r["seconds"]) for r in data["five_hundred_images"])


def test_bench_accuracy_quick(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_accuracy.py"),
            "--quick",
            "--no-mlflow",
            "--out",
            str(tmp_path),
            "progress=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip().splitlines()[-1].startswith("test accuracy: direct")
    data = json.loads((tmp_path / "bench_accuracy_quick.json").read_text())
    routes = [(r["route"], r["stage_two"], r["applied_to"]) for r in data["rows"]]
    assert ("direct", "", "pixels") in routes
    for model in ("logistic", "lightgbm"):
        assert ("two-stage", model, "probabilities") in routes
        assert ("two-stage", model, "thresholded probabilities") in routes
        assert any(r[:2] == ("ceiling: true attributes", model) for r in routes)
    for row in data["rows"]:
        if row["route"] != "note":
            assert 0 <= row["ci_low"] <= row["accuracy"] <= row["ci_high"] <= 1, row
        if row["route"] == "two-stage":  # paired difference against direct on the same test images
            low, high = row["direct_minus_this_ci"]
            assert low <= row["direct_minus_this"] <= high, row
    assert 0 < data["stage_one_mean_attribute_accuracy"] < 1
    agreement = {(r["pipeline"], r["runtime"].split(" ")[0]) for r in data["runtime_agreement"]}
    assert agreement == {
        ("two_stage", "torch"),
        ("two_stage", "onnxruntime"),
        ("direct", "torch"),
        ("direct", "onnxruntime"),
    }
    for r in data["runtime_agreement"]:
        if r["runtime"].startswith("onnxruntime"):
            assert r["max_abs_difference"] < 1e-4 and r["label_agreement"] == 1.0, r
    # the concept-bottleneck rows (issue: joint training, hard bottlenecks, interventions)
    routes = [r["route"] for r in data["rows"]]
    assert "two-stage: sequential, hard bottleneck" in routes
    assert any(r.startswith("two-stage: joint, concept_weight 1 (chosen on validation)") for r in routes)
    assert [r["concept_weight"] for r in data["joint_sweep"]] == [1.0]
    curve = {(c["pipeline"], c["policy"], c["k"]) for c in data["intervention_curves"]}
    assert ("sequential, hard", "uncertainty", 10) in curve and ("sequential, soft", "random", 39) in curve


def test_bench_groups_quick(tmp_path):
    proc = _run_quick("bench_groups.py", tmp_path)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    data = json.loads((tmp_path / "bench_groups_quick.json").read_text())
    variants = [r["variant"] for r in data["rows"]]
    assert variants == [
        "two_stage_erm+erm",
        "two_stage_erm+no_cosmetics",
        "two_stage_erm+worst_group",
        "two_stage_erm+no_cosmetics_worst_group",
        "direct_erm",
        "direct_dro",
    ]
    for r in data["rows"]:
        assert 0 <= r["ci_low"] <= r["accuracy"] <= r["ci_high"] <= 1
        assert set(r["celeba_c"]) == {
            "grayscale",
            "jpeg_q20",
            "blur_2",
            "downscale_48",
            "brightness",
            "rotate_15",
        }
        assert {g["group"] for g in r["groups"]} >= {"female_no_makeup", "male_makeup", "male_blond"}
        if r["variant"] not in ("two_stage_erm+erm", "direct_erm"):
            low, high = r["minus_baseline_ci"]
            assert low <= r["minus_baseline"] <= high
    md = (tmp_path / "bench_groups_quick.md").read_text()
    assert "CelebA-C" in md and "worst-group accuracy" in md


@pytest.mark.slow
def test_bench_spark_quick(tmp_path):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17+")
    proc = _run_quick("bench_spark.py", tmp_path)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip().splitlines()[-1].startswith("spark_udf local[2]:")
    data = json.loads((tmp_path / "bench_spark_quick.json").read_text())
    assert data["mode"] == "quick" and not (tmp_path / "bench_spark.json").exists()
    for route in ("spark_udf", "predict"):
        assert _positive(data["results"][route]["rows_per_s"]["median"])
    assert _positive(data["ratio_spark_over_predict_rows_per_s"]["median"])
    assert data["agreement"]["rows"] == 16 and data["agreement"]["rows_with_error"] == 0
    assert data["agreement"]["max_abs_difference"] < 1e-5


@pytest.mark.slow
def test_bench_wild_quick(tmp_path):
    proc = _run_quick("bench_wild.py", tmp_path)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    data = json.loads((tmp_path / "bench_wild_quick.json").read_text())
    assert not (tmp_path / "bench_wild.json").exists()  # quick runs never overwrite real results
    rows = {r["variant"]: r for r in data["rows"]}
    assert set(rows) == {"cnn two-stage (quick)", "cnn direct (quick)"}
    for row in rows.values():
        celeba = row["celeba"]
        assert 0 <= celeba["low"] <= celeba["accuracy"] <= celeba["high"] <= 1 and celeba["n"] > 0
        assert _positive(row["train_seconds"])
    # The two-stage route's accuracy is reported next to its concept quality, never alone.
    concepts = rows["cnn two-stage (quick)"]["concepts"]
    assert len(concepts["worst_five"]) == 5 and 0 <= concepts["attr_mean_auc"] <= 1
    assert "Concept quality" in (tmp_path / "bench_wild_quick.md").read_text()
    assert (tmp_path / "bench_wild_quick.png").stat().st_size > 10_000


@pytest.mark.slow
def test_bench_adapt_quick(tmp_path):
    proc = _run_quick("bench_adapt.py", tmp_path)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    data = json.loads((tmp_path / "bench_adapt_quick.json").read_text())
    assert not (tmp_path / "bench_adapt.json").exists()  # quick runs never overwrite real results
    rows = data["rows"]
    assert {r["route"] for r in rows} == {"cnn two-stage (quick)", "cnn direct (quick)"}
    assert data["heads"]["cnn two-stage (quick)"] == 40  # 39 attributes and a bias
    for r in rows:
        assert 0 <= r["accuracy"] <= 1
    assert {r["prior"] for r in rows if r["n"]} == {"original", "none"}
    assert (tmp_path / "bench_adapt_quick.png").stat().st_size > 10_000
