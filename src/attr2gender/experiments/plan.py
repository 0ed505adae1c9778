"""Planning a run: every argument checked before any work, and the data chosen (the synthetic fallback
lives here, and only here: training never invents data).

Data: ``--data-root DIR`` (or ``data_root=DIR``), else ``data/celeba`` in the working folder; with either,
the named preset runs (default ``face`` for both routes; the study's are ``two_stage`` / ``direct``). With neither, a synthetic CelebA is made in
``data/synthetic-celeba`` and the ``smoke`` preset runs, said in one line.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig, build_config, load_preset, parse_overrides
from ..data.celeba import ATTR_FILE, EXPECTED_LAYOUT
from ..data.synth import make_synthetic_celeba
from ..errors import CelebANotFoundError, ConfigError
from ..models.inference import LOSSES
from ..models.registry import face_backbone
from ..pipeline.bundle import KINDS
from ..stamps import stamp_clock

ROUTES = KINDS  # the two routes, as bundles name them
TASK_OF = {"two_stage": "attributes", "direct": "direct"}
# With real data, both routes run on the face backbone: it won on validation, CelebA's and real photos'
# (benchmarks/bench_wild.py). The source study's ResNet-18 presets stay, by name (--config two_stage).
DEFAULT_PRESET = {"two_stage": "face", "direct": "face"}
# ... unless the command line names an image CNN as the backbone: then the study's presets for that CNN.
STUDY_PRESET = {"two_stage": "two_stage", "direct": "direct"}
SMOKE_PRESET = "smoke"
USER_ROOT = Path("data/celeba")  # a real CelebA placed in the working folder is used by default
SYNTHETIC_ROOT = Path("data/synthetic-celeba")  # made on first use, so a fresh machine runs end to end
SYNTHETIC_SIZE = {"n": 2000, "image_size": 128, "seed": 0}  # ~seconds to draw, enough to learn from
# Keys that fix which images are trained and tested on: compare gives both routes the two-stage values.
SHARED_KEYS = (
    "data_root",
    "split",
    "split_fractions",
    "seed",
    "max_train_images",
    "max_eval_images",
    "balance",
    "output_dir",
    "tracking",
    "experiment",
)


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class DataChoice:
    root: str  # "" until the synthetic data is made (see materialize)
    synthetic: bool  # no root given and no data/celeba: make/use the synthetic CelebA, run the smoke preset


@dataclass
class RunPlan:
    """A validated run: which route, with which config, from which preset, on which data."""

    route: str
    config: RunConfig
    preset: str | None
    data: DataChoice
    name: str = ""  # the run's name in a multi-run preset (``runs:``)
    # The run's name in MLflow's runs table, which cuts names at about 28 characters: the route, the backbone
    # and the time, so two runs never read the same there ("" = the run folder's name, a name given by hand).
    display_name: str = ""

    @property
    def mlflow_name(self) -> str:
        return self.display_name or self.config.run_name


def check_data_root(data_root: str | os.PathLike) -> Path:
    """An explicit root must hold ``list_attr_celeba.txt``; raises naming the layout otherwise."""
    root = Path(data_root).expanduser()
    if not (root / ATTR_FILE).is_file():
        raise CelebANotFoundError(
            f"--data-root {root} is not a CelebA root ({root / ATTR_FILE} not found).\n{EXPECTED_LAYOUT}"
        )
    return root.resolve()


def choose_data(data_root: str | None) -> DataChoice:
    """An explicit root must be a CelebA root (checked now); none means data/celeba or synthetic."""
    if data_root:
        return DataChoice(str(check_data_root(data_root)), synthetic=False)
    if (USER_ROOT / ATTR_FILE).is_file():
        return DataChoice(str(USER_ROOT.resolve()), synthetic=False)
    return DataChoice("", synthetic=True)


def synthetic_root(announce=say) -> Path:
    """The synthetic CelebA in the working folder, made on first use (announced in one line)."""
    if not (SYNTHETIC_ROOT / ATTR_FILE).is_file():
        announce(
            f"No --data-root and no {USER_ROOT}/: making a synthetic CelebA ({SYNTHETIC_SIZE['n']:,} images) in "
            f"{SYNTHETIC_ROOT}/ and running on it."
        )
        make_synthetic_celeba(
            SYNTHETIC_ROOT,
            n=SYNTHETIC_SIZE["n"],
            seed=SYNTHETIC_SIZE["seed"],
            image_size=SYNTHETIC_SIZE["image_size"],
        )
    else:
        announce(f"No --data-root and no {USER_ROOT}/: using the synthetic CelebA in {SYNTHETIC_ROOT}/.")
    return SYNTHETIC_ROOT.resolve()


def _task_keys(route: str, config: RunConfig) -> dict:
    """The route's task, and a loss that is valid for it (direct: cross_entropy unless bce was asked)."""
    task = TASK_OF[route]
    keys = {"task": task}
    if config.loss not in LOSSES[task]:
        keys["loss"] = "cross_entropy" if task == "direct" else ""
    return keys


def plan_runs(
    route: str,
    preset: str | Path | None = None,
    data_root: str | None = None,
    overrides: list[str] | None = None,
    run: str | None = None,
    stamp: str | None = None,
) -> list[RunPlan]:
    """Every run of a preset (one, or several for a ``runs:`` preset such as ``concept_sweep``), checked and
    resolved; raises ConfigError / CelebANotFoundError / WeightsNotFoundError before any work."""
    if route not in ROUTES:
        raise ConfigError(f"unknown route {route!r}; choose one of {ROUTES}")
    extra = parse_overrides(overrides or [])  # unknown keys and bad values fail here
    data = choose_data(data_root or extra.get("data_root") or "")
    if preset is None:
        preset = SMOKE_PRESET if data.synthetic else _default_preset(route, extra.get("backbone"))
    runs = load_preset(preset, overrides or [])
    if run is not None:
        runs = [(n, c) for n, c in runs if n == run]
        if not runs:
            names = [n for n, _ in load_preset(preset)]
            raise ConfigError(f"no run named {run!r} in {preset}; choose one of {names}")
    # lazy: training imports Lightning; compare --mlflow-runs loads this module and trains nothing
    from ..training.engine import default_run_name

    plans = []
    for name, config in runs:
        chosen = (
            choose_data(config.data_root) if data.synthetic and config.data_root else data
        )  # preset's root wins
        values = config.to_dict() | _task_keys(route, config) | {"data_root": chosen.root}
        display = ""
        if len(runs) > 1 and "run_name" not in extra:  # the variants of one sweep, never reusing a folder
            values["run_name"] = default_run_name(name, stamp)
            display = name  # a sweep's variants sit under their comparison, whose name carries the time
        elif not values.get("run_name"):
            values["run_name"] = default_run_name(f"{route}-{config.backbone}", stamp)
            display = f"{route.replace('_', '-')} {config.backbone} {stamp_clock(stamp)}"
        # Missing ImageNet weights fail here, naming the file and where to put it, before any work starts.
        plans.append(
            RunPlan(
                route, build_config(values, str(preset)).check_weights(), str(preset), chosen, name, display
            )
        )
    return plans


def comparison_name(stamp: str, what: str = "compare") -> str:
    """A comparison's name in MLflow's runs table: ``compare 14:25:01`` (``compare-<stamp>`` for a stamp
    given by hand, as its folder is named)."""
    clock = stamp_clock(stamp)
    return f"{what} {clock}" if clock != stamp else f"{what}-{stamp}"


def _default_preset(route: str, backbone: str | None) -> str:
    """``face`` with real data; the study's preset when ``backbone=`` names an image CNN (the face preset's
    frozen-feature keys would not fit it)."""
    if backbone:
        if face_backbone(str(backbone)) is None:
            return STUDY_PRESET[route]
    return DEFAULT_PRESET[route]


def plan_run(route: str, *args, **kwargs) -> RunPlan:
    """The one run of a preset (:func:`plan_runs`, same arguments); a preset with several asks for ``--run``."""
    plans = plan_runs(route, *args, **kwargs)
    if len(plans) != 1:
        names = ", ".join(p.name for p in plans)
        raise ConfigError(f"{plans[0].preset} holds {len(plans)} runs ({names}); pick one with --run NAME")
    return plans[0]


def materialize(plans: list[RunPlan], announce=say) -> None:
    """Make (or reuse) the synthetic dataset when a plan needs it, announced in one line."""
    pending = [p for p in plans if p.data.synthetic and not p.data.root]
    if not pending:
        return
    keys = "; ".join(f"{p.route}: task={p.config.task} loss={p.config.resolved_loss()}" for p in plans)
    tail = (
        f" Running preset {pending[0].preset} ({keys}); pass --data-root DIR (a CelebA root) for a real run."
    )
    root = str(synthetic_root(announce=lambda m: announce(m + tail)))
    for p in plans:
        if p.data.synthetic:
            p.data.root = root
            p.config = dataclasses.replace(p.config, data_root=root)


def pair_plans(two_stage: RunPlan, direct: RunPlan, announce=say) -> RunPlan:
    """The direct plan with the two-stage plan's data, split, seed and caps (same test images)."""
    shared = {k: getattr(two_stage.config, k) for k in SHARED_KEYS}
    changed = [k for k, v in shared.items() if getattr(direct.config, k) != v and k != "data_root"]
    if changed:
        announce(
            f"compare: the direct run uses the two-stage preset's {', '.join(changed)} so both see the same "
            "images"
        )
    config = build_config(direct.config.to_dict() | shared, "compare")
    return dataclasses.replace(direct, config=config, data=two_stage.data)


def plan_comparison(
    config_two_stage: str | Path | None,
    config_direct: str | Path | None,
    data_root: str | None,
    overrides: list[str],
    stamp: str,
    seeded: bool = False,
) -> tuple[list[RunPlan], RunPlan]:
    """The two-stage plan(s) and the direct plan of one comparison, checked before any work; the direct plan
    paired with the first two-stage plan (:func:`pair_plans`: the same images). ``seeded`` (one seed of
    ``--seeds``): the run names carry the seed; the split is the one a single comparison with that seed uses
    (split=auto: CelebA's official partition when it can serve, else an identity-disjoint split the seed
    draws), so seed 0 of ``--seeds`` is the comparison ``compare`` alone makes."""
    # A multi-run two-stage preset (e.g. concept_sweep) gives several two-stage runs, all set against direct.
    variants = plan_runs("two_stage", config_two_stage, data_root, overrides, stamp=stamp)
    direct = plan_run("direct", config_direct, data_root, overrides, stamp=stamp)
    two = variants[0]
    if two.config.run_name == direct.config.run_name:  # a run_name=... override: keep the folders apart
        two.config.run_name += "-two_stage"
        direct.config.run_name += "-direct"
    if seeded:
        for plan in (*variants, direct):
            # A fixed run_name (override or preset) would send every seed into one run folder.
            if stamp not in plan.config.run_name:
                plan.config.run_name += f"-{stamp.rsplit('-', 1)[-1]}"
    return variants, pair_plans(two, direct)
