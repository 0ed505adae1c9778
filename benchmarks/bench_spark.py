"""Batch scoring with Spark: rows/s of ``mlflow.pyfunc.spark_udf`` in local mode against plain ``predict``.

Method (one process, one run, the two interleaved per repeat, order rotated, medians and paired ratios):

1. A direct pipeline (``--backbone`` at ``--image-size``, weights irrelevant to speed) is saved as users get
   it (with ``model.onnx`` when the ``[onnx]`` extra is installed) and logged to a throwaway SQLite MLflow
   store exactly as the project logs it (``MlflowTracker.log_pyfunc_model``).
2. Spark: a ``local[2]`` session (``--master``), a DataFrame of N image paths in 2 partitions, scored with
   ``spark_udf(..., env_manager="local", result_type="male_probability double, label string, error
   string")`` as in the README, ``params={"align": "none"}`` (the images are CelebA's aligned crops). The
   timed action is a ``noop`` write, which runs the UDF on every row without collecting anything. Each
   Python worker runs ``--threads-per-worker`` torch/ONNX threads (1: two workers on two cores).
   MLflow's UDF loads the model once per task, so each timed query pays that load; it is also measured
   apart, as the time to score 2 rows (one per partition).
3. ``predict``: the same bundle loaded with ``load_pipeline(align="none")`` (the runtime the served model
   uses) predicting the same N paths in the driver process, with torch's default threads.

rows/s = N / wall seconds. The ratio is Spark's rows/s over predict's (per repeat, back to back).
Images: the first N of ``<data-root>/img_align_celeba`` (default ``../shared/celeba`` when present), else
synthetic crops. Spark's session start (seconds, a JVM) is reported but not in the rows/s.

    python benchmarks/bench_spark.py                  # N=512 at 128 px, ~3-5 min on 2 CPU cores
    python benchmarks/bench_spark.py --quick          # CI: proves the script works, judges nothing
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attr2gender.data.synth import make_synthetic_celeba  # noqa: E402
from attr2gender.pipeline import DirectGenderClassifier, load_pipeline  # noqa: E402
from attr2gender.training import DirectModel  # noqa: E402
from common import (  # noqa: E402
    REPO_ROOT,
    machine_info,
    md_table,
    paired_ratio,
    rotate,
    stopwatch,
    summarize,
    text_table,
    write_results,
)

RESULT_TYPE = "male_probability double, label string, error string"  # the README's spark_udf call
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "celeba"


def image_paths(data_root: Path | None, n: int, tmp: Path) -> tuple[list[str], str]:
    """N image files: CelebA's aligned crops when a root is given and has enough, else synthetic crops."""
    if data_root is not None:
        found = sorted((data_root / "img_align_celeba").glob("*.jpg"))[:n]
        if len(found) == n:
            return [str(p) for p in found], f"CelebA crops ({data_root / 'img_align_celeba'})"
        print(f"note: {data_root} has {len(found)} of {n} images; using synthetic crops", flush=True)
    # CelebA's aligned crops are 178x218; synthetic squares of about that size cost the same to decode.
    root = make_synthetic_celeba(tmp / "celeba", n=n, seed=0, image_size=178)
    return [str(p) for p in sorted((root / "img_align_celeba").glob("*.jpg"))[:n]], "synthetic crops (178 px)"


def log_model(backbone: str, weights: str, image_size: int, tmp: Path) -> tuple[str, Path]:
    """A direct pipeline saved as users get it and logged as the project logs it: (model URI, bundle)."""
    from attr2gender.tracking.mlflow_tracking import MlflowTracker

    pipeline = DirectGenderClassifier(
        DirectModel(backbone=backbone, weights=weights), image_size, num_workers=0, align="none"
    )
    bundle = pipeline.save(tmp / "bundle")
    tracker = MlflowTracker(
        "bench-spark", tracking_uri=f"sqlite:///{tmp}/mlflow.db", announce=lambda *_: None
    )
    with tracker.run("bench-spark"):
        uri = tracker.log_pyfunc_model(bundle)
    return uri, bundle


def start_spark(master: str, threads_per_worker: int):
    from pyspark.sql import SparkSession

    # The UDF runs in Python workers the JVM starts: they must be this interpreter, with its packages.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    builder = (
        SparkSession.builder.master(master)
        .appName("attr2gender-bench-spark")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
    )
    if threads_per_worker > 0:
        # Reaches the Python workers only (the driver's predict keeps torch's default): OMP_NUM_THREADS
        # sets torch's threads there, and the project's ONNX runtime uses as many as torch.
        builder = builder.config("spark.executorEnv.OMP_NUM_THREADS", str(threads_per_worker))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=512, help="images scored per timed run")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default="none", help="speed does not depend on the weights' values")
    parser.add_argument(
        "--image-size", type=int, default=128, help="the pipeline's input size (cpu preset: 128)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=2, help="partitions of the paths DataFrame")
    parser.add_argument(
        "--threads-per-worker",
        type=int,
        default=1,
        help="torch/ONNX threads per Spark Python worker (0: default)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA_ROOT if (DEFAULT_DATA_ROOT / "img_align_celeba").is_dir() else None,
        help="CelebA root whose img_align_celeba/ gives the images (default: ../shared/celeba when present)",
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="synthetic crops even when CelebA is present"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--quick", action="store_true", help="tiny and fast, for CI: proves the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.backbone, args.image_size, args.repeats = 16, "test_efficientnet", 32, 1
    if args.synthetic:
        args.data_root = None
    try:
        import mlflow
        from pyspark.sql.functions import struct
    except ImportError as exc:
        print(f"needs pyspark (pip install -e '.[spark]'): {exc}", file=sys.stderr)
        return 2
    if shutil.which("java") is None:
        print("needs Java 17+ on PATH for Spark", file=sys.stderr)
        return 2
    # spark_udf copies the model's ~80 files to a local folder with a progress bar each time: noise here.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        paths, source = image_paths(args.data_root, args.n, tmp)
        model_uri, bundle = log_model(args.backbone, args.weights, args.image_size, tmp)
        pipeline = load_pipeline(bundle, num_workers=0, align="none")
        runtime = pipeline.forward_runtime.describe()
        print(
            f"{args.backbone} at {args.image_size} px, N={args.n} ({source}), driver runtime {runtime}, "
            f"Spark {args.master}, {args.threads_per_worker or 'default'} thread(s) per worker",
            flush=True,
        )
        with stopwatch() as session_start:
            spark = start_spark(args.master, args.threads_per_worker)
        try:
            udf = mlflow.pyfunc.spark_udf(
                spark, model_uri, env_manager="local", result_type=RESULT_TYPE, params={"align": "none"}
            )
            frame = spark.createDataFrame([(p,) for p in paths], "path string").repartition(args.partitions)
            frame = frame.cache()
            frame.count()  # materialised once, so the timed queries score and do not rebuild the input
            scored = frame.withColumn("pred", udf(struct("path")))

            # Warm-up and agreement: Spark's rows against predict's, joined on the path.
            rows = {r["path"]: r["pred"] for r in scored.collect()}
            expected = pipeline.predict(paths, progress=False)
            diffs = [
                abs(rows[p]["male_probability"] - q)
                for p, q in zip(paths, expected["male_probability"])
                if rows[p]["male_probability"] is not None and not math.isnan(q)
            ]
            failed = sum(1 for r in rows.values() if r["error"])
            agreement = {
                "rows": len(rows),
                "rows_with_error": failed,
                "compared": len(diffs),
                "max_abs_difference": max(diffs) if diffs else float("nan"),
                "label_agreement": sum(rows[p]["label"] == lab for p, lab in zip(paths, expected["label"]))
                / len(paths),
            }

            # Fixed cost of a query: 2 rows, one per partition, so each task loads the model once.
            tiny = spark.createDataFrame([(p,) for p in paths[:2]], "path string").repartition(2)
            fixed = []
            for _ in range(args.repeats):
                with stopwatch() as t:
                    tiny.withColumn("pred", udf(struct("path"))).write.format("noop").mode("overwrite").save()
                fixed.append(t.seconds)

            seconds = {"spark_udf": [], "predict": []}
            for r in range(args.repeats):
                for name in rotate(list(seconds), r):
                    with stopwatch() as t:
                        if name == "spark_udf":
                            scored.write.format("noop").mode("overwrite").save()
                        else:
                            pipeline.predict(paths, progress=False)
                    seconds[name].append(t.seconds)
                    print(f"repeat {r + 1}: {name} {args.n / t.seconds:.1f} rows/s", flush=True)
        finally:
            spark.stop()

    rows_per_s = {k: [args.n / s for s in v] for k, v in seconds.items()}
    ratio = paired_ratio(rows_per_s["spark_udf"], rows_per_s["predict"])
    results = {
        k: {"seconds": summarize(v), "rows_per_s": summarize(rows_per_s[k])} for k, v in seconds.items()
    }
    payload = {
        "benchmark": "bench_spark",
        "mode": "quick" if args.quick else "full",
        "config": {
            "n": args.n,
            "backbone": args.backbone,
            "weights": args.weights,
            "image_size": args.image_size,
            "repeats": args.repeats,
            "master": args.master,
            "partitions": args.partitions,
            "threads_per_worker": args.threads_per_worker,
            "result_type": RESULT_TYPE,
            "params": {"align": "none"},
        },
        "data": source,
        "driver_runtime": runtime,
        "machine": machine_info(),
        "versions": {"pyspark": __import__("pyspark").__version__, "mlflow": mlflow.__version__},
        "spark_session_start_seconds": session_start.seconds,
        "query_fixed_seconds_2_rows": summarize(fixed),
        "results": results,
        "ratio_spark_over_predict_rows_per_s": ratio,
        "agreement": agreement,
    }
    headers = ["route", "rows/s (median)", "range", "seconds for N (median)"]
    table = [
        [
            f"spark_udf, {args.master}, {args.partitions} partitions",
            results["spark_udf"]["rows_per_s"]["median"],
            f"{results['spark_udf']['rows_per_s']['min']:.1f}-{results['spark_udf']['rows_per_s']['max']:.1f}",
            results["spark_udf"]["seconds"]["median"],
        ],
        [
            "predict() in one process",
            results["predict"]["rows_per_s"]["median"],
            f"{results['predict']['rows_per_s']['min']:.1f}-{results['predict']['rows_per_s']['max']:.1f}",
            results["predict"]["seconds"]["median"],
        ],
    ]
    print(text_table(headers, table))
    load = payload["machine"].get("load_average_1_5_15")
    md = "\n\n".join(
        [
            f"Batch scoring, `{args.backbone}` at {args.image_size} px, N={args.n} ({source}), {args.repeats} "
            f"interleaved repeats (medians), {payload['machine']['date']}, load average {load}. Spark "
            f"{payload['versions']['pyspark']} `{args.master}`, {args.threads_per_worker or 'default'} "
            f"thread(s) per Python worker; `predict()` in the driver with torch's default threads; "
            f"runtime {runtime}.",
            md_table(headers, table),
            f"Spark / predict rows/s (paired): {ratio['median']:.3f} (range {ratio['min']:.3f}-{ratio['max']:.3f}). "
            f"Fixed cost of a query (2 rows, the model loaded once per task): "
            f"{payload['query_fixed_seconds_2_rows']['median']:.1f} s; Spark session start "
            f"{session_start.seconds:.1f} s (not in the rows/s).",
            f"Agreement with `predict`: {agreement['compared']} rows compared, max |difference| "
            f"{agreement['max_abs_difference']:.2g}, labels agree on {agreement['label_agreement']:.1%}, "
            f"{agreement['rows_with_error']} rows with an error.",
        ]
    )
    name = "bench_spark_quick" if args.quick else "bench_spark"
    written = write_results(args.out, name, payload, md)
    print(f"results: {written['json']}")
    print(
        f"spark_udf {args.master}: {results['spark_udf']['rows_per_s']['median']:.1f} rows/s; "
        f"predict: {results['predict']['rows_per_s']['median']:.1f} rows/s; "
        f"spark/predict: x{ratio['median']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
