"""Step logic (Lightning ``LightningModule``): the stage-one attribute model and the direct Male model.

Data lives in :mod:`attr2gender.training.datamodule`, the loop in :mod:`attr2gender.training.engine`.
Both models expose :meth:`predict_proba` so the pipelines and stage two use the same numbers that the
metrics are computed from.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn

from ..data.attributes import STAGE_ONE_ATTRIBUTES
from ..metrics import binary_metrics, per_attribute_metrics, worst_group_score
from ..models import (
    BACKBONES,
    BOTTLENECKS,
    ProbabilityModel,
    build_loss,
    create_backbone,
    head_of,
    probabilities,
)
from ..tabular import logistic_from_coefficients
from .robust import GroupDRO, GroupReweightedLoss

N_GROUPS = 4  # Male x one attribute (attr2gender.data.groups)


class ImageModel(L.LightningModule):
    """Shared by both models: backbone + head, optimiser, per-epoch metrics over the whole split."""

    num_outputs: int = 1

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str = "pretrained",
        loss: str = "",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        dropout: float = 0.0,
        threshold: float = 0.5,
        channels_last: bool = False,
        freeze_backbone: bool = False,
        loss_reweighting: str = "none",
        robust: str = "none",
        group_dro_step: float = 0.01,
        group_counts: list[int] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.lr = lr  # the LR finder writes its suggestion here
        outputs, self.output_kind = head_of(self.task, loss)  # one definition of the heads, in models/
        self.net = create_backbone(backbone, outputs, weights=weights, dropout=dropout)
        self.loss_fn = build_loss(self.task, loss)
        self.per_sample_loss_fn = build_loss(self.task, loss, reduction="none")
        # Group-robust training (train steps only; validation and test report the plain loss).
        if robust == "group_dro":
            self.group_objective: nn.Module | None = GroupDRO(N_GROUPS, group_dro_step)
        elif loss_reweighting == "groups":
            self.group_objective = GroupReweightedLoss(group_counts or [1] * N_GROUPS)
        else:
            self.group_objective = None
        if freeze_backbone:
            self._freeze_all_but_head()
        self._outputs: dict[str, list] = {"train": [], "val": [], "test": []}

    # Subclasses define: task, target_of(batch), epoch_metrics(prob, attributes, male) and
    # group_scores(prob, attributes, male) (per image: what the worst-group criterion averages).

    def loss_of(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, target)

    def per_sample_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,) losses: what the group-robust objectives weight."""
        loss = self.per_sample_loss_fn(logits, target)
        return loss.mean(dim=1) if loss.ndim == 2 else loss

    def batch_loss(self, logits: torch.Tensor, batch, per_sample: bool = False) -> torch.Tensor:
        """The training objective of a batch: its mean, or (B,) per-sample losses for the group objectives.
        A batch with ``weight`` (per row, mean 1: how two sources weigh) weights each row's loss by it."""
        target = self.target_of(batch)
        if "weight" in batch:
            loss = self.per_sample_loss(logits, target) * batch["weight"]
            return loss if per_sample else loss.mean()
        return self.per_sample_loss(logits, target) if per_sample else self.loss_of(logits, target)

    def worst_group_accuracy(self, prob, attributes, male, groups: np.ndarray) -> float:
        """The worst group's score by the library's one rule (:func:`attr2gender.metrics.worst_group_score`:
        groups of at least 30 images, NaN when none has that many; :func:`checkpoint_monitor` then keeps
        the lowest validation loss instead, and says so)."""
        groups = np.asarray(groups)
        known = groups >= 0  # rows outside CelebA's groups (a second source) are in none
        return worst_group_score(self.group_scores(prob, attributes, male)[known], groups[known])

    # --- shared ---
    def _head_prefixes(self) -> tuple[str, ...]:
        spec = BACKBONES.resolve(self.hparams.backbone)
        return tuple(f"{h}." for h in ((spec.head,) if isinstance(spec.head, str) else spec.head))

    def _freeze_all_but_head(self) -> None:
        """Linear probing: only the new head learns; the backbone's BatchNorm statistics stay fixed."""
        heads = self._head_prefixes()
        for name, param in self.net.named_parameters():
            param.requires_grad = name.startswith(heads)
        if not any(p.requires_grad for p in self.net.parameters()):
            raise ValueError(f"found no head parameters under {heads} to train in {self.hparams.backbone}")

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.get("freeze_backbone") and mode:
            self.net.eval()  # frozen BatchNorm: running statistics are part of the pretrained backbone
            heads = self._head_prefixes()
            for name, module in self.net.named_modules():
                if f"{name}.".startswith(heads):
                    module.train(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities for a preprocessed batch: (B, 39) for attributes, (B,) P(Male) for direct."""
        return self.probabilities(self(x)).float()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return probabilities(logits, self.output_kind)

    def inference_module(self) -> ProbabilityModel:
        """The plain ``nn.Module`` (backbone + probability function, sharing this model's weights) that
        predict and ONNX export run, with the description ``model.json`` keeps."""
        hparams = dict(self.hparams) | {"weights": "none"}  # the saved tensors replace the starting weights
        meta = {"task": self.task, "hparams": hparams, "attribute_names": list(self.attribute_names)}
        return ProbabilityModel(self.net, self.output_kind, meta).eval()

    def _step(self, batch, stage: str):
        if len(batch["image"]) == 0:  # every image of this batch was unreadable
            self.log(
                f"{stage}_skipped", float(batch["skipped"]), reduce_fx="sum", on_step=False, on_epoch=True
            )
            return None
        logits = self(batch["image"])
        if stage == "train" and self.group_objective is not None:
            loss = self.group_objective(self.batch_loss(logits, batch, per_sample=True), batch["group"])
        else:
            loss = self.batch_loss(logits, batch)
        n = len(batch["image"])
        self.log(
            f"{stage}_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=stage != "test",
            batch_size=n,
            sync_dist=True,
        )
        self.log(f"{stage}_skipped", float(batch["skipped"]), reduce_fx="sum", on_step=False, on_epoch=True)
        prob = self.probabilities(logits.detach()).float().cpu().numpy()
        self._outputs[stage].append(
            (
                prob,
                batch["male"].cpu().numpy(),
                batch["attributes"].cpu().numpy(),
                batch["group"].cpu().numpy(),
            )
        )
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def _epoch_end(self, stage: str) -> None:
        outputs, self._outputs[stage] = self._outputs[stage], []
        if not outputs or self.trainer.sanity_checking:
            return
        prob = np.concatenate([o[0] for o in outputs])
        male = np.concatenate([o[1] for o in outputs])
        attributes = np.concatenate([o[2] for o in outputs])
        groups = np.concatenate([o[3] for o in outputs])
        metrics = self.epoch_metrics(prob, attributes, male)
        if stage == "val":
            metrics["worst_group_acc"] = self.worst_group_accuracy(prob, attributes, male, groups)
        for name, value in metrics.items():
            # Metrics over this process's share of the split; under DDP the mean over ranks.
            self.log(
                f"{stage}_{name}",
                float(value),
                prog_bar=name in ("acc", "concept_mean_accuracy"),
                sync_dist=True,
            )

    def on_train_epoch_end(self):
        self._epoch_end("train")

    def on_validation_epoch_end(self):
        self._epoch_end("val")

    def on_test_epoch_end(self):
        self._epoch_end("test")

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        cls = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=self.lr, weight_decay=hp.weight_decay)


class AttributeModel(ImageModel):
    """Stage one: backbone + 39 logits for the CelebA attributes other than Male."""

    task = "attributes"
    num_outputs = len(STAGE_ONE_ATTRIBUTES)
    attribute_names = STAGE_ONE_ATTRIBUTES

    def group_scores(self, prob, attributes, male):
        """Per image: the share of its 39 attributes predicted right."""
        return ((prob >= self.hparams.threshold) == (attributes >= 0.5)).mean(axis=1)

    def target_of(self, batch):
        return batch["attributes"].float()

    def epoch_metrics(self, prob, attributes, male):
        table = per_attribute_metrics(
            attributes, prob, STAGE_ONE_ATTRIBUTES, threshold=self.hparams.threshold
        )
        return {
            "concept_mean_accuracy": table["accuracy"].mean(),
            "concept_mean_auc": table["roc_auc"].mean(skipna=True),
        }


class DirectModel(ImageModel):
    """The direct route: backbone + Male head. ``cross_entropy``: 2 logits; ``bce``: one logit."""

    task = "direct"
    num_outputs = 1
    attribute_names = ()

    def group_scores(self, prob, attributes, male):
        """Per image: 1 when Male is predicted right."""
        return ((prob >= self.hparams.threshold) == (male >= 0.5)).astype(np.float64)

    def target_of(self, batch):
        male = batch["male"]
        return male.float().unsqueeze(1) if self.hparams.loss == "bce" else male.long()

    def epoch_metrics(self, prob, attributes, male):
        m = binary_metrics(male, prob, threshold=self.hparams.threshold)
        return {"acc": m["accuracy"], "auc": m["roc_auc"], "f1": m["f1"]}


class JointModel(AttributeModel):
    """The joint concept bottleneck model (Koh et al., ICML 2020): backbone -> 39 attribute logits ->
    sigmoid -> one linear Male head on the 39 probabilities and nothing else, trained end to end on
    ``BCE(Male) + concept_weight * attribute loss``.

    ``bottleneck="hard"`` feeds the head the probabilities thresholded at 0.5 (gradients pass straight
    through), the leakage-free variant. Its image model is stage one as usual (39 probabilities), and the
    head becomes a logistic stage two with the same coefficients (:meth:`stage_two`), so a joint model is a
    normal two-stage bundle whose explanations stay exact."""

    def __init__(self, *args, concept_weight: float = 1.0, bottleneck: str = "soft", **kwargs):
        super().__init__(*args, **kwargs)
        if bottleneck not in BOTTLENECKS:
            raise ValueError(f"bottleneck={bottleneck!r} is not valid; choose one of {BOTTLENECKS}")
        self.male_head = nn.Linear(len(STAGE_ONE_ATTRIBUTES), 1)
        self.male_loss_fn = nn.BCEWithLogitsLoss()
        self.male_per_sample_fn = nn.BCEWithLogitsLoss(reduction="none")

    def concepts(self, attribute_logits: torch.Tensor) -> torch.Tensor:
        """What the Male head reads: the 39 probabilities, thresholded for a hard bottleneck."""
        p = torch.sigmoid(attribute_logits.float())
        if self.hparams.bottleneck == "hard":
            return (p >= 0.5).float() + p - p.detach()  # straight-through: hard forward, sigmoid gradient
        return p

    def male_logit(self, attribute_logits: torch.Tensor) -> torch.Tensor:
        return self.male_head(self.concepts(attribute_logits))[:, 0]

    def batch_loss(self, logits: torch.Tensor, batch, per_sample: bool = False) -> torch.Tensor:
        """``BCE(Male) + concept_weight * attribute loss``. Rows from a source without CelebA's attributes
        (``concept_mask`` 0) carry the Male loss alone, and the attribute loss stays the mean over the rows
        that have them; ``weight`` weights the Male loss only (it says how the sources weigh for Male)."""
        if "weight" not in batch and "concept_mask" not in batch:  # CelebA alone: the plain objective
            concept = super().batch_loss(logits, batch, per_sample)
            male_fn = self.male_per_sample_fn if per_sample else self.male_loss_fn
            return (
                male_fn(self.male_logit(logits), batch["male"].float())
                + self.hparams.concept_weight * concept
            )
        concept = self.per_sample_loss(logits, self.target_of(batch))
        if "concept_mask" in batch:
            mask = batch["concept_mask"].float()
            concept = concept * mask * (len(mask) / mask.sum().clamp(min=1.0))
        male = self.male_per_sample_fn(self.male_logit(logits), batch["male"].float())
        if "weight" in batch:
            male = male * batch["weight"]
        loss = male + self.hparams.concept_weight * concept
        return loss if per_sample else loss.mean()

    def male_probability(self, attribute_probabilities: np.ndarray) -> np.ndarray:
        """P(Male) of the head from (n, 39) attribute probabilities (what stage two computes)."""
        x = attribute_probabilities >= 0.5 if self.hparams.bottleneck == "hard" else attribute_probabilities
        w, b = self.male_head.weight.detach().cpu().numpy()[0], float(self.male_head.bias.detach().cpu())
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, dtype=np.float64) @ w + b)))

    def epoch_metrics(self, prob, attributes, male):
        m = binary_metrics(male, self.male_probability(prob), threshold=self.hparams.threshold)
        return super().epoch_metrics(prob, attributes, male) | {"acc": m["accuracy"], "auc": m["roc_auc"]}

    def group_scores(self, prob, attributes, male):
        """Per image: 1 when Male is predicted right (the joint model predicts Male)."""
        return ((self.male_probability(prob) >= self.hparams.threshold) == (male >= 0.5)).astype(np.float64)

    def stage_two(self):
        """The Male head as a fitted logistic stage two: same coefficients, same predictions."""
        hard = self.hparams.bottleneck == "hard"
        return logistic_from_coefficients(
            self.male_head.weight.detach().cpu().numpy()[0],
            float(self.male_head.bias.detach().cpu()),
            STAGE_ONE_ATTRIBUTES,
            input_kind="binary" if hard else "probability",
            threshold=0.5,
        )


def model_class(task: str, mode: str = "staged") -> type[ImageModel]:
    if mode == "joint":
        if task != "attributes":
            raise ValueError("mode=joint trains stage one with its Male head: it needs task=attributes")
        return JointModel
    return {"attributes": AttributeModel, "direct": DirectModel}[task]
