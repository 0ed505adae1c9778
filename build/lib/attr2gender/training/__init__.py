"""Training: step logic (modules), data (datamodule), the loop (engine), evaluation and export."""

from .datamodule import CelebADataModule
from .engine import TrainResult, train
from .evaluate import SplitPredictions, predict_dataset, split_metrics
from .export import load_image_model, save_image_model
from .modules import AttributeModel, DirectModel, ImageModel

__all__ = [
    "CelebADataModule",
    "TrainResult",
    "train",
    "SplitPredictions",
    "predict_dataset",
    "split_metrics",
    "load_image_model",
    "save_image_model",
    "AttributeModel",
    "DirectModel",
    "ImageModel",
]
