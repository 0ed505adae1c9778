"""Constants the bottom layer and the data layer share."""

# ImageNet's per-channel mean and standard deviation: every pretrained backbone here expects inputs
# normalised with them (data/transforms.py), and plots un-normalise tensors with them.
# The largest crop side training accepts (image_size) and so the largest a bundle may ask for: a 4,096 px
# preprocessing costs 2.9 GB for one image on torch.
MAX_IMAGE_SIZE = 1024
# A decision threshold: away from 0 and 1, where one image's P(Male) would flip every answer (config, bundles).
THRESHOLD_BOUNDS: tuple[float, float] = (0.01, 0.99)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# How predict() reads a photo (attr2gender.data.faces): the choices, here so that the command line can
# offer them without importing torch.
# auto: find the face and warp it onto the template; crops: crops laid out like the training images (CelebA's),
# warped onto the template by the fixed transform their recorded layout gives (no detection); none: read as it
# is (already the template's layout: a face bundle's dlib chip)
ALIGN_MODES = ("auto", "crops", "none")
FACE_MODES = ("center", "all")  # the face nearest the image centre, or one row per face
FALLBACKS = ("error", "whole_image")  # no face found: an error row, or predict on the whole image
MIN_EYE_DISTANCE = 24.0  # px in the input image: below this a face is too small to classify

# Decode workers (threads or processes) for training and predict: more only exhausts memory and process slots.
MAX_WORKERS = 64
# The demo page refuses a photo over this many pixels, the cap named (a 48-Mpx phone photo is over it).
DEMO_MAX_PIXELS = 40_000_000
