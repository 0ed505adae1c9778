"""Constants the bottom layer and the data layer share."""

# ImageNet's per-channel mean and standard deviation: every pretrained backbone here expects inputs
# normalised with them (data/transforms.py), and plots un-normalise tensors with them.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
