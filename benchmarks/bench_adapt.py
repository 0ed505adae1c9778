"""How many of your own labelled photos does ``adapt`` need? A learning curve on real photos.

Each route is trained on CelebA (the training side of the same identity-disjoint split as ``bench_wild.py``),
then its head is refitted on N photos of a labels CSV you pass (``--labels``: columns path,male; N = 25, 50,
100, 200, 400; 5 random draws each) and scored on the rest of that CSV, exactly as ``pipe.adapt`` does it
(the same head-fitting code; only the hold-out is the rest of the photos). Two priors: ``original`` (the
library's default: start from the CelebA head and stay near it) and ``none`` (refit from scratch: what the
head's size alone buys).

The question it answers: does the two-stage route's 40-parameter head need fewer labels than the direct
route's last layer (129 to 1,761 parameters) to reach the same accuracy?

Your photos are the adaptation data *and* the evaluation data (disjoint photos in every draw): these
numbers say what adapting to a source buys on that source, not how a model does on unseen sources.
``../shared/wild_dev`` is refused: it is for validation and selection only, and adapting fits on it.

    python benchmarks/bench_adapt.py --labels my_photos/labels.csv              # face routes
    python benchmarks/bench_adapt.py --labels my_photos/labels.csv --with-cnn   # + the cpu-preset CNNs
    python benchmarks/bench_adapt.py --quick      # CI smoke: synthetic data, proves the script runs

Results: ``benchmarks/results/bench_adapt.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attr2gender.pipeline.adapt import choose_C, fit_head, head_inputs, head_probability  # noqa: E402
from bench_wild import SPLIT, train_on_split  # noqa: E402
from common import REPO_ROOT, machine_info, md_table, write_results  # noqa: E402

SHARED = REPO_ROOT.parent / "shared"
SIZES = (25, 50, 100, 200, 400)
DRAWS = 5
PRIORS = ("original", "none")
ROUTES = {
    "face two-stage": ("two_stage", "face", {}),
    "face direct": ("direct", "face", {}),
    "face joint 1": ("two_stage", "face", {"mode": "joint", "concept_weight": 1.0}),
}
CNN_ROUTES = {"cpu two-stage": ("two_stage", "cpu", {}), "cpu direct": ("direct", "cpu", {})}
QUICK_ROUTES = {
    "cnn two-stage (quick)": ("two_stage", "smoke", {}),
    "cnn direct (quick)": ("direct", "smoke", {}),
}


def head_size(pipeline, X: np.ndarray) -> int:
    return X.shape[1] + 1


def curve(pipeline, X: np.ndarray, y: np.ndarray, sizes, draws: int, seed: int) -> list[dict]:
    """Accuracy on the photos not drawn, after refitting the head on N drawn ones, per prior and draw."""
    rows = []
    base = float(((head_probability(pipeline, None, X) >= 0.5) == y).mean())
    rows.append({"n": 0, "prior": "trained on CelebA only", "draw": 0, "accuracy": base})
    rng = np.random.default_rng(seed)
    for n in sizes:
        if n >= len(y) - 10:
            continue
        for draw in range(draws):
            while True:  # a draw with both classes (a user labelling photos would make sure of that)
                pick = rng.choice(len(y), size=n, replace=False)
                if 0 < y[pick].sum() < n:
                    break
            rest = np.setdiff1d(np.arange(len(y)), pick)
            for prior in PRIORS:
                start = time.perf_counter()
                C = choose_C(pipeline, X[pick], y[pick], prior, seed=draw)  # adapt()'s C="auto"
                head = fit_head(pipeline, X[pick], y[pick], None, C, prior)
                accuracy = float(((head_probability(pipeline, head, X[rest]) >= 0.5) == y[rest]).mean())
                rows.append(
                    {
                        "n": n,
                        "prior": prior,
                        "draw": draw,
                        "accuracy": accuracy,
                        "C": C,
                        "seconds": time.perf_counter() - start,
                    }
                )
    return rows


def summary(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    return (
        frame.groupby(["route", "prior", "n"], sort=False)["accuracy"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )


def markdown(table: pd.DataFrame, sizes_of_heads: dict, info: dict, n_photos: int) -> str:
    lines = [
        "# bench_adapt: refitting the head on a few of your own photos",
        "",
        f"{info.get('cpu_model', '')}, {info.get('cpu_count', '')} cores, {info.get('date', '')}. Every route "
        f"trained on CelebA (split {SPLIT}, seed 0), then its head refitted on N of the {n_photos} labelled "
        f"photos with a usable face, scored on the others; {DRAWS} random draws per N: mean ± std of the Male "
        "accuracy. N = 0: the CelebA-trained head on all of them. Priors: `original` starts from the CelebA "
        "head and stays near it (the library's default); `none` refits from scratch.",
        "",
    ]
    sizes = sorted(n for n in table["n"].unique() if n > 0)
    headers = ["route (head parameters)", "prior", "N = 0"] + [f"N = {n}" for n in sizes]
    out = []
    for route in table["route"].unique():
        part = table[table["route"] == route]
        zero = part[part["n"] == 0]["mean"].iloc[0]
        for prior in PRIORS:
            cells = [f"{route} ({sizes_of_heads[route]})", prior, f"{100 * zero:.1f}"]
            for n in sizes:
                row = part[(part["prior"] == prior) & (part["n"] == n)]
                cells.append(
                    f"{100 * row['mean'].iloc[0]:.1f} ± {100 * row['std'].iloc[0]:.1f}" if len(row) else ""
                )
            out.append(cells)
    lines += [md_table(headers, out), ""]
    return "\n".join(lines)


def plot(table: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, prior in zip(axes, PRIORS):
        for route in table["route"].unique():
            part = table[(table["route"] == route) & ((table["prior"] == prior) | (table["n"] == 0))]
            part = part.sort_values("n")
            ax.errorbar(
                part["n"].clip(lower=10),
                part["mean"],
                yerr=part["std"].fillna(0),
                marker="o",
                capsize=3,
                label=route,
            )
        ax.set_xscale("log")
        ax.set_xlabel("your labelled photos N (log; the leftmost point: none, CelebA only)")
        ax.set_title(f"head refitted, prior: {prior}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Male accuracy on the other photos")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(SHARED / "celeba"))
    parser.add_argument("--labels", default=None, help="CSV of your own labelled photos: path,male")
    parser.add_argument("--cache-dir", default=".cache/attr2gender")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with-cnn", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    routes = dict(ROUTES) | (CNN_ROUTES if args.with_cnn else {})
    sizes, draws = SIZES, DRAWS
    if args.quick:
        from attr2gender.data.synth import make_synthetic_celeba

        tmp = Path(tempfile.mkdtemp(prefix="bench_adapt_"))
        root = make_synthetic_celeba(tmp / "celeba", n=300, seed=0, image_size=64, progress=False)
        args.data_root, args.cache_dir, routes, sizes, draws = (
            str(root),
            str(tmp / "cache"),
            QUICK_ROUTES,
            (20,),
            2,
        )
        # The synthetic test images stand in for a user's photos (read as crops).
        labels = pd.read_csv(root / "list_attr_celeba.txt", sep=r"\s+", skiprows=1)
        photos = pd.DataFrame(
            {
                "file": [str(root / "img_align_celeba" / i) for i in labels.index[-60:]],
                "male": (labels["Male"].iloc[-60:] > 0).astype(int),
            }
        )
        align = "none"
    else:
        if args.labels is None:
            print("pass --labels CSV (path,male) of your own labelled photos: nothing to adapt to")
            return 0
        labels_csv = Path(args.labels).resolve()
        if labels_csv.is_relative_to((SHARED / "wild_dev").resolve()):
            print(
                "error: --labels: wild_dev is for validation and selection only; adapting would train on it"
            )
            return 2
        photos = pd.read_csv(labels_csv)
        photos["file"] = [str(labels_csv.parent / p) for p in photos["path"]]
        align = None
    out_dir = Path(tempfile.mkdtemp(prefix="bench_adapt_runs_"))
    rows, heads = [], {}
    n_photos = 0
    for name, (route, preset, overrides) in routes.items():
        pipe, _, _ = train_on_split(name, route, preset, overrides, args, out_dir, progress=False)
        X, errors = head_inputs(pipe, list(map(Path, photos["file"])), progress=False, align=align)
        ok = np.array([not e for e in errors])
        n_photos = int(ok.sum())
        heads[name] = head_size(pipe, X)
        for r in curve(pipe, X[ok], photos["male"].to_numpy()[ok], sizes, draws, args.seed):
            rows.append({"route": name} | r)
        table = summary(rows)
        info = machine_info()
        text = markdown(table, heads, info, n_photos)
        suffix = "_quick" if args.quick else ""
        written = write_results(
            args.out, f"bench_adapt{suffix}", {"rows": rows, "heads": heads, "machine": info}, text
        )
        plot(table, Path(args.out) / f"bench_adapt{suffix}.png")
    print(text)
    print(f"wrote {written['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
