"""Downloading an official checkpoint: the URL (a mirror may replace the base), the offline switches, the
size limits and the streamed, SHA-256-checked write that leaves no partial file (``weights.py`` decides what
to download and when; this module only fetches it safely). See :mod:`attr2gender.models.weights`."""

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
from pathlib import Path
from urllib.parse import urlparse

from attr2gender._version import __version__
from attr2gender.errors import WeightsNotFoundError
from attr2gender.progress import progress as _progress

log = logging.getLogger(__name__)

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


class DownloadFailed(Exception):
    """Why one download attempt failed (a short clause, which the caller puts into WeightsNotFoundError)."""


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
    return text if isinstance(exc, DownloadFailed) else f"{type(exc).__name__}: {text}"


def _socket_of(response) -> socket.socket | None:
    # urlopen's HTTP(S) response reads through response.fp (a BufferedReader over a SocketIO); a file:
    # URL has no socket. Reached through private attributes, so anything unexpected means "none".
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _deadline_failure(timeout: float) -> DownloadFailed:
    return DownloadFailed(
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
                raise DownloadFailed(
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


def fetch_verified(
    url: str, dest_dir: Path, expected_prefix: str, timeout: float | None = None, max_bytes: int | None = None
) -> Path:
    """Fetch ``url`` into ``dest_dir`` atomically; raises :class:`DownloadFailed` with the reason.

    ``timeout`` (default :data:`DOWNLOAD_TIMEOUT_S`, read at call time) is a deadline for the whole download; more than ``max_bytes`` (default: the file's
    expected size, see :func:`download_size_limit`) stops it. Not torch.hub.download_url_to_file: it has
    no timeout (a dead network hangs forever), no size limit and raises bare exceptions; the scheme
    (same-folder temporary file, hash while streaming, rename) is the same.
    """
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
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
                        raise DownloadFailed(
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
                    raise DownloadFailed(f"connection closed after {received:,} of {total:,} bytes")
                if not sha.startswith(expected_prefix.lower()):
                    raise DownloadFailed(
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
    except (OSError, ValueError, http.client.HTTPException, DownloadFailed) as exc:
        # OSError covers URLError/HTTPError, DNS failure, refused connection, timeouts and a full disk;
        # ValueError an unusable URL; HTTPException a malformed or truncated response.
        raise DownloadFailed(_failure_reason(exc, timeout)) from exc


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
        return fetch_verified(url, dest_dir, prefix, timeout, max_bytes)
    except DownloadFailed as exc:
        raise WeightsNotFoundError(f"download of {url} into {dest_dir} failed: {exc}") from exc
