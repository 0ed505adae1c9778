"""``compare --seeds`` (one comparison per seed, the spread across seeds) and the self-contained HTML report
that every comparison writes beside its markdown."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attr2gender import cli
from attr2gender.cli import main_compare
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.experiments.comparison_metrics import Comparison, RouteResult
from attr2gender.experiments.html_report import (
    Collapsible,
    demote_headings,
    markdown_to_html,
    ordered_files,
    write_html_report,
)
from attr2gender.experiments.plan import plan_comparison
from attr2gender.experiments.seeds import summarize_seeds

TINY = [
    "backbone=test_efficientnet",
    "weights=none",
    "image_size=32",
    "epochs=1",
    "num_workers=0",
    "progress=false",
    "batch_size=16",
]
FAST = ["--latency", "1:2,64:4", "--latency-repeats", "1"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and do not crawl when another process holds a core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    # 400 images: every seed's identity split then keeps both Male classes in train and validation.
    return make_synthetic_celeba(tmp_path_factory.mktemp("synth") / "celeba", n=400, seed=0, image_size=40)


# --- the summary across seeds (pure) ---


def _comparison(loss: float, two_stage: float = 0.80) -> Comparison:
    """A comparison where direct is ``loss`` more accurate (two_stage_minus_direct = -loss)."""
    metrics = {
        "accuracy_two_stage": two_stage,
        "accuracy_direct": two_stage + loss,
        "two_stage_minus_direct": -loss,
        "two_stage_minus_direct_ci_low": -loss - 0.005,
        "two_stage_minus_direct_ci_high": -loss + 0.005,
        "n_test_images": 1000.0,
    }
    return Comparison(metrics, {}, {})


def test_losses_of_one_sign_are_stable_with_mean_and_sample_std():
    s = summarize_seeds({0: _comparison(0.01), 1: _comparison(0.02, two_stage=0.70)})
    assert s.sign_stable and s.seeds == [0, 1]
    assert s.mean["two_stage_minus_direct"] == pytest.approx(-0.015)
    assert s.std["two_stage_minus_direct"] == pytest.approx(math.sqrt(2) * 0.005)  # ddof=1
    assert s.mean["accuracy_two_stage"] == pytest.approx(0.75)
    assert s.std["accuracy_two_stage"] == pytest.approx(np.std([0.8, 0.7], ddof=1))
    assert s.mean["accuracy_direct"] == pytest.approx(np.mean([0.81, 0.72]))
    assert (
        "In 2 of 2 seeds the direct route was more accurate (two-stage minus direct -1.50 ± 0.71 points); the "
        "sign is stable "
        "across seeds." in s.report
    )
    assert "excludes 0 in 2 of 2 seeds" in s.report
    assert set(s.metrics()) == {
        "seeds_n",
        *(
            f"seeds_{k}_{stat}"
            for k in ("accuracy_two_stage", "accuracy_direct", "two_stage_minus_direct")
            for stat in ("mean", "std")
        ),
    }
    rows = json.loads(s.to_json())["rows"]
    assert [r["seed"] for r in rows] == [0, 1] and rows[1]["two_stage_minus_direct"] == -0.02


def test_losses_of_both_signs_or_a_zero_are_not_stable():
    mixed = summarize_seeds({0: _comparison(0.01), 1: _comparison(-0.01)})
    assert not mixed.sign_stable
    assert mixed.mean["two_stage_minus_direct"] == pytest.approx(0.0, abs=1e-12)
    assert "The direct route was more accurate in 1 of 2 seeds, the two-stage route in 1 (" in mixed.report
    assert "**not stable**" in mixed.report
    tie = summarize_seeds({3: _comparison(0.01), 7: _comparison(0.0)})
    assert not tie.sign_stable and "tied in 1" in tie.report
    assert summarize_seeds({0: _comparison(0.0), 1: _comparison(0.0)}).sign_stable is False


def test_a_two_stage_win_in_every_seed_is_stable_and_said_so():
    s = summarize_seeds({0: _comparison(-0.02), 1: _comparison(-0.03), 2: _comparison(-0.01)})
    assert s.sign_stable
    assert (
        "In 3 of 3 seeds the two-stage route was more accurate (two-stage minus direct +2.00 ± 1.00 points)"
        in s.report
    )
    assert "so few values" not in s.report  # the small-sample note is for fewer than 3 seeds


def test_one_seed_has_no_spread_and_bad_input_is_named(tmp_path):
    s = summarize_seeds({5: _comparison(0.01)})
    assert math.isnan(s.std["two_stage_minus_direct"])
    files = s.write(tmp_path)
    assert json.loads(files["seeds_json"].read_text())["std"]["two_stage_minus_direct"] is None  # valid JSON
    assert files["seeds_report"].read_text() == s.report
    with pytest.raises(ValueError, match="at least one"):
        summarize_seeds({})
    with pytest.raises(ValueError, match="seed 4.*two_stage_minus_direct"):
        summarize_seeds({4: Comparison({"accuracy_two_stage": 0.5}, {}, {})})


# --- the HTML page ---


def _png(path: Path, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), color).save(path)
    return path


def _assert_self_contained(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>")
    for external in ('src="http', "src='http", 'href="http', "<link", "<script", "@import", "url("):
        assert external not in text, external
    # Every src is an embedded image.
    assert all(src.startswith("data:image/") for src in re.findall(r'src="([^"]*)"', text))


def test_html_report_embeds_plots_renders_tables_and_escapes_text(tmp_path):
    plot = _png(tmp_path / "plots" / "costs.png")
    markdown = (
        "# Headline <b>raw</b>\n\nA paragraph with **bold**, *italic*, `code <x>` and "
        "<script>alert('x')</script>.\n\n| route | accuracy |\n| --- | ---: |\n| two-stage \\| soft | 0.91 |\n"
        "| direct | 0.93 |\n\n- first\n- second, wrapped\n  onto two lines\n"
    )
    out = write_html_report(
        tmp_path / "out" / "report.html",
        "A <title>",
        [markdown, plot, Collapsible("More <details>", ["## Inside\n\ntext"])],
    )
    text = out.read_text()
    _assert_self_contained(text)
    assert '<img src="data:image/png;base64,' in text
    assert "<table>" in text and '<td style="text-align:right">0.93</td>' in text
    assert "<td>two-stage | soft</td>" in text  # an escaped pipe stays in its cell
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "<h1" in text and "Headline &lt;b&gt;raw&lt;/b&gt;" in text
    assert (
        "<strong>bold</strong>" in text
        and "<em>italic</em>" in text
        and "<code>code &lt;x&gt;</code>" in text
    )
    assert "<li>second, wrapped onto two lines</li>" in text
    assert "<title>A &lt;title&gt;</title>" in text
    assert "<details><summary>More &lt;details&gt;</summary>" in text


def test_markdown_edge_cases_stay_literal():
    html = markdown_to_html("files: intervention_curve_*.png and 2 * 3 * 4\n\n```\n<b>kept</b>\n```")
    assert "<em>" not in html and "intervention_curve_*.png" in html
    assert "<pre><code>&lt;b&gt;kept&lt;/b&gt;</code></pre>" in html
    assert demote_headings("# a\n## b\n```\n# code\n```", 2) == "### a\n#### b\n```\n# code\n```"


def test_html_report_refuses_what_it_cannot_embed(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_html_report(tmp_path / "r.html", "t", [tmp_path / "missing.png"])
    (tmp_path / "anim.gif").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="PNG or JPEG"):
        write_html_report(tmp_path / "r.html", "t", [tmp_path / "anim.gif"])


def test_ordered_files_puts_preferred_names_first(tmp_path):
    for name in ("z.png", "b.png", "slices.png", "a.png"):
        _png(tmp_path / name)
    names = [p.name for p in ordered_files(tmp_path, "*.png", ("slices.png", "absent.png", "b.png"))]
    assert names == ["slices.png", "b.png", "a.png", "z.png"]
    assert ordered_files(tmp_path / "none", "*.png") == []


# --- the CLI: usage errors before any work ---


def _nothing_made(folder: Path) -> bool:
    return not any((folder / name).exists() for name in ("runs", "mlflow.db", "data"))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--mlflow-runs", "a", "b", "--seeds", "0", "1"], "--seeds and --mlflow-runs do not combine"),
        (["--seeds", "3"], "give two or more seeds"),
        (["--seeds", "0", "1", "0"], "each seed once"),
        (["seed=4", "--seeds", "0", "1"], "drop the seed=... override"),
    ],
)
def test_bad_seeds_exit_2_with_one_error_line(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main_compare(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert _nothing_made(tmp_path)


def test_an_override_after_seeds_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main_compare(["--seeds", "0", "1", "epochs=1"])
    assert exit_.value.code == 2
    assert "put key=value overrides before --seeds" in capsys.readouterr().err
    assert _nothing_made(tmp_path)


# --- per seed: the split, the run names ---


def _seed_plans(root: Path, seeds, extra=()) -> dict:
    args = cli.build_parser().parse_args(
        ["run", "compare", "--data-root", str(root), *TINY, *extra, "--seeds", *map(str, seeds)]
    )
    return {
        s: plan_comparison(
            args.config_two_stage,
            args.config_direct,
            args.data_root,
            [*args.overrides, f"seed={s}"],
            f"t-seed{s}",
            seeded=True,
        )
        for s in args.seeds
    }


def _test_ids(config) -> list[str]:
    from attr2gender.training.datamodule import CelebADataModule

    data = CelebADataModule(config)
    data.prepare()  # the split training uses, without training
    return data.splits.test


def test_seeds_keep_the_split_a_single_comparison_uses(synth_root, tmp_path, monkeypatch):
    """compare and compare --seeds agree: seed 0 of --seeds tests on the people compare alone tests on."""
    monkeypatch.chdir(tmp_path)
    plans = _seed_plans(synth_root, [0, 1])
    single = plan_comparison(None, None, str(synth_root), list(TINY), "t-single")
    tests = {}
    for seed, (variants, direct) in plans.items():
        two = variants[0]
        assert two.config.seed == direct.config.seed == seed
        assert two.config.split == direct.config.split == single[0][0].config.split == "auto"
        tests[seed] = _test_ids(two.config)
        assert _test_ids(direct.config) == tests[seed]  # the routes of one seed see the same images
    assert tests[0] == _test_ids(single[0][0].config)


def test_split_identity_redraws_the_people_for_every_seed(synth_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plans = _seed_plans(synth_root, [0, 1], ["split=identity"])
    tests = {seed: _test_ids(variants[0].config) for seed, (variants, _) in plans.items()}
    assert tests[0] != tests[1]
    names = [p.config.run_name for variants, direct in plans.values() for p in (*variants, direct)]
    assert len(set(names)) == 4  # four run folders
    assert [sum(f"t-seed{s}" in n for n in names) for s in (0, 1)] == [2, 2]


def test_a_fixed_run_name_or_official_split_still_works_per_seed(synth_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plans = _seed_plans(synth_root, [0, 1], extra=["run_name=mine", "split=official"])
    names = [p.config.run_name for variants, direct in plans.values() for p in (*variants, direct)]
    assert sorted(names) == sorted(f"mine-{k}-seed{s}" for k in ("two_stage", "direct") for s in (0, 1))
    # split=official is kept when asked for: the seeds then share the partition.
    assert _test_ids(plans[0][0][0].config) == _test_ids(plans[1][0][0].config)


# --- the seeds run: nesting, logging and files, routes faked, MLflow real ---


def _fake_run_pipeline(tmp_path: Path):
    from attr2gender.experiments.route_run import PipelineRun

    y = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 1])
    ids = [f"{i:06d}.jpg" for i in range(len(y))]

    def run_pipeline(plan, tracker, nested=False, measure=None, extra_tags=None):
        with tracker.run(
            plan.config.run_name, tags={"route": plan.route} | (extra_tags or {}), nested=nested
        ) as run_id:
            # Seed 0: both right everywhere; seed 1: two-stage misses one image more than direct.
            wrong = 1 if plan.route == "two_stage" and plan.config.seed == 1 else 0
            prob = np.where(y, 0.9, 0.1)
            prob[:wrong] = 1 - prob[:wrong]
            metrics = {"test_accuracy": float(((prob >= 0.5) == y).mean()), "inference_ms_per_image_b1": 1.0}
            tracker.log_metrics(metrics)
            run_dir = tmp_path / "runs" / plan.config.run_name
            (run_dir / "reports").mkdir(parents=True)
            (run_dir / "reports" / "slices.md").write_text(
                f"# Slices ({plan.route})\n\n| slice | accuracy |\n| --- | --- |\n| <script>x</script> | 0.9 |\n"
            )
            _png(run_dir / "plots" / "reliability.png")
            _png(run_dir / "plots" / "confusion_matrix.png", color=(0, 0, 200))
            result = RouteResult(plan.route, ids, y, prob, metrics, run_id=run_id)
            return PipelineRun(plan.route, plan.config, None, run_dir, run_dir, metrics, result, run_id)

    return run_pipeline


def test_seed_comparisons_nest_twice_in_mlflow_and_log_the_spread(tmp_path, monkeypatch):
    import mlflow

    from attr2gender.config import RunConfig
    from attr2gender.experiments import comparison_run as runmod
    from attr2gender.experiments.plan import DataChoice, RunPlan
    from attr2gender.tracking.mlflow_tracking import MlflowTracker

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(runmod, "run_pipeline", _fake_run_pipeline(tmp_path))
    data = DataChoice(str(tmp_path), synthetic=True)

    def plan(kind, seed):
        config = RunConfig(output_dir=str(tmp_path / "runs"), run_name=f"{kind}-s{seed}", seed=seed)
        return RunPlan(kind, config, "smoke", data)

    plans = {seed: ([plan("two_stage", seed)], plan("direct", seed)) for seed in (0, 1)}
    result = runmod.run_seed_comparisons(
        plans, MlflowTracker("seeds-test", uri, announce=lambda m: None), n_boot=50, stamp="t"
    )

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("seeds-test").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    parent = by_name["compare-seeds-t"]
    assert "mlflow.parentRunId" not in parent.data.tags and parent.info.run_id == result.run_id
    for seed in (0, 1):
        comparison = by_name[f"compare-t-seed{seed}"]
        assert comparison.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert comparison.data.tags["seed"] == str(seed) and comparison.data.tags["comparison"]
        for kind in ("two_stage", "direct"):
            child = by_name[f"{kind}-s{seed}"]
            assert child.data.tags["mlflow.parentRunId"] == comparison.info.run_id
            assert child.data.tags["seed"] == str(seed)
        artifacts = {a.path for a in client.list_artifacts(comparison.info.run_id, "comparison")}
        assert {"comparison/report.md", "comparison/report.html"} <= artifacts

    m = parent.data.metrics  # the runs table shows 4 significant digits (exact values: all_metrics.json)
    assert m["seeds_two_stage_minus_direct_mean"] == pytest.approx(-0.05)  # direct better by 0 and 0.1
    assert m["seeds_two_stage_minus_direct_std"] == pytest.approx(np.std([0.0, 0.1], ddof=1), rel=1e-3)
    assert m["seeds_accuracy_two_stage_mean"] == pytest.approx(0.95)
    assert {"seeds_accuracy_direct_mean", "seeds_accuracy_direct_std", "seeds_accuracy_two_stage_std"} <= set(
        m
    )
    assert parent.data.tags["seeds_sign_stable"] == "false"  # a zero loss is not a stable sign
    assert "Across 2 seeds" in parent.data.tags["mlflow.note.content"]
    history = client.get_metric_history(parent.info.run_id, "seed_two_stage_minus_direct")
    assert sorted((h.step, round(h.value, 6) + 0.0) for h in history) == [(0, 0.0), (1, -0.1)]
    assert {"comparison/seeds.md", "comparison/seeds.json", "comparison/report.html"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "comparison")
    }

    out = tmp_path / "runs" / "compare-seeds-t"
    assert result.out_dir == out and json.loads((out / "seeds.json").read_text())["sign_stable"] is False
    page = (out / "report.html").read_text()
    _assert_self_contained(page)
    assert page.index("Across 2 seeds") < page.index("<summary>Seed 0") < page.index("<summary>Seed 1")
    assert "&lt;script&gt;x&lt;/script&gt;" in page  # the routes' reports, escaped
    seed_page = (out / "seed-1" / "report.html").read_text()
    _assert_self_contained(seed_page)
    # A seed's own page: its comparison first, then each route's reports and plots (preferred first).
    assert (
        seed_page.index("Two-stage (image")
        < seed_page.index("Two-stage route")
        < seed_page.index("Direct route")
    )
    route = seed_page[seed_page.index("Two-stage route") :]
    assert route.index("reliability.png") < route.index("confusion_matrix.png")
    assert seed_page.count('<img src="data:image/png;base64,') > page.count(
        '<img src="data:image/png;base64,'
    )


# --- a real tiny comparison ---


def test_a_tiny_comparison_writes_a_self_contained_html_report(synth_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main_compare(
            ["--data-root", str(synth_root), "--bootstrap", "50", *FAST, *TINY, "tracking=none"]
        )
    assert rc == 0
    (folder,) = (tmp_path / "runs").glob("compare-*")
    assert (folder / "report.md").is_file()
    page = (folder / "report.html").read_text()
    _assert_self_contained(page)
    assert '<img src="data:image/png;base64,' in page and "<table>" in page
    for text in ("Against the source study", "Two-stage route", "Direct route", "confusion_matrix.png"):
        assert text in page, text
    assert f"HTML:      {folder / 'report.html'}" in out.getvalue()


@pytest.mark.slow
def test_compare_seeds_end_to_end(synth_root, tmp_path, monkeypatch):
    """Two seeds, four routes trained, into MLflow: with split=identity the test images differ between the
    seeds, and the output says so (~45 s)."""
    import mlflow
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main_compare(
            [
                "--data-root",
                str(synth_root),
                "--bootstrap",
                "50",
                *FAST,
                *TINY,
                "split=identity",
                "--seeds",
                "0",
                "1",
            ]
        )
    assert rc == 0
    assert "the sign is" in out.getvalue()
    assert "each seed draws its own identity-disjoint split" in out.getvalue()
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("attr2gender").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("comparison") == "seeds")
    assert "seeds_two_stage_minus_direct_std" in parent.data.metrics
    test_ids = {}
    for seed in (0, 1):
        (folder,) = tmp_path.glob(f"runs/compare-seeds-*/seed-{seed}")
        frame = pd.read_csv(next((tmp_path / "runs").glob(f"two_stage-*seed{seed}-*/predictions/*.csv")))
        test_ids[seed] = set(frame["image_id"])
        assert (folder / "report.html").is_file()
    assert test_ids[0] != test_ids[1]
