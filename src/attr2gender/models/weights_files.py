"""Reading a weights file without running code: ``.safetensors`` and ``.pth``/``.pt`` state dicts.

:func:`check_weights_file` reads only a file's structure (the safetensors header, the zip layout of
``torch.save``) and names what is wrong in one line; :func:`load_state_dict_file` then loads it with
``torch.load(weights_only=True)`` or safetensors. Finding, downloading and fitting weights onto a model is
:mod:`attr2gender.models.weights`.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch

from attr2gender.errors import IncompatibleWeightsError, UnsafeWeightsFileError, WeightsNotFoundError

# The values of ``weights=`` that are not files.
IMAGENET = "imagenet"
RANDOM_INIT = "none"
# "pretrained" says the same for every backbone: its published pretrained weights (ImageNet for the image
# CNNs, millions of faces for the face backbones), so a face preset need not write "imagenet".
PRETRAINED = "pretrained"

# A safetensors header larger than this is refused (the safetensors library's own limit).
_SAFETENSORS_MAX_HEADER_BYTES = 100_000_000
# Bytes per element of safetensors' dtypes.
_SAFETENSORS_DTYPE_BYTES = {
    **dict.fromkeys(("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3"), 1),
    **dict.fromkeys(("I16", "U16", "F16", "BF16"), 2),
    **dict.fromkeys(("I32", "U32", "F32"), 4),
    **dict.fromkeys(("I64", "U64", "F64"), 8),
}
# torch.save's legacy (non-zip) format starts with a protocol-2 pickle of its magic number.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."

# File suffixes accepted for ``weights=<path>``; .pth/.pt go through torch.load(weights_only=True).
PICKLE_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"

# Top-level keys under which training checkpoints commonly nest their state dict.
_NESTED_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _NESTED_STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise IncompatibleWeightsError(
            f"{path}: expected a state dict (mapping of parameter name -> tensor), got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise IncompatibleWeightsError(
            f"{path}: not a plain state dict; entries that are not name -> tensor: {bad[:10]}"
        )
    return OrderedDict(obj)


_ACCEPTED_KINDS = (
    f"accepted: {SAFETENSORS_SUFFIX}, {', '.join(PICKLE_SUFFIXES)} state-dict files, or "
    f"weights={IMAGENET!r} / {PRETRAINED!r} / {RANDOM_INIT!r}"
)
_RESAVE_HINT = (
    "re-save it with safetensors.torch.save_file(model.state_dict(), ...) or "
    "torch.save(model.state_dict(), ...)"
)


def torch_refusal_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one clause. torch's message is a page of
    advice that includes lifting the restriction, which this library never does and never suggests: only the
    reason is kept."""
    text = str(exc)
    reason = text.partition("WeightsUnpickler error:")[2].strip()
    reason = reason.split("\n\n", 1)[0].split(". ", 1)[0].strip() or _first_line(exc)
    if "weights_only" in reason or "trust" in reason:
        return "it holds objects other than tensors and containers"
    return reason


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _not_weights(path: Path, why: str) -> IncompatibleWeightsError:
    return IncompatibleWeightsError(f"weights={path}: {why}; {_RESAVE_HINT}, or pass another file")


def _check_safetensors(path: Path, f, size: int) -> None:
    # Layout: an 8-byte little-endian header length N, N bytes of JSON, then the tensor data.
    head = f.read(8)
    if len(head) < 8:
        raise _not_weights(
            path, f"not a safetensors file ({size} bytes, shorter than its 8-byte header length)"
        )
    (n,) = struct.unpack("<Q", head)
    if n < 2 or n > _SAFETENSORS_MAX_HEADER_BYTES or n > size - 8:
        raise _not_weights(
            path, f"not a safetensors file (its header length {n:,} does not fit a {size:,}-byte file)"
        )
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _not_weights(
            path, f"not a safetensors file (its header is not JSON: {_first_line(exc)})"
        ) from None
    if not isinstance(header, dict):
        raise _not_weights(path, "not a safetensors file (its header is not a JSON object)")
    data_bytes, spans = size - 8 - n, []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise _not_weights(path, f"not a valid safetensors file (header entry {key!r} is not an object)")
        offsets = entry.get("data_offsets")
        if not (
            isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_bytes
        ):
            raise _not_weights(path, f"not a valid safetensors file (bad header entry for {key!r})")
        itemsize = _SAFETENSORS_DTYPE_BYTES.get(entry["dtype"])  # newer dtypes: not checked here
        shape = entry["shape"]
        if itemsize is not None and all(isinstance(d, int) and d >= 0 for d in shape):
            if math.prod(shape) * itemsize != offsets[1] - offsets[0]:
                raise _not_weights(
                    path, f"not a valid safetensors file ({key!r}: its shape does not match its byte range)"
                )
        spans.append((offsets[0], offsets[1]))
    # The tensors must cover the data exactly, back to back (as the safetensors library requires).
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            break
        end = stop
    if end != data_bytes:
        raise _not_weights(
            path, f"not a valid safetensors file (its tensors do not cover its {data_bytes:,} data bytes)"
        )


def _check_torch_file(path: Path, f) -> None:
    # torch.save's zip format: an archive holding <name>/data.pkl (a pickle, protocol 2); the legacy
    # format (e.g. the efficientnet-lite0 package's file) starts with a pickled magic number.
    if f.read(len(_TORCH_LEGACY_MAGIC)) == _TORCH_LEGACY_MAGIC:
        return
    f.seek(0)
    if not zipfile.is_zipfile(f):
        raise _not_weights(
            path,
            "not a PyTorch checkpoint (neither torch.save's zip format nor its legacy format; truncated?)",
        )
    try:
        with zipfile.ZipFile(f) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
            if not pickles:
                raise _not_weights(path, "a zip archive without data.pkl, not a PyTorch checkpoint")
            with archive.open(pickles[0]) as member:
                if member.read(1) != b"\x80":
                    raise _not_weights(path, "not a PyTorch checkpoint (its data.pkl is not a pickle)")
            prefix = pickles[0][: -len("data.pkl")]
            if prefix + "version" not in names and prefix + ".data/version" not in names:  # torch needs one
                raise _not_weights(path, "a zip archive without a version record, not a PyTorch checkpoint")
    except Exception as exc:  # BadZipFile, zlib.error, an encrypted member's RuntimeError, ...
        if isinstance(exc, (IncompatibleWeightsError, OSError)):
            raise
        raise _not_weights(path, f"not a readable PyTorch checkpoint ({_first_line(exc)})") from None


def check_weights_file(path: str | os.PathLike) -> None:
    """Refuse ``path`` unless it looks like a weights file, reading only its header/structure.

    ``.safetensors``: the 8-byte header length and the JSON header (at most 100 MB; every tensor's byte
    range inside the file, the ranges covering the data exactly); ``.pth``/``.pt``:
    torch.save's zip layout (``data.pkl`` present, nothing unpickled) or its legacy magic number; any
    other suffix is refused. Raises :class:`WeightsNotFoundError` (missing or unreadable) or
    :class:`IncompatibleWeightsError` (not a weights file), each a one-line message naming the fix.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"weights={path}: no such file; pass an existing file ({_ACCEPTED_KINDS})")
    suffix = path.suffix.lower()
    if suffix != SAFETENSORS_SUFFIX and suffix not in PICKLE_SUFFIXES:
        raise IncompatibleWeightsError(
            f"weights={path}: not a weights file (unsupported file type {suffix or '(no suffix)'!r}; "
            f"{_ACCEPTED_KINDS})"
        )
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if suffix == SAFETENSORS_SUFFIX:
                _check_safetensors(path, f, size)
            else:
                _check_torch_file(path, f)
    except OSError as exc:
        raise WeightsNotFoundError(
            f"weights={path}: cannot read the file ({exc.strerror or exc}); check its permissions"
        ) from None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or ``.pth``/``.pt`` without executing pickled code.

    Anything that is not such a file raises one of the library's errors (see :func:`check_weights_file`),
    never a bare parser error."""
    path = Path(path).expanduser()
    check_weights_file(path)
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        try:
            return OrderedDict(load_file(str(path), device="cpu"))
        except Exception as exc:  # SafetensorError and whatever else a damaged file provokes
            raise _not_weights(path, f"not a readable safetensors file ({_first_line(exc)})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = torch_refusal_reason(e)
        if "global" not in reason.lower():  # e.g. "Unsupported operand 205": a damaged pickle
            raise _not_weights(
                path, f"not a readable PyTorch checkpoint (torch.load said: {reason})"
            ) from None
        raise UnsafeWeightsFileError(
            f"{path}: refused. The file contains pickled objects other than tensors/containers, and "
            "weights are only read with torch.load(weights_only=True) (arbitrary pickles can run code). "
            "Re-save it as a plain state dict (torch.save(model.state_dict(), ...)) or as .safetensors. "
            f"torch said: {reason}"
        ) from e
    except Exception as e:  # a damaged file that passed the structure check: RuntimeError, EOFError, ...
        raise _not_weights(path, f"not a readable PyTorch checkpoint ({_first_line(e)})") from None
    return _unwrap_state_dict(obj, path)
