"""Small helpers shared by the benchmark scripts: timing, summaries, machine info, result files.

Benchmarks here run on noisy, shared machines, so they interleave the variants they compare, repeat
them, and report medians and paired ratios. Nothing here asserts a wall-clock limit.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def stopwatch():
    """``with stopwatch() as t: ...`` then ``t.seconds`` (perf_counter wall time)."""

    class _T:
        seconds = float("nan")

    t = _T()
    start = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - start


def rotate(items: Sequence, k: int) -> list:
    """``items`` rotated left by ``k``: repeat ``k`` runs the variants in a different order, so no variant
    always runs first (cold caches) or last (after the machine heated up)."""
    if not items:
        return []
    k %= len(items)
    return list(items[k:]) + list(items[:k])


def summarize(values: Iterable[float]) -> dict:
    """Median, min, max and the raw values (finite ones only count)."""
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0, "values": vals}
    return {
        "median": statistics.median(finite),
        "min": min(finite),
        "max": max(finite),
        "n": len(finite),
        "values": vals,
    }


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict:
    """Per-repeat ratios a_i / b_i (pairs measured back to back share the machine's state), summarized."""
    ratios = [a / b if b else float("nan") for a, b in zip(numerator, denominator)]
    return summarize(ratios)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict:
    """What the numbers depend on: CPUs, library versions, load at the time, date."""
    info: dict = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": load_average(),
    }
    for var in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    try:
        info["cpus_available"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["cpus_available"] = os.cpu_count()
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["cuda_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    for name in ("torchvision", "lightning", "timm", "numpy", "sklearn"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            pass
    return info


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10**-digits):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def text_table(headers: Sequence[str], rows: Sequence[Sequence], digits: int = 3) -> str:
    """A plain aligned table for the console."""
    cells = [[_fmt(c, digits) for c in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)
    ]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def md_table(headers: Sequence[str], rows: Sequence[Sequence], digits: int = 3) -> str:
    """The console table as markdown: headers and rows of cells (not attr2gender.metrics.markdown_table,
    which reads dicts)."""
    out = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_fmt(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN/inf
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


def write_results(
    out_dir: str | Path, name: str, payload: dict, markdown: str | None = None
) -> dict[str, Path]:
    """``<out_dir>/<name>.json`` (strict JSON: NaN becomes null) and, when given, ``<out_dir>/<name>.md``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{name}.json"}
    paths["json"].write_text(json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n")
    if markdown is not None:
        paths["md"] = out_dir / f"{name}.md"
        paths["md"].write_text(markdown.rstrip() + "\n")
    return paths
