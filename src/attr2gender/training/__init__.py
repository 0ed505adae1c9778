"""Training: step logic (modules), data (datamodule), the loop (engine), the face-feature heads
(face_heads), whole routes (routes: :func:`train_two_stage`, :func:`train_direct`), calibration, evaluation
of an image model on a split, and export."""

from .datamodule import CelebADataModule
from .engine import TrainResult, train
from .evaluate import SplitPredictions, predict_dataset, split_metrics
from .export import load_image_model, save_image_model
from .modules import AttributeModel, DirectModel, ImageModel
from .routes import TrainReport, train_direct, train_two_stage

__all__ = [
    "CelebADataModule",
    "TrainResult",
    "train",
    "TrainReport",
    "train_direct",
    "train_two_stage",
    "SplitPredictions",
    "predict_dataset",
    "split_metrics",
    "load_image_model",
    "save_image_model",
    "AttributeModel",
    "DirectModel",
    "ImageModel",
]
