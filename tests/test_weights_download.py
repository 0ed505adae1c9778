"""Downloading the official torchvision checkpoints (attr2gender.models.weights), against a local server.

Nothing here reaches the internet: the files come from an HTTP server on 127.0.0.1, the base URL is
redirected with $ATTR2GENDER_WEIGHTS_URL, and TORCH_HOME points into tmp_path so the real torch hub
cache is never read or written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from attr2gender.config import RunConfig
from attr2gender.errors import (
    Attr2GenderError,
    IncompatibleWeightsError,
    UnsafeWeightsFileError,
    WeightsNotFoundError,
)
from attr2gender.models import download as D
from attr2gender.models import weights as W

OFFICIAL_RESNET18 = "resnet18-f37072fd.pth"


def _checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.zeros(2)}, buffer)
    return buffer.getvalue()


FAKE_BYTES = _checkpoint_bytes()
FAKE_PREFIX = hashlib.sha256(FAKE_BYTES).hexdigest()[:8]
FAKE_NAME = f"fake-{FAKE_PREFIX}.pth"  # a torchvision-style name whose prefix is really its hash


class Server:
    """Files by URL path; ``requests`` records every path asked for."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.truncate_to: int | None = None  # send fewer bytes than Content-Length announces
        self.stall_s: float = 0.0  # send the headers, then nothing for this long
        self.content_length: int | None = None  # announce this Content-Length instead of the real one
        self.endless = False  # no Content-Length, then zeros until the client hangs up
        self.trickle_s: float = 0.0  # send the body one byte every trickle_s seconds...
        self.trickle_for_s: float = 60.0  # ...for at most this long, then hang up
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                if not server.endless:
                    length = len(body) if server.content_length is None else server.content_length
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                if server.stall_s:
                    time.sleep(server.stall_s)
                try:
                    if server.endless:
                        zeros = bytes(64 * 1024)
                        while True:
                            self.wfile.write(zeros)
                    elif server.trickle_s:
                        stop = time.monotonic() + server.trickle_for_s
                        for i in range(len(body)):
                            if time.monotonic() > stop:
                                break
                            self.wfile.write(body[i : i + 1])
                            time.sleep(server.trickle_s)
                    else:
                        self.wfile.write(body if server.truncate_to is None else body[: server.truncate_to])
                except OSError:  # the client hung up (what a refused download does)
                    pass

            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True  # a stalled handler must not hold up shutdown
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Empty $ATTR2GENDER_WEIGHTS_DIR and TORCH_HOME; downloads allowed whatever the CI sets."""
    weights_dir, torch_home = tmp_path / "weights", tmp_path / "torch_home"
    weights_dir.mkdir()
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(weights_dir))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    for env in (*W.OFFLINE_ENVS, W.WEIGHTS_URL_ENV):
        monkeypatch.delenv(env, raising=False)
    return weights_dir, torch_home / "hub" / "checkpoints"


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------ download_checkpoint


def test_download_checkpoint_downloads_and_verifies(server, dirs):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    path = W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert path == hub / FAKE_NAME and path.read_bytes() == FAKE_BYTES
    assert _leftovers(hub) == [FAKE_NAME]  # the .part file was renamed, not copied
    assert torch.equal(W.load_state_dict_file(path)["layer.weight"], torch.arange(6.0).reshape(2, 3))


def test_download_checkpoint_prefix_from_the_name_and_explicit(server, dirs):
    _, hub = dirs
    assert W.sha256_prefix_of(OFFICIAL_RESNET18) == "f37072fd"
    assert W.sha256_prefix_of("efficientnet-lite0-57934424.pth") == "57934424"
    assert W.sha256_prefix_of("model.pth") is None
    server.files["/models/plain.pth"] = FAKE_BYTES
    full = hashlib.sha256(FAKE_BYTES).hexdigest()
    assert (
        W.download_checkpoint(server.base + "plain.pth", hub, expected_prefix=full).read_bytes() == FAKE_BYTES
    )


def test_download_checkpoint_refuses_an_unverifiable_name_before_connecting(server, dirs):
    _, hub = dirs
    with pytest.raises(ValueError, match="SHA-256 prefix"):
        W.download_checkpoint(server.base + "model.pth", hub)
    assert server.requests == [] and not hub.exists()


def test_wrong_hash_is_refused_and_removed(server, dirs):
    _, hub = dirs
    name = "fake-00000000.pth"
    server.files[f"/models/{name}"] = FAKE_BYTES
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.download_checkpoint(server.base + name, hub)
    msg = str(excinfo.value)
    assert "SHA-256 mismatch" in msg and server.base + name in msg and str(hub) in msg
    assert _leftovers(hub) == []


def test_truncated_download_is_refused_and_removed(server, dirs):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    server.truncate_to = 10
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert FAKE_NAME in str(excinfo.value)
    assert _leftovers(hub) == []


def test_a_stalled_server_times_out(server, dirs, monkeypatch):
    _, hub = dirs
    monkeypatch.setattr(D, "DOWNLOAD_TIMEOUT_S", 0.3)  # the library's 30 s, shortened for the test
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    server.stall_s = 3.0
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match=r"did not finish within 0\.3 s"):
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert time.perf_counter() - start < 2.5
    assert _leftovers(hub) == []


def test_http_error_names_the_status(server, dirs):
    _, hub = dirs
    with pytest.raises(WeightsNotFoundError, match="HTTP 404"):
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert not hub.exists()


def test_interrupted_download_leaves_no_partial_file(server, dirs, monkeypatch):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES

    class InterruptingBar:
        def __init__(self, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def update(self, n):
            assert any(p.suffix == ".part" for p in hub.iterdir())  # bytes were being written
            raise KeyboardInterrupt

    monkeypatch.setattr(D, "_progress", InterruptingBar)
    with pytest.raises(KeyboardInterrupt):
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert _leftovers(hub) == []


class _SizeGuardBar:
    """A progress bar that fails the test once a download has written more than ``limit`` bytes.

    Without a size limit in the library, an endless body would otherwise run until the disk is full."""

    limit = 4 * 1024 * 1024

    def __init__(self, **kwargs):
        self.n = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self, n):
        self.n += n
        if self.n > self.limit:
            raise AssertionError(f"the download wrote {self.n:,} bytes: no size limit stopped it")


def test_endless_body_is_stopped_at_max_bytes(server, dirs, monkeypatch):
    _, hub = dirs
    monkeypatch.setattr(D, "_progress", _SizeGuardBar)
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    server.endless = True
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.download_checkpoint(server.base + FAKE_NAME, hub, max_bytes=256 * 1024)
    msg = str(excinfo.value)
    assert time.perf_counter() - start < 10
    assert server.base + FAKE_NAME in msg and "262,144" in msg and "more than" in msg
    assert _leftovers(hub) == []


def test_endless_body_is_stopped_at_the_cap_for_unknown_files(server, dirs, monkeypatch):
    _, hub = dirs
    monkeypatch.setattr(D, "_progress", _SizeGuardBar)
    monkeypatch.setattr(
        D, "MAX_DOWNLOAD_BYTES", 1024 * 1024, raising=False
    )  # the library's 2 GiB, shrunk for the test
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    server.endless = True
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    msg = str(excinfo.value)
    assert server.base + FAKE_NAME in msg and "1,048,576" in msg
    assert _leftovers(hub) == []


def test_file_url_to_dev_zero_is_stopped(dirs, tmp_path, monkeypatch):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    _, hub = dirs
    monkeypatch.setattr(D, "_progress", _SizeGuardBar)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / FAKE_NAME).symlink_to("/dev/zero")  # a "mirror" whose file never ends
    monkeypatch.setitem(
        W.TORCHVISION_CHECKPOINTS,
        "resnet18",
        W.TorchvisionCheckpoint((f"https://download.pytorch.org/models/{FAKE_NAME}",)),
    )
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, mirror.as_uri())
    monkeypatch.setattr(D, "MAX_DOWNLOAD_BYTES", 1024 * 1024, raising=False)
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.locate_weights("resnet18", "imagenet")
    msg = str(excinfo.value)
    assert (mirror / FAKE_NAME).as_uri() in msg and "1,048,576" in msg
    assert _leftovers(hub) == []


def test_content_length_over_the_known_size_is_refused_up_front(server, dirs, monkeypatch):
    _, hub = dirs
    # The real resnet18 file is 46,830,571 bytes; a server announcing one byte more is refused before a
    # byte of the body is read (the body here is small, so nothing large is ever written).
    server.files[f"/models/{OFFICIAL_RESNET18}"] = FAKE_BYTES
    server.content_length = 46_830_572
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server.base)
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.locate_weights("resnet18", "imagenet")
    msg = str(excinfo.value)
    assert "46,830,572" in msg and "46,830,571" in msg and "Content-Length" in msg
    assert server.base + OFFICIAL_RESNET18 in msg
    assert not hub.exists()  # refused before any folder or .part file was made


def test_known_sizes_agree_with_torchvision_metadata():
    assert W.CHECKPOINT_BYTES[OFFICIAL_RESNET18] == 46_830_571
    assert W.download_size_limit(OFFICIAL_RESNET18)[0] == 46_830_571
    for ckpt in W.TORCHVISION_CHECKPOINTS.values():
        for filename in ckpt.filenames:
            limit, text = W.download_size_limit(filename)
            assert limit < W.MAX_DOWNLOAD_BYTES and filename in text  # every official file is bounded
    # torchvision's metadata bound (MiB to 3 decimals) holds the exact size within about 1 KiB.
    bound = W.CHECKPOINT_MAX_BYTES[OFFICIAL_RESNET18]
    assert 0 <= bound - W.CHECKPOINT_BYTES[OFFICIAL_RESNET18] < 2048
    assert W.download_size_limit("unknown-12345678.pth")[0] == W.MAX_DOWNLOAD_BYTES == 2 * 1024**3


def test_timeout_is_a_deadline_for_the_whole_download(server, dirs):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    server.trickle_s = 0.3  # a byte every 0.3 s: no single read ever waits a whole second...
    server.trickle_for_s = 8.0  # ...(and the server gives up after 8 s, so a broken fix fails, not hangs)
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.download_checkpoint(server.base + FAKE_NAME, hub, timeout=1.0)
    elapsed = time.perf_counter() - start
    assert "did not finish within 1 s" in str(excinfo.value), str(excinfo.value)
    assert elapsed < 5.0  # 1 s, plus slack for a loaded machine; well under the server's 8 s
    assert _leftovers(hub) == []


_CHILD = """
import sys
from attr2gender.models import download as D
from attr2gender.models import weights as W

W.download_checkpoint(sys.argv[1], sys.argv[2], timeout=120)
"""


def test_sigterm_during_download_leaves_no_partial_file(server, dirs, tmp_path):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    server.trickle_s = 0.1  # slow enough that the child is still downloading when SIGTERM comes
    server.trickle_for_s = 300.0
    env = {k: v for k, v in os.environ.items() if k not in (*W.OFFLINE_ENVS, W.WEIGHTS_URL_ENV)}
    env["TORCH_HOME"] = str(tmp_path / "torch_home")
    with open(tmp_path / "child.log", "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, server.base + FAKE_NAME, str(hub)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 300  # importing torch on a busy machine can take minutes
            while not any(name.endswith(".part") for name in _leftovers(hub)):
                assert child.poll() is None, (tmp_path / "child.log").read_text()
                assert time.monotonic() < deadline, "the child never started writing"
                time.sleep(0.05)
            child.send_signal(signal.SIGTERM)
            returncode = child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert returncode == -signal.SIGTERM, (tmp_path / "child.log").read_text()  # still dies of SIGTERM
    assert _leftovers(hub) == []


def test_the_sigterm_handler_is_restored(server, dirs):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    before = signal.getsignal(signal.SIGTERM)
    W.download_checkpoint(server.base + FAKE_NAME, hub)
    assert signal.getsignal(signal.SIGTERM) == before

    def own_handler(signum, frame):  # a program's own SIGTERM handler is left alone
        pass

    signal.signal(signal.SIGTERM, own_handler)
    try:
        (hub / FAKE_NAME).unlink()
        W.download_checkpoint(server.base + FAKE_NAME, hub)
        assert signal.getsignal(signal.SIGTERM) is own_handler
    finally:
        signal.signal(signal.SIGTERM, before)


# ------------------------------------------------------------------------------ weights=<path>


def _torch_zip(tensors: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _safetensors(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


_NOISE = random.Random(0).randbytes(4096)
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."

GARBAGE = [
    ("passwd", b"root:x:0:0:root:/root:/bin/bash\n", IncompatibleWeightsError, "not a weights file"),
    ("notes.txt", b"hello\n", IncompatibleWeightsError, "accepted: .safetensors, .pth, .pt"),
    ("random.safetensors", _NOISE, IncompatibleWeightsError, "not a safetensors file"),
    ("short.safetensors", b"\x01\x00", IncompatibleWeightsError, "not a safetensors file"),
    ("empty.safetensors", b"", IncompatibleWeightsError, "not a safetensors file"),
    (
        "huge-header.safetensors",
        struct.pack("<Q", 1 << 40) + b"{}",
        IncompatibleWeightsError,
        "header length",
    ),
    ("not-json.safetensors", struct.pack("<Q", 6) + b"{nope}", IncompatibleWeightsError, "not JSON"),
    (
        "not-utf8.safetensors",
        struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc",
        IncompatibleWeightsError,
        "not JSON",
    ),
    ("list.safetensors", _safetensors([1, 2]), IncompatibleWeightsError, "not a JSON object"),
    (
        "past-the-end.safetensors",
        _safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}),
        IncompatibleWeightsError,
        "bad header entry for 'w'",
    ),
    (
        "uncovered.safetensors",
        _safetensors({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8)),
        IncompatibleWeightsError,
        "do not cover its 8 data bytes",
    ),
    (
        "wrong-shape.safetensors",
        _safetensors({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)),
        IncompatibleWeightsError,
        "does not match its byte range",
    ),
    ("random.pth", _NOISE, IncompatibleWeightsError, "not a PyTorch checkpoint"),
    ("text.pth", b"hello\n", IncompatibleWeightsError, "not a PyTorch checkpoint"),
    ("empty.pt", b"", IncompatibleWeightsError, "not a PyTorch checkpoint"),
    ("truncated.pth", _torch_zip({"w": torch.ones(64)})[:300], IncompatibleWeightsError, "truncated?"),
    ("other.pth", _zip({"archive/readme": b"x"}), IncompatibleWeightsError, "without data.pkl"),
    ("not-pickle.pth", _zip({"archive/data.pkl": b"garbage"}), IncompatibleWeightsError, "not a pickle"),
    (
        "no-version.pth",
        _zip({"archive/data.pkl": b"\x80\x02}q\x00."}),
        IncompatibleWeightsError,
        "without a version record",
    ),
    ("damaged.pth", _LEGACY_MAGIC + _NOISE, IncompatibleWeightsError, "not a readable PyTorch checkpoint"),
    ("tensor.pth", _torch_zip(torch.ones(3)), IncompatibleWeightsError, "expected a state dict"),
]


# Refused by load_state_dict_file but not by the cheap check, which reads structure only (no unpickling).
_LOAD_ONLY = {"damaged.pth", "tensor.pth"}


@pytest.mark.parametrize(("name", "contents", "error", "fragment"), GARBAGE, ids=[row[0] for row in GARBAGE])
def test_a_file_that_is_not_weights_is_refused(tmp_path, name, contents, error, fragment):
    path = tmp_path / name
    path.write_bytes(contents)
    with pytest.raises(error) as excinfo:
        W.load_state_dict_file(path)
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, Attr2GenderError)
    assert fragment in msg and str(path) in msg and "\n" not in msg, msg
    if name not in _LOAD_ONLY:
        # Refused before training: the config's check_weights() calls locate_weights.
        with pytest.raises(error, match="weights="):
            W.check_weights_file(path)
        with pytest.raises(error, match="weights="):
            W.locate_weights("resnet18", str(path))
        with pytest.raises(error, match="weights="):
            RunConfig(weights=str(path)).check_weights()


def test_etc_passwd_is_refused():
    if not Path("/etc/passwd").is_file():
        pytest.skip("no /etc/passwd here")
    with pytest.raises(IncompatibleWeightsError, match=r"weights=/etc/passwd: not a weights file"):
        W.locate_weights("resnet18", "/etc/passwd")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt"])
def test_real_weights_files_pass_the_cheap_check(tmp_path, suffix):
    state = {"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.zeros(2)}
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    W.check_weights_file(path)
    assert W.locate_weights("resnet18", str(path)) == path
    assert set(W.load_state_dict_file(path)) == set(state)
    legacy = tmp_path / "legacy.pth"  # torch.save's pre-1.6 format, as the efficientnet-lite0 package ships
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    W.check_weights_file(legacy)
    assert set(W.load_state_dict_file(legacy)) == set(state)


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_pickle_with_code_is_still_refused_as_unsafe(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "payload": _Evil()}, path)
    W.check_weights_file(path)  # structurally a checkpoint; refused when read
    with pytest.raises(UnsafeWeightsFileError, match="weights_only=True") as excinfo:
        W.load_state_dict_file(path)
    assert "Unsupported global" in str(excinfo.value) and "\n" not in str(excinfo.value)


# ------------------------------------------------------------------------------ weights="imagenet"


def test_imagenet_downloads_into_the_hub_cache_once(server, dirs, monkeypatch):
    _, hub = dirs
    server.files[f"/models/{FAKE_NAME}"] = FAKE_BYTES
    monkeypatch.setitem(
        W.TORCHVISION_CHECKPOINTS,
        "resnet18",
        W.TorchvisionCheckpoint((f"https://download.pytorch.org/models/{FAKE_NAME}",)),
    )
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server.base)
    path = W.locate_weights("resnet18", "imagenet")
    assert path == hub / FAKE_NAME and path.read_bytes() == FAKE_BYTES
    assert server.requests == [f"/models/{FAKE_NAME}"]
    # The cached file is found the second time: no new request.
    assert W.locate_weights("resnet18", "imagenet") == path and len(server.requests) == 1
    state, source = W.resolve_state_dict("resnet18", "imagenet")
    assert source == str(path) and set(state) == {"layer.weight", "layer.bias"}


def test_imagenet_prefers_local_files_to_a_download(server, dirs, monkeypatch):
    weights_dir, _ = dirs
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server.base)
    (weights_dir / OFFICIAL_RESNET18).write_bytes(FAKE_BYTES)
    assert W.locate_weights("resnet18", "imagenet") == weights_dir / OFFICIAL_RESNET18
    assert server.requests == []


def test_imagenet_official_name_with_wrong_content_is_refused(server, dirs, monkeypatch):
    weights_dir, hub = dirs
    server.files[f"/models/{OFFICIAL_RESNET18}"] = FAKE_BYTES  # not the real file: its hash differs
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server.base.rstrip("/"))  # with or without the final slash
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.locate_weights("resnet18", "imagenet")
    msg = str(excinfo.value)
    assert server.requests == [f"/models/{OFFICIAL_RESNET18}"]
    assert "SHA-256 mismatch" in msg and "f37072fd" in msg
    assert server.base + OFFICIAL_RESNET18 in msg  # the URL tried
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg  # the official one
    assert str(hub) in msg and str(weights_dir) in msg and "efficientnet_lite0" in msg
    assert _leftovers(hub) == []


def test_refused_connection_gives_the_clear_error(dirs, monkeypatch):
    weights_dir, hub = dirs
    base = f"http://127.0.0.1:{_closed_port()}/models/"
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, base)
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.locate_weights("resnet18", "imagenet")
    assert time.perf_counter() - start < 5
    msg = str(excinfo.value)
    assert "Connection refused" in msg or "ConnectionRefusedError" in msg
    assert OFFICIAL_RESNET18 in msg and base + OFFICIAL_RESNET18 in msg
    assert str(hub) in msg and str(weights_dir) in msg
    assert isinstance(excinfo.value, FileNotFoundError)
    assert _leftovers(hub) == []


@pytest.mark.parametrize(("env", "value"), [("ATTR2GENDER_OFFLINE", "1"), ("HF_HUB_OFFLINE", "True")])
def test_offline_never_opens_a_socket(server, dirs, monkeypatch, env, value):
    weights_dir, hub = dirs
    server.files[f"/models/{OFFICIAL_RESNET18}"] = FAKE_BYTES
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, server.base)
    monkeypatch.setenv(env, value)
    calls: list[str] = []

    def forbidden(name):
        def record(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"socket use while offline: {name}")

        return record

    monkeypatch.setattr(socket.socket, "connect", forbidden("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", forbidden("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", forbidden("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", forbidden("getaddrinfo"))
    with pytest.raises(WeightsNotFoundError) as excinfo:
        W.locate_weights("resnet18", "imagenet")
    with pytest.raises(WeightsNotFoundError, match="downloads are disabled"):
        W.download_checkpoint(server.base + FAKE_NAME, hub)
    msg = str(excinfo.value)
    assert calls == [] and server.requests == []
    assert f"downloads are disabled ({env}={value})" in msg
    assert OFFICIAL_RESNET18 in msg and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert str(hub) in msg and str(weights_dir) in msg
    assert not hub.exists()


@pytest.mark.parametrize(
    ("value", "disabled"),
    [("1", True), ("yes", True), ("ON", True), ("0", False), ("", False), ("no", False)],
)
def test_offline_values(monkeypatch, value, disabled):
    for env in W.OFFLINE_ENVS:
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("ATTR2GENDER_OFFLINE", value)
    assert (W.downloads_disabled_by() is not None) is disabled


@pytest.mark.parametrize("base", ["https://mirror.example/models#x", "https://mirror.example/models?token=1"])
def test_a_mirror_url_with_a_fragment_or_query_is_refused_before_downloading(monkeypatch, base):
    """Issue 33: '#' in the mirror URL swallowed the file name, so the download had no known size and ran to
    the 2 GiB cap; the base URL is refused, naming the variable, before anything is fetched."""
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, base)
    with pytest.raises(WeightsNotFoundError, match="without '\\?' or '#'"):
        W.download_url("https://download.pytorch.org/models/resnet18-f37072fd.pth")
